"""``--scope auto``: the scope rule, the time budget, and models with an adapted backbone."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.backbones import Backbone, build_backbone
from anyshot.classifier import FewShotClassifier
from anyshot.cli import main
from anyshot.embedding import ImageList
from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError, EmptyClassError
from anyshot.methods.cosine import cross_class_similarity
from anyshot.methods.presets import NETWORK, RECOMMENDED
from anyshot.methods.scope_rule import (
    FEW_SHOT_BUDGET,
    MANY_SHOT_BUDGET,
    NETWORK_SIDES,
    ScopeRule,
    network_image_size,
)
from anyshot.model_file import ModelFileError
from conftest import COLOURS, noisy_image

SIZE = 16


def backbone() -> Backbone:
    torch.manual_seed(0)
    return build_backbone("conv4", image_size=SIZE)


def images(ways: int, shots: int, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """``ways * shots`` noisy colour images ``[N, 3, SIZE, SIZE]`` and their classes."""
    generator = torch.Generator().manual_seed(seed)
    colours = torch.tensor(COLOURS[:ways], dtype=torch.float32) / 255  # [K, 3]
    labels = [k for k in range(ways) for _ in range(shots)]
    base = colours[labels][:, :, None, None].expand(-1, -1, SIZE, SIZE)
    return base + 0.1 * torch.randn(base.shape, generator=generator), labels


def test_cross_class_similarity_is_one_for_identical_classes_and_zero_for_orthogonal() -> None:
    same = torch.ones(4, 3)
    assert cross_class_similarity(same, torch.tensor([0, 0, 1, 1])) == pytest.approx(1.0)
    orthogonal = torch.eye(3)
    assert cross_class_similarity(orthogonal, torch.tensor([0, 1, 2])) == pytest.approx(0.0)
    assert cross_class_similarity(same, torch.zeros(4, dtype=torch.long)) == 0.0  # one class
    rows, targets = torch.randn(50, 16), torch.randint(0, 5, (50,))  # the pairwise definition
    units = torch.nn.functional.normalize(torch.relu(rows), dim=-1)
    other = targets[None] != targets[:, None]
    expected = float((units @ units.T)[other].mean())
    assert cross_class_similarity(rows, targets) == pytest.approx(expected, abs=1e-6)


def test_the_domain_decides_between_head_and_network() -> None:
    rule = ScopeRule()
    apart = torch.eye(4)  # the frozen features tell the classes apart
    choice = rule.domain_choice(apart, torch.arange(4))
    assert choice is not None and choice.method == RECOMMENDED and choice.scope == "head"
    assert "tells the classes apart" in choice.reason and choice.estimated_seconds is None
    alike = torch.ones(4, 8) + 0.01 * torch.eye(4, 8)
    assert rule.domain_choice(alike, torch.arange(4)) is None


def test_the_choice_changes_with_images_per_class() -> None:
    """Statistics of the images from 5 per class; the head again when the network's training
    would not fit the budget (more images, same speed)."""
    rule = ScopeRule(time_budget=100.0)
    few = rule.network_choice(0.6, support=10, query=0, ways=10, seconds_per_image=0.01)
    assert few.scope == "all" and few.method.norm_statistics == "pretrained"  # type: ignore[union-attr]
    assert few.method.epochs == NETWORK.epochs and "25 epochs" in few.reason  # type: ignore[union-attr]
    five = rule.network_choice(0.6, support=50, query=0, ways=10, seconds_per_image=0.01)
    assert five.scope == "all" and five.method.norm_statistics == "episode"  # type: ignore[union-attr]
    # 400 images x 0.02 s = 8 s an epoch: 11 of 25 epochs fit 100 s (at least 40% must)
    cut = rule.network_choice(0.6, support=400, query=0, ways=10, seconds_per_image=0.02)
    assert cut.scope == "all" and cut.method.epochs == 11  # type: ignore[union-attr]
    assert "11 of 25 epochs" in cut.reason
    many = rule.network_choice(0.6, support=2000, query=0, ways=10, seconds_per_image=0.02)
    assert many.scope == "head" and "over the time budget of 100 s" in many.reason
    assert many.estimated_seconds is not None and many.estimated_seconds > 1000


def test_the_default_budget_depends_on_the_images_per_class() -> None:
    assert ScopeRule().budget(5) == FEW_SHOT_BUDGET and ScopeRule().budget(6) == MANY_SHOT_BUDGET
    assert ScopeRule(time_budget=7.0).budget(1) == 7.0
    with pytest.raises(ConfigurationError, match="time_budget"):
        ScopeRule(time_budget=0.0)
    with pytest.raises(ConfigurationError, match="scope 'head'"):
        ScopeRule(head=NETWORK)


def test_the_rule_leaves_the_callers_backbone_unchanged() -> None:
    network = backbone()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    x, labels = images(3, 2)
    episode = Episode(x, labels, x[:3])
    rule = ScopeRule(far_domain_similarity=0.0, network=dataclasses.replace(NETWORK, epochs=2))
    assert rule.choose(network, episode).scope == "all"
    assert rule(network, episode).shape == (3, 3)
    after = network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_network_training_stops_at_its_time_budget() -> None:
    x, labels = images(3, 4)
    episode = Episode(x, labels, x[:0])
    method = dataclasses.replace(NETWORK, epochs=100_000, time_budget=2.0)
    began = time.monotonic()
    fitted = method.fit(backbone(), episode)
    elapsed = time.monotonic() - began
    assert fitted.epochs is not None and 1 < fitted.epochs < 100_000
    assert elapsed <= 1.2 * 2.0, elapsed


def write_folders(root: Path, ways: int, shots: int) -> tuple[list[Path], list[str]]:
    paths, labels = [], []
    for k in range(ways):
        for i in range(shots):
            paths.append(noisy_image(root / f"c{k}" / f"{i}.png", COLOURS[k], 10 * k + i))
            labels.append(f"c{k}")
    return paths, labels


def test_the_estimator_honours_its_time_budget(tmp_path: Path) -> None:
    """The whole fit (embedding, timing pass, training) within 20% of the budget."""
    paths, labels = write_folders(tmp_path, 3, 4)
    rule = ScopeRule(
        far_domain_similarity=0.0,
        network=dataclasses.replace(NETWORK, epochs=100_000),
        time_budget=3.0,
        min_epoch_fraction=0.0,
    )
    model = FewShotClassifier(backbone(), method=rule, cache_dir=False).fit(paths, labels)
    assert model.fit_info_["scope"] == "all" and model.fit_info_["epochs"] > 1
    assert "the time budget of 3 s" in model.fit_info_["scope_reason"]
    assert model.fit_info_["seconds"] <= 1.2 * 3.0, model.fit_info_["seconds"]


def test_an_adapted_backbone_predicts_exactly_as_before_saving(tmp_path: Path) -> None:
    paths, labels = write_folders(tmp_path / "s", 3, 3)
    queries = [noisy_image(tmp_path / "q" / f"{i}.png", COLOURS[i % 3], 100 + i) for i in range(6)]
    rule = ScopeRule(far_domain_similarity=0.0, network=dataclasses.replace(NETWORK, epochs=3))
    model = FewShotClassifier(backbone(), method=rule, cache_dir=False, image_size=SIZE)
    model.fit(paths, labels)
    assert model.fit_info_["scope"] == "all" and model.fit_info_["epochs"] == 3
    untrained = backbone().state_dict()
    adapted = model.network_.state_dict()
    assert any(not torch.equal(untrained[k], adapted[k]) for k in untrained)
    model.save(tmp_path / "m.pt")
    loaded = FewShotClassifier.load(tmp_path / "m.pt")
    assert np.array_equal(loaded.predict_proba(queries), model.predict_proba(queries))
    assert np.array_equal(loaded.outlier_score(queries), model.outlier_score(queries))
    assert loaded.predict(queries) == model.predict(queries)
    # outlier scores come from the untrained network, the classifier's from the adapted one
    head_model = FewShotClassifier(backbone(), method=RECOMMENDED, cache_dir=False, image_size=SIZE)
    head_model.fit(paths, labels)
    assert np.allclose(head_model.outlier_score(queries), model.outlier_score(queries), atol=1e-5)


def test_a_fine_tuned_model_decodes_each_image_once_for_labels_and_outlier_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a network scope the classifier and the outlier scores use two networks; one call
    gives both from one decode of each image, equal to the two calls' answers."""
    paths, labels = write_folders(tmp_path / "s", 3, 3)
    queries = [noisy_image(tmp_path / "q" / f"{i}.png", COLOURS[i % 3], 100 + i) for i in range(6)]
    rule = ScopeRule(far_domain_similarity=0.0, network=dataclasses.replace(NETWORK, epochs=2))
    model = FewShotClassifier(backbone(), method=rule, cache_dir=False, image_size=SIZE)
    model.fit(paths, labels)
    model.save(tmp_path / "m.pt")
    loaded = FewShotClassifier.load(tmp_path / "m.pt").set_params(cache_dir=False)
    decoded: list[int] = []
    getitem = ImageList.__getitem__

    def counting(self: ImageList, position: Any) -> Any:
        if isinstance(position, int):
            decoded.append(position)
        return getitem(self, position)

    monkeypatch.setattr(ImageList, "__getitem__", counting)
    probabilities, scores = loaded.predict_proba_and_outlier_score(queries)
    assert sorted(decoded) == list(range(6))
    assert scores is not None
    np.testing.assert_allclose(probabilities, model.predict_proba(queries), atol=1e-6)
    np.testing.assert_allclose(scores, model.outlier_score(queries), atol=1e-6)
    decoded.clear()  # each network's rows were kept as its own: asked alone, nothing is decoded
    loaded.predict_proba(queries), loaded.outlier_score(queries)
    assert decoded == []
    labels_now = model.predict(queries)
    decoded.clear()
    again = FewShotClassifier.load(tmp_path / "m.pt").set_params(cache_dir=False)
    assert again.predict(queries) == labels_now
    assert sorted(decoded) == list(range(6))


