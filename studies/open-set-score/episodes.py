"""Open-set val episodes of ``benchmarks/open_set.py`` as stacked embeddings, saved once.

Cells: domain (mini, omni) x shots (1, 5) x form (15/15 inliers/outliers, as open_set.py;
5/25 and 25/5). Same sampler and seed as ``open_set.py`` (the 15/15 cells are its episodes).
Writes ``<out>/<domain>-<shots>s-<inliers>-<outliers>.pt`` with the EpisodeBatch tensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from anyshot.feature_cache import FeatureCache
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from open_set import sampled
from realistic_grid import DOMAINS

FORMS = ((15, 15), (5, 25), (25, 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--cache-dir", type=Path, default=FEATURE_CACHE)
    parser.add_argument("--out", type=Path, default=Path("/tmp/open-set-score"))
    args = parser.parse_args()
    if args.split != "val":
        raise SystemExit("a validation study: --split val only")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, domain in DOMAINS.items():
        data = dataset_split(args.data_root, domain.dataset, args.split)
        cells = {
            f"{name}-{shots}s-{i}-{o}": sampled(data, shots, i, o, args.episodes, args.seed)
            for shots in (1, 5)
            for i, o in FORMS
        }
        cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
        every = [spec for specs in cells.values() for spec in specs]
        features = embed_episodes(cache, domain.network(), data, every).features
        for cell, specs in cells.items():
            batch = EpisodeBatch.of(features, specs)
            torch.save(
                {
                    "support": batch.support.float(),
                    "targets": batch.targets,
                    "query": batch.query.float(),
                    "query_targets": batch.query_targets,
                    "ways": batch.ways,
                },
                args.out / f"{cell}.pt",
            )
            print(cell, tuple(batch.support.shape), tuple(batch.query.shape), flush=True)


if __name__ == "__main__":
    main()
