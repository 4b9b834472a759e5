"""Tests of anyshot.evaluation.cached and ``anyshot evaluate --cache-dir``: the cached, batched
path gives the records of the plain one; the cache is reused and invalidated by a touched file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from anyshot.backbones import build_backbone
from anyshot.cli import main
from anyshot.data import FolderDataset
from anyshot.episodes import EpisodeSampler, EpisodeSpec, make_episode
from anyshot.evaluation import evaluate
from anyshot.evaluation.cached import (
    TIMING,
    ItemFeatures,
    embed_items,
    episode_items,
    episode_tensors,
    evaluate_cached,
    plan_batches,
    supports_cached,
)
from anyshot.feature_cache import FeatureCache
from anyshot.methods import FineTuning, SupportBasedInit, TransductiveFineTuning
from conftest import write_colour_folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_colour_folder(tmp_path / "data")


def mixed_specs(dataset: FolderDataset) -> list[EpisodeSpec]:
    """Six 3-way 2-shot 3-query episodes (batched together) and one 2-way episode (alone)."""
    fixed = EpisodeSampler(dataset.labels, ways=3, shots=2, queries=3, seed=1)
    other = EpisodeSampler(dataset.labels, ways=2, shots=[1, 3], queries=2, seed=2)
    specs = list(fixed.take(6))
    specs.insert(2, other.sample(0))
    return specs


def test_episode_tensors_stack_rows_in_way_order_with_way_targets(folder: Path) -> None:
    dataset = FolderDataset(folder)
    specs = mixed_specs(dataset)
    fixed = [spec for spec in specs if len(spec.classes) == 3]
    items = episode_items(specs)
    # Each item's "embedding" is its dataset index, so rows show which item they hold.
    features = ItemFeatures(items, torch.tensor(items, dtype=torch.float32)[:, None].repeat(1, 4))
    support, targets, query, query_targets = episode_tensors(features, fixed)

    assert support.shape == (6, 6, 4) and targets.shape == (6, 6)
    assert query.shape == (6, 9, 4) and query_targets.shape == (6, 9)
    for e, spec in enumerate(fixed):
        assert support[e, :, 0].long().tolist() == [i for way in spec.support for i in way]
        assert query[e, :, 0].long().tolist() == [i for way in spec.query for i in way]
        assert targets[e].tolist() == [k for k, way in enumerate(spec.support) for _ in way]
        assert query_targets[e].tolist() == [k for k, way in enumerate(spec.query) for _ in way]
        for row, k in zip(support[e, :, 0].long().tolist(), targets[e].tolist(), strict=True):
            assert dataset.labels[row] == dataset.labels[spec.support[k][0]]
    with pytest.raises(ValueError, match="different"):
        episode_tensors(features, specs)
    with pytest.raises(ValueError, match="no episodes"):
        episode_tensors(features, [])


METHODS = [
    SupportBasedInit(),
    FineTuning(scope="head", epochs=5, lr=1e-2, temperature=0.1),
    TransductiveFineTuning(scope="head", epochs=8, lr=1e-2, temperature=0.1, balance_weight=1.0),
]


@pytest.mark.parametrize("method", METHODS, ids=["support-init", "finetune", "transductive"])
def test_cached_batched_records_match_plain_evaluate(
    method: Any, folder: Path, tmp_path: Path
) -> None:
    dataset = FolderDataset(folder)
    torch.manual_seed(0)
    backbone = build_backbone("conv4", image_size=16)
    specs = mixed_specs(dataset)
    episodes = [make_episode(dataset, spec, backbone.preprocessing) for spec in specs]
    plain = evaluate(method, backbone, episodes, hardness=lambda i, _e: 0.5 * i)

    # Channels-first features are bitwise those of the plain path: only batching rounds.
    cache = FeatureCache(tmp_path / "cache", channels_last=False)
    features = embed_items(cache, backbone, dataset, episode_items(specs))
    cached = evaluate_cached(method, features, specs, hardness=lambda i: 0.5 * i)

    assert cached.config["timing"] == TIMING
    assert [r["index"] for r in cached.records] == list(range(len(specs)))
    for mine, reference in zip(cached.records, plain.records, strict=True):
        for key in ("index", "accuracy", "ways", "shots", "queries", "hardness"):
            assert mine[key] == reference[key], key
        assert mine["entropy"] == pytest.approx(reference["entropy"], abs=1e-5)
        assert mine["seconds"] >= 0
    assert cached.records[2]["ways"] == 2 and cached.records[2]["shots"] == [1, 3]
    # Not a degenerate comparison: predictions are confident enough to differ from chance.
    assert np.mean([r["accuracy"] for r in cached.records]) > 0.6


def test_plan_batches_groups_by_shape_and_ignores_sharding(folder: Path) -> None:
    specs = mixed_specs(FolderDataset(folder))
    assert plan_batches(specs) == [[0, 1, 3, 4, 5, 6], [2]]
    assert plan_batches(specs, episodes_per_chunk=4) == [[0, 1, 3, 4], [2], [5, 6]]
    # A shard: episode 2 stays alone, the others are batched even where a shard has one.
    assert plan_batches(specs, [0, 2, 4, 6]) == [[0, 4, 6], [2]]
    assert plan_batches(specs, [3]) == [[3]]
    assert episode_items(specs[:1]) == [i for part in (*specs[0].support, *specs[0].query)
                                        for i in part]  # fmt: skip


def test_refuses_methods_that_train_the_backbone(folder: Path) -> None:
    assert supports_cached(SupportBasedInit())
    assert supports_cached(TransductiveFineTuning(scope="head"))
    assert not supports_cached(TransductiveFineTuning(scope="last"))
    assert not supports_cached(FineTuning(scope="all"))
    specs = mixed_specs(FolderDataset(folder))
    with pytest.raises(ValueError, match="scope 'head'"):
        evaluate_cached(FineTuning(scope="all"), None, specs)  # type: ignore[arg-type]


def cli(root: Path, output: Path, *extra: str) -> list[str]:
    return [
        "evaluate", "--dataset", "folder", "--data-root", str(root), "--ways", "3",
        "--shots", "2", "--queries", "3", "--episodes", "5", "--backbone", "conv4",
        "--image-size", "16", "--seed", "3", "--quiet", "--output", str(output), *extra,
    ]  # fmt: skip


def episodes_of(path: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(path.read_text())["episodes"]
    return records


def rows_in(cache: Path) -> int:
    return sum(
        len(torch.load(shard, weights_only=True)["keys"]) for shard in cache.rglob("shard-*.pt")
    )


# support-init at T = 1: the entropy tolerance below was set for it (the cached features are
# bfloat16 on a CPU with native bfloat16, and the default T = 0.1 scales logit differences 10x).
# The transductive head without its safeguards: 9 queries for 3 classes would close the gate.
@pytest.mark.parametrize("method", [["--method", "support-init", "--temperature", "1"],
                         ["--method", "transductive",
                         "--temperature", "0.1", "--lr", "0.01", "--epochs", "8",
                         "--min-queries-per-class", "0", "--queries-per-shot", "0",
                         "--min-agreement", "0"]],
                         ids=["support-init", "transductive"])  # fmt: skip
def test_cli_cache_dir_matches_plain_and_is_reused(
    method: list[str], folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, cached, again = (tmp_path / f"{n}.json" for n in ("plain", "cached", "again"))
    cache = tmp_path / "cache"
    assert main(cli(folder, plain, *method)) == 0
    assert main(cli(folder, cached, *method, "--cache-dir", str(cache))) == 0
    stored = rows_in(cache)
    assert 0 < stored <= 5 * 5 * 8  # every needed item once
    for mine, reference in zip(episodes_of(cached), episodes_of(plain), strict=True):
        assert mine["accuracy"] == reference["accuracy"]
        # 1e-3: the default's calibration rule scales the logits by exp(2.8 s), s the class
        # means' cosine, which carries the rows' last-digit differences into the entropy
        assert mine["entropy"] == pytest.approx(reference["entropy"], abs=1e-3)
        assert (mine["index"], mine["ways"], mine["shots"]) == (
            reference["index"],
            reference["ways"],
            reference["shots"],
        )
    config = json.loads(cached.read_text())["config"]
    assert config["feature_cache"] == str(cache) and config["timing"].startswith("batched:")

    # Second run: every row is read from the cache, nothing new is stored, same records.
    assert main(cli(folder, again, *method, "--cache-dir", str(cache))) == 0
    assert rows_in(cache) == stored
    assert [r["entropy"] for r in episodes_of(again)] == [r["entropy"] for r in episodes_of(cached)]

    # A touched image (new mtime, same bytes) is a hit; a rewritten one is a miss: exactly
    # that item is embedded again.
    dataset = FolderDataset(folder)
    sampler = EpisodeSampler(dataset.labels, ways=3, shots=2, queries=3, seed=3)
    image = Path(dataset.source(episode_items(sampler.take(5))[0]))
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 7_000_000_000))
    assert main(cli(folder, again, *method, "--cache-dir", str(cache))) == 0
    assert rows_in(cache) == stored
    Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)
    assert main(cli(folder, again, *method, "--cache-dir", str(cache))) == 0
    assert rows_in(cache) == stored + 1
    capsys.readouterr()


def test_cli_cache_dir_with_scope_last_falls_back_with_a_note(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    method = ["--method", "finetune", "--scope", "last", "--epochs", "2"]
    plain, noted = tmp_path / "plain.json", tmp_path / "noted.json"
    assert main(cli(folder, plain, *method)) == 0
    capsys.readouterr()
    assert main(cli(folder, noted, *method, "--cache-dir", str(tmp_path / "cache"))) == 0
    err = capsys.readouterr().err
    assert "note: --cache-dir is not used" in err and "--scope last" in err
    assert not (tmp_path / "cache").exists()
    assert [r["accuracy"] for r in episodes_of(noted)] == [
        r["accuracy"] for r in episodes_of(plain)
    ]
    assert [r["entropy"] for r in episodes_of(noted)] == [r["entropy"] for r in episodes_of(plain)]
    assert "feature_cache" not in json.loads(noted.read_text())["config"]


def test_help_describes_speed_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = capsys.readouterr().out
    assert "--cache-dir" in text and "--workers" in text and "torchrun" in text


def test_shard_episodes_hands_out_whole_batches() -> None:
    from anyshot.episodes import EpisodeSpec
    from anyshot.evaluation.cached import plan_batches, shard_episodes

    def spec(ways: int) -> EpisodeSpec:
        return EpisodeSpec(
            tuple(range(ways)), tuple((k,) for k in range(ways)), tuple((k,) for k in range(ways))
        )

    specs = [spec(3)] * 150 + [spec(4)] * 5 + [spec(2)]
    batches = plan_batches(specs, episodes_per_chunk=64)
    parts = [shard_episodes(specs, r, 3, episodes_per_chunk=64) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(len(specs)))
    for part in parts:  # every batch lies wholly inside one part
        for batch in batches:
            assert set(batch) <= set(part) or not set(batch) & set(part)
