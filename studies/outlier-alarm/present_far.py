"""False alarms of the unknown rule on query sets without outliers whose images come from only
a few of the labelled classes (the realistic grid's present-class and many-way val cells):
share of query images flagged at the 5% target, uncentred rows vs rows centred on the episode
(:func:`anyshot.outliers.outlier_centre`, the product's since study-auroc).

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python studies/outlier-alarm/present_far.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from anyshot.episode_files import load_episodes
from anyshot.feature_cache import FeatureCache
from anyshot.outliers import nearest_mean_distance, outlier_centre, unknown_threshold
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from realistic_grid import DOMAINS

CELLS = sys.argv[1:] or [
    "mini-present-16w1s-k1", "mini-present-16w5s-k1", "mini-present-16w5s-k3",
    "mini-present-16w20s-k5", "mini-balanced-5w5s", "mini-manyway-16w5s",
    "omni-present-20w1s-k1", "omni-present-20w5s-k3", "omni-balanced-5w5s",
]
for cell in CELLS:
    name = cell.split("-")[0]
    domain = DOMAINS[name]
    data = dataset_split(Path("../shared/data"), domain.dataset, "val")
    specs = load_episodes(Path("/tmp/grid-episodes/val") / f"{cell}.jsonl", data)[:100]
    cache = FeatureCache(Path("/tmp/anyshot-features"), channels_last=domain.channels_last)
    batch = EpisodeBatch.of(embed_episodes(cache, domain.network(), data, specs).features, specs)
    rates = {}
    for label in ("uncentred", "centred"):
        flagged = []
        for e in range(len(batch)):
            s, t, q = batch.support[e], batch.targets[e], batch.query[e]
            centre = outlier_centre(s, q) if label == "centred" else None
            d = nearest_mean_distance(s[None], t[None], q[None], batch.ways,
                                      centre=None if centre is None else centre[None])[0]
            thr = unknown_threshold(s, t, batch.ways, 0.05, centre=centre)
            flagged.append(float((d > thr).float().mean()))
        rates[label] = 100 * float(torch.tensor(flagged).mean())
    print(f"{cell:28s} flagged % at a 5% target: " + ", ".join(f"{k} {v:.1f}" for k, v in rates.items()), flush=True)