def test_a_randomly_initialised_registry_network_is_stored_whole(tmp_path: Path) -> None:
    """conv-4 built from its name has no shipped weights (its initialisation may change with
    torch): the untrained network of outlier scores is stored, not named, and round-trips; a
    file naming a network this anyshot does not have is refused when loaded."""
    paths, labels = write_folders(tmp_path / "s", 3, 3)
    queries = [noisy_image(tmp_path / "q" / f"{i}.png", COLOURS[i % 3], 100 + i) for i in range(6)]
    rule = ScopeRule(far_domain_similarity=0.0, network=dataclasses.replace(NETWORK, epochs=2))
    model = FewShotClassifier("conv4", method=rule, cache_dir=False, image_size=SIZE, seed=3)
    model.fit(paths, labels)
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "registry" not in payload["outlier_backbone"]
    loaded = FewShotClassifier.load(tmp_path / "m.pt")
    assert np.array_equal(loaded.outlier_score(queries), model.outlier_score(queries))
    payload["outlier_backbone"] = {
        "registry": {"name": "conv9", "image_size": None, "seed": 0, "digest": "0" * 64}
    }
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="conv9"):
        FewShotClassifier.load(tmp_path / "other.pt")


def test_fit_summary_says_what_auto_chose_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folders(tmp_path / "support", 2, 3)
    argv = ["fit", "--support", str(tmp_path / "support"), "--output", str(tmp_path / "m.pt"),
            "--backbone", "conv4", "--image-size", str(SIZE), "--epochs", "2"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "scope auto chose " in err and "cross-class similarity" in err
    assert main([*argv, "--scope", "head"]) == 0
    assert "scope auto chose" not in capsys.readouterr().err


def test_the_network_trains_at_the_images_own_size_within_bounds(tmp_path: Path) -> None:
    assert network_image_size(20) == NETWORK_SIDES[0] and network_image_size(4000) == 224
    assert network_image_size(105) == 105 and network_image_size(None) is None
    paths, labels = write_folders(tmp_path, 2, 2)  # 20 px images, a 16 px backbone
    rule = ScopeRule(far_domain_similarity=0.0, network=dataclasses.replace(NETWORK, epochs=1))
    model = FewShotClassifier(backbone(), method=rule, cache_dir=False).fit(paths, labels)
    assert model.preprocessing_.image_size == 64 and "at 64 px" in model.fit_info_["scope_reason"]
    assert model.predict_proba(paths).shape == (4, 2)
    head = FewShotClassifier(backbone(), method=RECOMMENDED, cache_dir=False).fit(paths, labels)
    assert head.preprocessing_.image_size == SIZE  # the head keeps the backbone's size
    given = FewShotClassifier(backbone(), method=rule, cache_dir=False, image_size=32)
    assert given.fit(paths, labels).preprocessing_.image_size == 32  # a size given is kept


def test_every_labelled_image_of_a_class_unreadable_is_the_usual_error(tmp_path: Path) -> None:
    paths, labels = write_folders(tmp_path, 2, 2)
    for path in paths[:2]:  # class c0
        path.write_bytes(b"not an image")
    skipped: list[object] = []
    with pytest.raises(EmptyClassError, match="c0"):
        FewShotClassifier(backbone(), cache_dir=False).fit(
            paths, labels, on_unreadable=skipped.append
        )


def test_a_saved_model_keeps_no_machine_bound_settings(tmp_path: Path) -> None:
    paths, labels = write_folders(tmp_path / "s", 2, 2)
    rule = ScopeRule(far_domain_similarity=0.0, network=dataclasses.replace(NETWORK, epochs=2))
    model = FewShotClassifier(backbone(), method=rule, cache_dir=False, image_size=SIZE,
                              show_progress=True).fit(paths, labels)  # fmt: skip
    assert model.method_.time_budget is not None and model.method_.show_progress  # type: ignore[union-attr]
    model.save(tmp_path / "m.pt")
    loaded = FewShotClassifier.load(tmp_path / "m.pt").method_
    assert loaded.time_budget is None and not loaded.show_progress  # type: ignore[union-attr]
    assert loaded.epochs == 2 and loaded.scope == "all"  # type: ignore[union-attr]


def test_time_budget_with_support_init_is_refused() -> None:
    from anyshot.cli import build_parser
    from anyshot.cli.options import method_from_args

    argv = ["classify", "--support", "s", "--query", "q", "--method", "support-init"]
    with pytest.raises(ConfigurationError, match="support-init trains nothing"):
        method_from_args(build_parser().parse_args([*argv, "--time-budget", "5"]))


def test_the_rule_embeds_and_reports_each_labelled_image_once(tmp_path: Path) -> None:
    """The head reuses the embeddings the rule computed (images in memory are not cached);
    an unreadable image is reported once, whichever scope is chosen."""
    paths, labels = write_folders(tmp_path, 2, 3)
    pil = [Image.open(p).convert("RGB") for p in paths]
    head_rule = ScopeRule(far_domain_similarity=1.1)  # the head, whatever the images
    model = FewShotClassifier(backbone(), method=head_rule, cache_dir=False, image_size=SIZE)
    model.fit(pil, labels)
    assert model.fit_info_["scope"] == "head" and model._feature_cache().computed == len(pil)
    paths[0].write_bytes(b"not an image")
    for far in (1.1, 0.0):  # head, then the network
        rule = ScopeRule(far_domain_similarity=far, network=dataclasses.replace(NETWORK, epochs=1))
        skipped: list[object] = []
        fitted = FewShotClassifier(backbone(), method=rule, cache_dir=False, image_size=SIZE)
        fitted.fit(paths, labels, on_unreadable=skipped.append)
        assert len(skipped) == 1 and fitted.fit_info_["skipped"] == 1
