"""Backbones: shapes, the trunk / last-stage split, EfficientNet-Lite0 weights, checkpoints."""

from __future__ import annotations

import ast
import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from torch import nn

from anyshot.backbones import (
    Backbone,
    Conv4,
    EfficientNetLite0,
    available_backbones,
    build_backbone,
    efficientnet_lite,
    imagenet_class_names,
    imagenet_wnids,
    load_backbone,
    load_checkpoint,
    load_checkpoint_with_metadata,
    save_backbone,
)
from anyshot.backbones import checkpoint as checkpoint_module
from anyshot.data.images import open_image
from anyshot.errors import CheckpointError

BACKBONES_SRC = Path(__file__).resolve().parents[1] / "src" / "anyshot" / "backbones"
MINI_IMAGENET = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mini-imagenet"
ARCHS = ["conv4", "resnet12", "wrn28-10", "efficientnet-lite0"]
SIZE = 32
FEATURE_DIMS = {"conv4": 64 * (SIZE // 16) ** 2, "resnet12": 640, "wrn28-10": 640}
FEATURE_DIMS["efficientnet-lite0"] = 1280


def make(arch: str, **kwargs: object) -> Backbone:
    """A small randomly initialised backbone (EfficientNet without reading the weights)."""
    if arch == "efficientnet-lite0":
        kwargs.setdefault("pretrained", False)
    kwargs.setdefault("image_size", SIZE)
    return build_backbone(arch, **kwargs)


@pytest.fixture(scope="module")
def imagenet_lite0() -> EfficientNetLite0:
    """The pretrained EfficientNet-Lite0 at 224 px with its ImageNet logits as embedding."""
    torch.manual_seed(0)
    return EfficientNetLite0(embedding="logits").eval()


# --- every architecture -------------------------------------------------------------------
def test_registry_lists_every_architecture() -> None:
    assert available_backbones() == ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shape_and_split(arch: str) -> None:
    torch.manual_seed(0)
    backbone = make(arch, num_classes=5).eval()
    images = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        embeddings = backbone(images)
        split = backbone.forward_last(backbone.forward_trunk(images))
    assert backbone.feature_dim == FEATURE_DIMS[arch]
    assert embeddings.shape == (2, backbone.embedding_dim) == (2, FEATURE_DIMS[arch])
    assert torch.isfinite(embeddings).all()
    assert torch.allclose(embeddings, split, atol=1e-6)
    # Different images give different embeddings (the network is not constant). Relative: an
    # untrained EfficientNet in eval mode has tiny activations (fresh batch-norm statistics).
    assert (embeddings[0] - embeddings[1]).norm() > 1e-3 * embeddings[0].norm()


@pytest.mark.parametrize("arch", ARCHS)
def test_last_stage_parameters_are_exactly_those_of_forward_last(arch: str) -> None:
    torch.manual_seed(0)
    backbone = make(arch, num_classes=5).eval()
    everything = {id(p) for p in backbone.parameters()}
    last = {id(p) for p in backbone.last_stage_parameters()}
    assert last and last < everything
    # Gradients of forward_last reach exactly the last-stage parameters.
    activations = backbone.forward_trunk(torch.randn(2, 3, SIZE, SIZE)).detach()
    backbone.zero_grad(set_to_none=True)
    backbone.forward_last(activations).square().sum().backward()
    with_grad = {id(p) for p in backbone.parameters() if p.grad is not None}
    assert with_grad == last
    # With embedding="logits" the classifier joins the last stage.
    backbone.embedding = "logits"
    assert backbone.classifier is not None
    with_head = {id(p) for p in backbone.last_stage_parameters()}
    assert with_head == last | {id(p) for p in backbone.classifier.parameters()}


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_embedding_has_num_classes_dims(arch: str) -> None:
    torch.manual_seed(0)
    backbone = make(arch, num_classes=7, embedding="logits").eval()
    with torch.no_grad():
        logits = backbone(torch.randn(2, 3, SIZE, SIZE))
    assert backbone.embedding_dim == 7
    assert logits.shape == (2, 7)


@pytest.mark.parametrize("arch", ["conv4", "resnet12", "wrn28-10"])
def test_grey_input(arch: str) -> None:
    torch.manual_seed(0)
    backbone = make(arch, channels=1, image_size=28).eval()
    assert backbone.preprocessing.channels == 1
    assert backbone.preprocessing.mean == (0.5,) and backbone.preprocessing.std == (0.5,)
    with torch.no_grad():
        out = backbone(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, backbone.feature_dim)


def test_conv4_feature_dim_follows_image_size() -> None:
    assert Conv4(image_size=28).feature_dim == 64
    big = Conv4(image_size=84).eval()
    assert big.feature_dim == 1600
    with torch.no_grad():
        assert big(torch.randn(1, 3, 84, 84)).shape == (1, 1600)
    assert big.preprocessing.image_size == 84
    assert big.preprocessing.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="image_size"):
        Conv4(image_size=8)


def test_without_classifier_logits_are_refused() -> None:
    backbone = Conv4(image_size=28)
    assert backbone.classifier is None
    with pytest.raises(ValueError, match="classifier"):
        _ = Conv4(image_size=28, embedding="logits").embedding_dim
    with pytest.raises(ValueError, match="embedding"):
        Conv4(image_size=28, embedding="pooled")


def test_unknown_name_lists_known_names_and_checkpoint_hint() -> None:
    with pytest.raises(ValueError, match="resnet12") as info:
        build_backbone("resnet18")
    assert "load_backbone" in str(info.value)
    for name in ARCHS:
        assert name in str(info.value)


def _package_imports(folder: Path, package: str) -> dict[str, set[str]]:
    """Module -> modules of ``package`` it imports anywhere (function-level imports included)."""
    modules = {f"{package}.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            edges[name] |= {t for t in targets if t in modules and t != name}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search (each as a closed path)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    return found


def test_backbone_modules_import_without_cycles() -> None:
    edges = _package_imports(BACKBONES_SRC, "anyshot.backbones")
    assert "anyshot.backbones.checkpoint" in edges["anyshot.backbones.registry"]
    assert "anyshot.backbones.architectures" in edges["anyshot.backbones.checkpoint"]
    assert _cycles(edges) == []


def test_cycle_detection_finds_a_planted_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


# --- EfficientNet-Lite0 ---------------------------------------------------------------------
def test_imagenet_class_tables() -> None:
    wnids, names = imagenet_wnids(), imagenet_class_names()
    assert len(wnids) == len(set(wnids)) == len(names) == 1000
    assert wnids[0] == "n01440764" and names[0].startswith("tench")
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)


def test_efficientnet_weights_load_with_every_key_matched() -> None:
    backbone = EfficientNetLite0(pretrained=False)
    result = backbone.load_imagenet_weights()
    assert result.missing_keys == [] and result.unexpected_keys == []
    raw = torch.load(efficientnet_lite.pretrained_weights_path(), weights_only=True)
    state = backbone.state_dict()
    assert len(raw) == len(state) == 296
    # Package key names are kept; only the ImageNet classifier is renamed.
    assert set(state) == {k.replace("_fc.", "classifier.") for k in raw}
    assert torch.equal(state["classifier.weight"], raw["_fc.weight"])
    assert torch.equal(
        state["_blocks.15._project_conv.weight"], raw["_blocks.15._project_conv.weight"]
    )


def test_efficientnet_pretrained_defaults(imagenet_lite0: EfficientNetLite0) -> None:
    backbone = imagenet_lite0
    assert backbone.arch == "efficientnet-lite0"
    assert backbone.class_names == imagenet_class_names()
    assert backbone.embedding_dim == 1000 and backbone.feature_dim == 1280
    assert backbone.preprocessing.image_size == 224
    assert backbone.preprocessing.mean == (0.5,) * 3 and backbone.preprocessing.std == (0.5,) * 3


def test_efficientnet_training_forward_is_deterministic() -> None:
    """Drop-connect and dropout are off: two training-mode passes agree exactly."""
    backbone = EfficientNetLite0(image_size=64).train()
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        first, second = backbone(images), backbone(images)
    assert torch.equal(first, second)
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in backbone.modules())


