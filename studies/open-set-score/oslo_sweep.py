"""OSLO's settings on VALIDATION classes (the peer of ``benchmarks/open_set.py``): mean AUROC
(and inlier accuracy) of :func:`open_set.oslo` over a grid of steps and entropy weights, on the
open-set cells of ``open_set.py --split val`` (same seeds, 300 episodes, 15 inlier + 15 outlier
queries, both domains, 1 and 5 shots).

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks python studies/open-set-score/oslo_sweep.py
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

import open_set as os_
from anyshot.feature_cache import FeatureCache
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from realistic_grid import DOMAINS


def main() -> None:
    torch.set_num_threads(1)
    batches = {}
    for name in ("mini", "omni"):
        domain = DOMAINS[name]
        data = dataset_split(os_.DATA_ROOT, domain.dataset, "val")
        cells = {s: os_.sampled(data, s, *os_.OPEN_SET[:2], 300, 0) for s in os_.SHOTS}
        cache = FeatureCache(os_.FEATURE_CACHE, channels_last=domain.channels_last)
        every = [spec for specs in cells.values() for spec in specs]
        features = embed_episodes(cache, domain.network(), data, every).features
        for shots, specs in cells.items():
            batches[f"{name}-{shots}s"] = EpisodeBatch.of(features, specs)
    print("steps lambda_s lambda_z | AUROC per cell (mini1 mini5 omni1 omni5) | mean | inlier acc mean")
    results = []
    for steps, ls, lz in itertools.product((1, 2, 3, 5, 10, 20), (0.01, 0.02, 0.05, 0.1, 0.2), (0.01, 0.02, 0.05, 0.1, 0.2)):
        settings = os_.OsloSettings(steps, ls, lz)
        aurocs, accs = [], []
        for batch in batches.values():
            logits, scores = os_.oslo(batch.support, batch.targets, batch.query, batch.ways, settings)
            row = os_.open_set_metrics(logits, batch.query_targets, scores)
            aurocs.append(row["auroc"]["mean"])
            accs.append(row["inlier_accuracy"]["mean"])
        results.append((np.mean(aurocs), steps, ls, lz, aurocs, np.mean(accs)))
        print(f"{steps:3d} {ls:5.2f} {lz:5.2f} | " + " ".join(f"{a:5.1f}" for a in aurocs)
              + f" | {np.mean(aurocs):5.2f} | {np.mean(accs):5.1f}", flush=True)
    best = max(results)
    print("best:", best)


if __name__ == "__main__":
    main()
