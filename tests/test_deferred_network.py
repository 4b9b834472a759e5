"""The estimator loads its network only when an image must be embedded: a repeat fit on cached
images reads the rows without building the network, and anything that changes the network (a
rewritten checkpoint, another seed for a random one) loads it again. Conv-4 at 16 px on tiny
generated images; ``$XDG_CACHE_HOME`` is a temporary folder in every test (conftest)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from anyshot import deferred_network
from anyshot.backbones import build_backbone, save_backbone
from anyshot.classifier import FewShotClassifier
from anyshot.cli import main
from anyshot.feature_cache import FeatureCache, RememberedModel
from anyshot.methods import SupportBasedInit
from conftest import noisy_image, support_and_query

SIZE = 16
COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 30)}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every network the estimator builds from a name or a file, by spec."""
    built: list[str] = []
    original = deferred_network.load_backbone

    def counting(spec: Any, **kwargs: Any) -> Any:
        built.append(os.fspath(spec))
        return original(spec, **kwargs)

    monkeypatch.setattr(deferred_network, "load_backbone", counting)
    return built


def fitted(support: Path, query: Path, cache: Path, backbone: str = "conv4", seed: int = 0) -> Any:
    paths = sorted(support.rglob("*.png"))
    model = FewShotClassifier(
        backbone=backbone, method=SupportBasedInit(), image_size=SIZE, cache_dir=cache,
        seed=seed, show_progress=False,
    )  # fmt: skip
    probabilities, _ = model.classify(
        [str(p) for p in paths], [p.parent.name for p in paths],
        [str(p) for p in sorted(query.rglob("*.png"))],
    )  # fmt: skip
    return model, probabilities


def test_a_repeat_fit_on_cached_images_never_builds_the_network(
    tmp_path: Path, loads: list[str]
) -> None:
    support, query = support_and_query(tmp_path, COLOURS)
    first, expected = fitted(support, query, tmp_path / "cache")
    assert loads == ["conv4"]
    again, probabilities = fitted(support, query, tmp_path / "cache")
    assert loads == ["conv4"]  # rows read, network never built
    np.testing.assert_array_equal(probabilities, expected)
    assert again.outlier_score([str(p) for p in sorted(query.rglob("*.png"))]).shape == (6,)
    assert loads == ["conv4"]
    # on first use the network is built, and it is the one the first fit used
    state, reference = again.network_.state_dict(), first.network_.state_dict()
    assert loads == ["conv4", "conv4"]
    assert all(torch.equal(state[k], reference[k]) for k in reference)


def test_an_image_not_yet_cached_builds_the_network(tmp_path: Path, loads: list[str]) -> None:
    support, query = support_and_query(tmp_path, COLOURS)
    fitted(support, query, tmp_path / "cache")
    noisy_image(query / "new.png", COLOURS["red"], 999)
    _, probabilities = fitted(support, query, tmp_path / "cache")
    assert loads == ["conv4", "conv4"]
    assert probabilities.shape == (7, 3)


def test_another_seed_of_a_random_network_is_another_network(
    tmp_path: Path, loads: list[str]
) -> None:
    support, query = support_and_query(tmp_path, COLOURS)
    _, zero = fitted(support, query, tmp_path / "cache", seed=0)
    _, one = fitted(support, query, tmp_path / "cache", seed=1)
    assert loads == ["conv4", "conv4"]
    assert not np.allclose(zero, one)


def test_a_rewritten_checkpoint_is_loaded_again(tmp_path: Path, loads: list[str]) -> None:
    support, query = support_and_query(tmp_path, COLOURS)
    checkpoint = tmp_path / "net.pt"
    torch.manual_seed(0)
    save_backbone(build_backbone("conv4", image_size=SIZE), checkpoint)
    _, before = fitted(support, query, tmp_path / "cache", backbone=str(checkpoint))
    fitted(support, query, tmp_path / "cache", backbone=str(checkpoint))
    assert loads == [str(checkpoint)]
    torch.manual_seed(1)
    save_backbone(build_backbone("conv4", image_size=SIZE), checkpoint)
    os.utime(checkpoint, ns=(10**18, 10**18))  # a new file, whatever the clock's resolution
    _, after = fitted(support, query, tmp_path / "cache", backbone=str(checkpoint))
    assert loads == [str(checkpoint), str(checkpoint)]
    assert not np.allclose(before, after)


def test_a_damaged_record_counts_as_none(tmp_path: Path, loads: list[str]) -> None:
    support, query = support_and_query(tmp_path, COLOURS)
    fitted(support, query, tmp_path / "cache")
    records = list((tmp_path / "cache" / "models").glob("*.json"))
    assert len(records) == 1
    records[0].write_text("{not json")
    _, probabilities = fitted(support, query, tmp_path / "cache")
    assert loads == ["conv4", "conv4"]
    assert probabilities.shape == (6, 3)