@pytest.mark.parametrize("size", [84, 100])
def test_efficientnet_padding_is_tensorflow_same_at_any_size(
    imagenet_lite0: EfficientNetLite0, size: int
) -> None:
    """Equal to the package's network with static "same" padding built for that size.

    (The package's default, static padding computed for 224 px, pads 84 px inputs differently:
    its last feature map is 2x2 instead of 3x3. 100 px has odd intermediate sizes.)
    """
    reference = EfficientNet.from_name(
        "efficientnet-lite0", image_size=size, drop_connect_rate=0.0, dropout_rate=0.0
    )
    reference.load_state_dict(
        torch.load(efficientnet_lite.pretrained_weights_path(), weights_only=True)
    )
    reference.eval()
    torch.manual_seed(0)
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = reference(images)
        got = imagenet_lite0(images)
    assert torch.allclose(got, expected, atol=1e-4)


def test_efficientnet_grey_equals_rgb_on_replicated_grey(
    imagenet_lite0: EfficientNetLite0,
) -> None:
    grey = EfficientNetLite0(channels=1, image_size=64, embedding="logits").eval()
    assert grey.preprocessing.mean == (0.5,)
    torch.manual_seed(0)
    images = torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = imagenet_lite0(images.expand(-1, 3, -1, -1))
        got = grey(images)
    assert torch.allclose(got, expected, atol=1e-3)


