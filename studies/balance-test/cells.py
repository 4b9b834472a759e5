"""The val grid's cells as episode batches of cached features (shared by this study's scripts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from anyshot.feature_cache import FeatureCache
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from realistic_grid import DOMAINS, cell_episodes, grid, select


def val_batches(patterns: str, episodes_dir: Path) -> Iterator[tuple[str, EpisodeBatch]]:
    """``(cell name, its episodes)`` of the val grid's cells matching ``patterns`` (the episode
    files of ``episodes_dir``; embedded once per domain through the feature cache)."""
    for domain_name, domain in DOMAINS.items():
        data = dataset_split(DATA_ROOT, domain.dataset, "val")
        ways = {"mini": 16, "omni": len(set(data.labels))}
        cells = [c for c in select(grid(ways, None), patterns) if c.domain == domain_name]
        if not cells:
            continue
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        specs = {c.name: cell_episodes(c, data, 0, episodes_dir, "val")[0] for c in cells}
        every = [s for ss in specs.values() for s in ss]
        features = embed_episodes(cache, domain.network(), data, every).features
        for name, ss in specs.items():
            yield name, EpisodeBatch.of(features, ss)
