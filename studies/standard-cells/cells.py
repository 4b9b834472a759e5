"""The 5-way standard cells of the realistic grid's val episodes, as embedded batches: shared by
this folder's scripts (run from the repository root with ``PYTHONPATH=src:benchmarks``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from anyshot.episode_files import load_episodes
from anyshot.feature_cache import FeatureCache
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from realistic_grid import DOMAINS

CELLS = [f"{d}-{k}-5w{s}s" for d in ("mini", "omni") for k in ("balanced", "dirichlet0.5", "dirichlet2") for s in (1, 5)]


def val_batches() -> Iterator[tuple[str, EpisodeBatch]]:
    """``(cell name, its val episodes as one batch)`` for every cell of :data:`CELLS`."""
    for name, domain in DOMAINS.items():
        data = dataset_split(DATA_ROOT, domain.dataset, "val")
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        network = domain.network()
        for cell in [c for c in CELLS if c.startswith(name)]:
            specs = load_episodes(Path("/tmp/grid-episodes/val") / f"{cell}.jsonl", data)
            features = embed_episodes(cache, network, data, specs, show_progress=False).features
            yield cell, EpisodeBatch.of(features, specs)