def test_efficientnet_new_classifier_size_keeps_pretrained_trunk() -> None:
    backbone = EfficientNetLite0(num_classes=10, image_size=64)
    assert backbone.classifier is not None and backbone.classifier.out_features == 10
    assert backbone.class_names is None
    raw = torch.load(efficientnet_lite.pretrained_weights_path(), weights_only=True)
    assert torch.equal(backbone.state_dict()["_conv_stem.weight"], raw["_conv_stem.weight"])
    assert EfficientNetLite0(num_classes=None, image_size=64).classifier is None


def _val_images(per_class: int, classes: int) -> list[tuple[Path, str]]:
    with open(MINI_IMAGENET / "val.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row["filename"])
    picked = sorted(by_label)[:classes]
    return [
        (MINI_IMAGENET / "images" / name, label)
        for label in picked
        for name in by_label[label][:per_class]
    ]


def test_efficientnet_recognises_imagenet_classes(imagenet_lite0: EfficientNetLite0) -> None:
    if not (MINI_IMAGENET / "val.csv").is_file():
        pytest.skip(f"mini-ImageNet not found at {MINI_IMAGENET} (val.csv and images/ needed)")
    samples = _val_images(per_class=10, classes=3)
    images = torch.stack([imagenet_lite0.preprocessing(open_image(p)) for p, _ in samples])
    assert images.shape == (30, 3, 224, 224)  # 84 px files upsampled to 224
    wnids = imagenet_wnids()
    targets = torch.tensor([wnids.index(label) for _, label in samples])
    with torch.no_grad():
        logits = imagenet_lite0(images)
    top5 = logits.topk(5, dim=1).indices
    top5_accuracy = (top5 == targets[:, None]).any(dim=1).float().mean().item()
    top1_accuracy = (top5[:, 0] == targets).float().mean().item()
    # Chance is 0.5% / 0.1%; measured 70% / 43% on these 30 images.
    assert top5_accuracy >= 0.4, top5_accuracy
    assert top1_accuracy >= 0.2, top1_accuracy


# --- checkpoints ----------------------------------------------------------------------------
def _trained_conv4() -> Conv4:
    """A conv-4 whose batch-norm statistics are no longer the initial ones."""
    torch.manual_seed(0)
    backbone = Conv4(image_size=28, num_classes=3, embedding="logits", class_names=["a", "b", "c"])
    with torch.no_grad():
        backbone.train()(torch.randn(4, 3, 28, 28) + 1.0)
    return backbone.eval()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    backbone = _trained_conv4()
    backbone.preprocessing = backbone.preprocessing.__class__(28, 3, (0.4, 0.5, 0.6), (0.2,) * 3)
    path = save_backbone(backbone, tmp_path / "sub" / "conv4.pt", extra={"epochs": 3, "lr": 0.1})
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["conv4.pt"]  # no temp file left
    loaded, metadata = load_checkpoint_with_metadata(path)
    assert isinstance(loaded, Conv4)
    assert loaded.embedding == "logits" and loaded.class_names == ["a", "b", "c"]
    assert loaded.preprocessing == backbone.preprocessing
    assert loaded.config() == backbone.config()
    assert metadata["extra"] == {"epochs": 3, "lr": 0.1}
    assert metadata["arch"] == "conv4" and metadata["format_version"] == 1
    images = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images), backbone(images))
    for key, value in backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_load_backbone_by_name_and_path_with_overrides(tmp_path: Path) -> None:
    path = save_backbone(_trained_conv4(), tmp_path / "model.pth")
    features = load_backbone(str(path), embedding="features")
    assert features.embedding == "features" and features.embedding_dim == 64
    assert isinstance(load_checkpoint(path), Conv4)
    by_name = load_backbone("resnet12", image_size=28)
    assert by_name.arch == "resnet12" and by_name.preprocessing.image_size == 28
    with pytest.raises(CheckpointError, match="does not exist"):
        load_backbone(str(tmp_path / "missing.pt"))