def test_fit_then_save_after_a_cached_fit_writes_the_network(tmp_path: Path) -> None:
    support, query = support_and_query(tmp_path, COLOURS)
    base = [
        "--support",
        str(support),
        "--backbone",
        "conv4",
        "--image-size",
        str(SIZE),
        "--quiet",
        "--method",
        "support-init",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    for name in ("a.pt", "b.pt"):  # the second fit reads every row from the cache
        assert main(["fit", *base, "--output", str(tmp_path / name)]) == 0
    predictions = []
    for name in ("a.pt", "b.pt"):
        out = tmp_path / f"{name}.csv"
        argv = ["predict", "--model", str(tmp_path / name), str(query), "--quiet",
                "--no-cache", "--output", str(out)]  # fmt: skip
        assert main(argv) == 0
        predictions.append(out.read_text())
    assert predictions[0] == predictions[1]


def test_stored_needs_every_image_cached(tmp_path: Path) -> None:
    from anyshot.embedding import ImageList
    from anyshot.feature_cache import model_digest

    support, _ = support_and_query(tmp_path, COLOURS)
    paths = [str(p) for p in sorted(support.rglob("*.png"))]
    torch.manual_seed(0)
    network = build_backbone("conv4", image_size=SIZE).eval()
    cache = FeatureCache(tmp_path / "cache")
    digest = model_digest(network, network.preprocessing)
    images = ImageList(paths, network.preprocessing)
    assert cache.stored(digest, images) is None
    rows, _ = cache.embed(network, ImageList(paths[:-1], network.preprocessing))
    assert cache.stored(digest, images) is None  # one image missing
    assert FeatureCache(tmp_path / "cache").stored(digest, images) is None
    cache.embed(network, images)
    found = FeatureCache(tmp_path / "cache").stored(digest, images)
    assert found is not None
    torch.testing.assert_close(found[0][:-1], rows)
    assert found[1] == list(range(len(paths)))


def test_remembered_models_survive_the_process_and_not_another_identity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_backbone("conv4", image_size=SIZE)
    model = RememberedModel("abc", network.preprocessing, "conv4")
    FeatureCache(tmp_path / "cache").remember_model("identity-1", model)
    assert FeatureCache(tmp_path / "cache").remembered_model("identity-1") == model
    assert FeatureCache(tmp_path / "cache").remembered_model("identity-2") is None
    assert FeatureCache(None).remembered_model("identity-1") is None


def test_a_model_fitted_from_the_cache_pickles_and_predicts_the_same(
    tmp_path: Path, loads: list[str]
) -> None:
    import pickle

    support, query = support_and_query(tmp_path, COLOURS)
    fitted(support, query, tmp_path / "cache")
    model, _ = fitted(support, query, tmp_path / "cache")  # network not loaded
    new = [str(noisy_image(tmp_path / "new.png", COLOURS["green"], 7))]
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(new), model.predict_proba(new))


def test_a_model_that_embedded_images_pickles_and_predicts_the_same(
    tmp_path: Path, loads: list[str]
) -> None:
    """Its feature cache holds a converted copy of the network (behind a weak reference):
    pickled without it."""
    import pickle

    support, query = support_and_query(tmp_path, COLOURS)
    model, _ = fitted(support, query, tmp_path / "cache")  # every image embedded
    new = [str(noisy_image(tmp_path / "new.png", COLOURS["green"], 7))]
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.predict_proba(new), model.predict_proba(new))
    older = {k: v for k, v in FeatureCache(None).__dict__.items() if k != "_converted"}
    restored = FeatureCache.__new__(FeatureCache)
    restored.__setstate__(older)  # what unpickling a cache of a version without it does
    assert restored._converted is None


def test_stored_stops_at_the_first_image_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyshot import feature_cache
    from anyshot.embedding import ImageList
    from anyshot.feature_cache import model_digest

    support, _ = support_and_query(tmp_path, COLOURS)
    paths = [str(p) for p in sorted(support.rglob("*.png"))]
    torch.manual_seed(0)
    network = build_backbone("conv4", image_size=SIZE).eval()
    digest = model_digest(network, network.preprocessing)
    keyed: list[str] = []
    original = feature_cache._item_key
    monkeypatch.setattr(
        feature_cache, "_item_key", lambda *a, **k: keyed.append(a[1]) or original(*a, **k)
    )
    cache = FeatureCache(tmp_path / "cache")
    assert cache.stored(digest, ImageList(paths, network.preprocessing)) is None
    assert keyed == [paths[0]]  # one key, not six, before embed computes them all
