"""The one preprocessing resolver: per-architecture defaults, overrides, checkpoints, callers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from PIL import Image

from anyshot.backbones import (
    INPUT_SPECS,
    Conv4,
    EfficientNetLite0,
    available_backbones,
    build_backbone,
    load_backbone,
    resolve_preprocessing,
    save_backbone,
)
from anyshot.backbones.checkpoint import backbone_to_dict
from anyshot.backbones.preprocessing import DATASET_INPUTS, UNIT_RANGE
from anyshot.classifier import FewShotClassifier
from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.errors import CheckpointError, ConfigurationError
from anyshot.hardness import HardnessModel
from anyshot.methods import SupportBasedInit
from anyshot.pretrain import PretrainConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "anyshot"
EXPECTED_SIZES = {"conv4": 84, "resnet12": 84, "wrn28-10": 84, "efficientnet-lite0": 224}
SKEWED = Preprocessing(28, 3, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))  # not the default normalisation


def unit_range(size: int, channels: int) -> Preprocessing:
    """What every backbone uses: pixels [0, 1] -> [-1, 1]."""
    return Preprocessing(size, channels, (0.5,) * channels, (0.5,) * channels)


# --- the table and the architecture defaults --------------------------------------------------
def test_every_registered_architecture_has_a_default_input() -> None:
    assert list(INPUT_SPECS) == available_backbones()


@pytest.mark.parametrize("arch", list(EXPECTED_SIZES))
def test_architecture_defaults(arch: str) -> None:
    assert resolve_preprocessing(arch) == unit_range(EXPECTED_SIZES[arch], 3)


@pytest.mark.parametrize("arch", ["conv4", "resnet12", "efficientnet-lite0"])
def test_a_backbone_built_without_size_uses_the_resolver_default(arch: str) -> None:
    extra: dict[str, Any] = {"pretrained": False} if arch == "efficientnet-lite0" else {}
    backbone = build_backbone(arch, **extra)
    assert backbone.preprocessing == resolve_preprocessing(arch)
    assert backbone.config()["image_size"] == EXPECTED_SIZES[arch]
    assert backbone.config()["channels"] == 3


def test_the_unit_range_normalisation_is_preprocessings_own_default() -> None:
    assert UNIT_RANGE.mean == 0.5 and UNIT_RANGE.std == 0.5
    assert Preprocessing(84) == unit_range(84, 3)


def test_the_normalisation_is_written_once_in_the_sources() -> None:
    pattern = re.compile(r"\(0\.5,\)\s*\*")
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_unknown_architecture_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'vit'.*conv4.*efficientnet-lite0"):
        resolve_preprocessing("vit")


# --- overrides ----------------------------------------------------------------------------------
def test_architecture_overrides() -> None:
    assert resolve_preprocessing("efficientnet-lite0", image_size=84) == unit_range(84, 3)
    assert resolve_preprocessing("conv4", channels=1) == unit_range(84, 1)
    assert resolve_preprocessing("conv4", image_size=28, channels=1) == unit_range(28, 1)


def test_size_override_keeps_the_stored_normalisation() -> None:
    resized = resolve_preprocessing(SKEWED, image_size=40)
    assert resized.image_size == 40
    assert (resized.channels, resized.mean, resized.std) == (3, SKEWED.mean, SKEWED.std)
    assert resolve_preprocessing(SKEWED) == SKEWED  # no override: unchanged


def test_channel_override_of_a_stored_preprocessing() -> None:
    grey = resolve_preprocessing(unit_range(32, 3), channels=1)
    assert grey == unit_range(32, 1)
    with pytest.raises(ValueError, match="normalised differently"):
        resolve_preprocessing(SKEWED, channels=1)


def test_invalid_overrides_are_refused() -> None:
    with pytest.raises(ValueError, match="image_size must be positive"):
        resolve_preprocessing("conv4", image_size=0)
    with pytest.raises(ValueError, match="channels must be 1"):
        resolve_preprocessing(unit_range(32, 3), channels=2)


def test_dataset_defaults_apply_to_architectures_only() -> None:
    assert DATASET_INPUTS["omniglot"].image_size == 28
    assert resolve_preprocessing("conv4", dataset="omniglot") == unit_range(28, 1)
    assert resolve_preprocessing("conv4", dataset="omniglot", image_size=32) == unit_range(32, 1)
    assert resolve_preprocessing("resnet12", dataset="mini-imagenet") == unit_range(84, 3)
    with pytest.raises(ValueError, match="dataset"):
        resolve_preprocessing(SKEWED, dataset="omniglot")


# --- checkpoints ------------------------------------------------------------------------------
def skewed_conv4() -> Conv4:
    torch.manual_seed(0)
    backbone = Conv4(image_size=28)
    backbone.preprocessing = SKEWED
    return backbone


def test_stored_preprocessing_round_trips(tmp_path: Path) -> None:
    backbone = skewed_conv4()
    payload = backbone_to_dict(backbone)
    assert resolve_preprocessing(payload["preprocessing"]) == SKEWED
    path = save_backbone(backbone, tmp_path / "c4.pt")
    assert load_backbone(path).preprocessing == SKEWED
    kept = load_backbone(path, image_size=None, channels=None)  # None keeps the stored input
    assert kept.preprocessing == SKEWED and kept.config()["image_size"] == 28


def test_checkpoint_size_override_rebuilds_and_keeps_normalisation(tmp_path: Path) -> None:
    path = save_backbone(skewed_conv4(), tmp_path / "c4.pt")
    loaded = load_backbone(path, image_size=40)
    assert loaded.preprocessing == Preprocessing(40, 3, SKEWED.mean, SKEWED.std)
    assert loaded.config()["image_size"] == 40
    assert loaded(torch.zeros(1, 3, 40, 40)).shape == (1, 64 * (40 // 16) ** 2)


def test_checkpoint_with_an_unusable_preprocessing_says_so(tmp_path: Path) -> None:
    payload = backbone_to_dict(skewed_conv4())
    payload["preprocessing"] = "84 px"
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"bad\.pt.*'preprocessing' is not a dict"):
        load_backbone(path)


# --- the callers ------------------------------------------------------------------------------
def coloured(count: int) -> tuple[list[Image.Image], list[str]]:
    images = [Image.new("RGB", (20, 20), (40 * i, 200 - 40 * i, 90)) for i in range(count)]
    return images, ["a" if i % 2 else "b" for i in range(count)]


def test_classifier_image_size_resizes_a_backbone_copy_only() -> None:
    backbone = skewed_conv4()
    images, labels = coloured(4)
    model = FewShotClassifier(backbone, SupportBasedInit(), image_size=32).fit(images, labels)
    assert model.preprocessing_ == Preprocessing(32, 3, SKEWED.mean, SKEWED.std)
    assert backbone.preprocessing == SKEWED  # the caller's backbone is not changed


def test_classifier_by_name_uses_the_architecture_default_or_the_override() -> None:
    images, labels = coloured(4)
    default = FewShotClassifier("conv4", SupportBasedInit()).fit(images, labels)
    assert default.preprocessing_ == resolve_preprocessing("conv4")
    small = FewShotClassifier("conv4", SupportBasedInit(), image_size=16).fit(images, labels)
    assert small.preprocessing_ == unit_range(16, 3)


def test_pretrain_config_defaults_follow_dataset_and_architecture() -> None:
    plain = PretrainConfig(output="x.pt", dataset="mini-imagenet", arch="resnet12")
    assert (plain.image_size, plain.channels) == (84, 3)
    omniglot = PretrainConfig(output="x.pt", dataset="omniglot")
    assert (omniglot.image_size, omniglot.channels) == (28, 1)
    assert omniglot.preprocessing() == unit_range(28, 1)
    given = PretrainConfig(output="x.pt", dataset="omniglot", image_size=16, channels=3)
    assert given.preprocessing() == unit_range(16, 3)
    with pytest.raises(ConfigurationError, match="unknown backbone 'vit'"):
        PretrainConfig(output="x.pt", arch="vit")


def test_hardness_model_defaults_to_the_architecture_size() -> None:
    dataset = cast(ImageDataset, None)  # only stored; nothing is embedded here
    default = HardnessModel(dataset)
    assert isinstance(default.backbone, EfficientNetLite0)
    assert default.preprocessing == resolve_preprocessing("efficientnet-lite0")
    assert HardnessModel(dataset, image_size=84).preprocessing == unit_range(84, 3)