def test_checkpoint_image_size_override_resizes_preprocessing(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = save_backbone(build_backbone("resnet12", image_size=28), tmp_path / "r12.pt")
    loaded = load_backbone(path, image_size=40)
    assert loaded.preprocessing.image_size == 40 and loaded.config()["image_size"] == 40
    # conv-4's weights depend on the image size only through a classifier; its flatten does not
    # change the conv weights, so the mismatch shows up only with a classifier:
    conv = save_backbone(_trained_conv4(), tmp_path / "conv.pt")
    with pytest.raises(CheckpointError, match=r"classifier\.weight"):
        load_backbone(conv, image_size=84)


def test_efficientnet_checkpoint_round_trip_without_rereading_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backbone = EfficientNetLite0(image_size=64, embedding="logits").eval()
    path = save_backbone(backbone, tmp_path / "lite0.pt")

    def refuse() -> str:
        raise AssertionError("the ImageNet weights file must not be read")

    monkeypatch.setattr(efficientnet_lite, "pretrained_weights_path", refuse)
    loaded, metadata = load_checkpoint_with_metadata(path)
    assert isinstance(loaded, EfficientNetLite0) and metadata["config"]["pretrained"] is True
    assert loaded.class_names == imagenet_class_names()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(images), backbone(images))


def _write(path: Path, payload: object) -> Path:
    torch.save(payload, path)
    return path


def test_checkpoint_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.pt"
    with pytest.raises(CheckpointError, match=r"nothing\.pt.*does not exist"):
        load_checkpoint(missing)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file at all" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pt.*not a torch file"):
        load_checkpoint(garbage)
    photo = tmp_path / "photo.png"  # a file given by mistake: said as such, not as torch's error
    Image.new("RGB", (8, 8)).save(photo)
    with pytest.raises(CheckpointError, match=r"photo\.png.*not a torch file at all.*PNG"):
        load_checkpoint(photo)

    good = save_backbone(_trained_conv4(), tmp_path / "good.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt.*corrupt"):
        load_checkpoint(truncated)

    bare = _write(tmp_path / "bare.pt", Conv4(image_size=28).state_dict())
    with pytest.raises(CheckpointError, match=r"bare\.pt.*bare state_dict") as info:
        load_checkpoint(bare)
    assert "save_backbone" in str(info.value) and "load_state_dict" in str(info.value)

    other_tool = _write(tmp_path / "lightning.ckpt", {"epoch": 3, "state_dict": {}})
    with pytest.raises(CheckpointError, match="not an anyshot checkpoint"):
        load_checkpoint(other_tool)

    pickled = _write(tmp_path / "pickled.pt", {"format": "anyshot-backbone", "obj": Path("x")})
    with pytest.raises(CheckpointError, match=r"pickled\.pt.*beyond tensors"):
        load_checkpoint(pickled)


def _edited(tmp_path: Path, name: str, edit: Callable[[dict], None]) -> Path:
    payload = torch.load(save_backbone(_trained_conv4(), tmp_path / "base.pt"), weights_only=True)
    edit(payload)
    return _write(tmp_path / name, payload)


def test_checkpoint_mismatch_and_version_errors(tmp_path: Path) -> None:
    def mismatch(payload: dict) -> None:
        state = payload["state_dict"]
        del state["trunk.0.1.running_var"]
        state["last.0.weight"] = torch.zeros(64, 64, 5, 5)
        state["head.weight"] = torch.zeros(1)

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(_edited(tmp_path, "mismatch.pt", mismatch))
    message = str(info.value)
    assert "mismatch.pt" in message
    assert "trunk.0.1.running_var" in message and "head.weight" in message
    assert "last.0.weight" in message and "(64, 64, 5, 5)" in message

    def newer(payload: dict) -> None:
        payload["format_version"] = 2

    with pytest.raises(CheckpointError, match=r"format version 2.*Upgrade anyshot"):
        load_checkpoint(_edited(tmp_path, "newer.pt", newer))

    def unknown_arch(payload: dict) -> None:
        payload["arch"] = "vit-huge"

    with pytest.raises(CheckpointError, match=r"vit-huge.*known: conv4"):
        load_checkpoint(_edited(tmp_path, "arch.pt", unknown_arch))


def test_save_refuses_extra_that_would_need_pickle(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="extra"):
        save_backbone(Conv4(image_size=28), tmp_path / "x.pt", extra={"when": time.gmtime()})
    with pytest.raises(CheckpointError, match=r"extra\['scores'\]\[1\]"):
        save_backbone(Conv4(image_size=28), tmp_path / "x.pt", extra={"scores": [1.0, Path()]})
    assert not any(tmp_path.iterdir())


def test_checkpoint_file_is_plain_data(tmp_path: Path) -> None:
    path = save_backbone(_trained_conv4(), tmp_path / "c.pt", extra={"note": "x"})
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == checkpoint_module.FORMAT
    assert set(payload) == {
        "format",
        "format_version",
        "anyshot_version",
        "arch",
        "config",
        "preprocessing",
        "embedding",
        "class_names",
        "state_dict",
        "extra",
    }


def test_folded_batch_norms_compute_the_same_features(imagenet_lite0: EfficientNetLite0) -> None:
    from anyshot.embedding import fold_batch_norm, inference_network

    torch.manual_seed(0)
    images = torch.randn(3, 3, 64, 64)
    before = {k: v.clone() for k, v in imagenet_lite0.state_dict().items()}
    folded = inference_network(imagenet_lite0, torch.device("cpu"), fold=True)
    assert folded is not imagenet_lite0
    norms = [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms == []  # every batch-norm of EfficientNet-Lite0 follows a convolution
    with torch.inference_mode():
        expected = imagenet_lite0.eval()(images)
        torch.testing.assert_close(folded(images), expected, rtol=1e-4, atol=1e-4)
    after = imagenet_lite0.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's is untouched
    conv4 = build_backbone("conv4", image_size=SIZE)
    assert fold_batch_norm(conv4) is conv4  # nothing listed: unchanged
    assert any(isinstance(m, nn.BatchNorm2d) for m in conv4.modules())


def test_efficientnet_refuses_inputs_too_small_to_embed() -> None:
    from anyshot.backbones.efficientnet_lite import MIN_IMAGE_SIZE

    with pytest.raises(ValueError, match=f"at least {MIN_IMAGE_SIZE} px"):
        build_backbone("efficientnet-lite0", image_size=MIN_IMAGE_SIZE - 1)
    network = build_backbone("efficientnet-lite0", image_size=MIN_IMAGE_SIZE).eval()
    side = MIN_IMAGE_SIZE
    images = torch.rand(64, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        rows = network(images)
    assert rows.shape == (64, network.feature_dim) and bool(rows.abs().sum(1).gt(0).all())


@pytest.mark.parametrize("size", [7, 8, 84])
@pytest.mark.parametrize(
    ("kernel", "stride", "dilation"),
    [(3, 1, 1), (5, 1, 1), (3, 2, 1), (5, 2, 1), (1, 1, 1), (2, 1, 1), (4, 2, 1), (3, 2, 2)],
)
def test_same_padding_by_the_convolution_equals_the_packages_padded_copy(
    size: int, kernel: int, stride: int, dilation: int
) -> None:
    """Outputs and weight gradients, even and odd sizes (a rectangular input: one axis of
    each), even and odd paddings, dilated (padded as the package does where uneven)."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    torch.manual_seed(0)
    convs = [
        kind(4, 6, kernel, stride=stride, dilation=dilation, groups=2, bias=True)
        for kind in (Conv2dDynamicSamePadding, efficientnet_lite.SamePaddingConv2d)
    ]
    convs[1].load_state_dict(convs[0].state_dict())
    images = torch.randn(2, 4, size, size + 1)
    outputs = [conv(images) for conv in convs]
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
    for output in outputs:
        output.square().sum().backward()
    assert convs[1].weight.grad is not None and convs[0].weight.grad is not None
    torch.testing.assert_close(convs[1].weight.grad, convs[0].weight.grad, rtol=1e-5, atol=1e-5)


def test_efficientnet_never_copies_its_inputs_padded(
    imagenet_lite0: EfficientNetLite0, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The package pads a copy of the input of the stem and of all 16 depthwise convolutions
    (17 at 224 px); here every convolution pads by itself (only kernels get a leading zero)."""
    padded: list[tuple[int, ...]] = []
    original = efficientnet_lite.F.pad

    def recording(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        padded.append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(efficientnet_lite.F, "pad", recording)
    with torch.no_grad():
        imagenet_lite0(torch.zeros(1, 3, 224, 224))
    assert padded and all(shape[0] != 1 for shape in padded)  # weights [C', C/g, k, k] only
