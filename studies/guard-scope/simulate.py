"""Is the guard needed where the queries hold a few of the classes? (VALIDATION classes)

``benchmarks/realistic_grid.py --split val`` ran the default and the default without the guard
(``min_agreement=0``) on the same episodes (``grid-val-guard-{mini,omni}.json``). This replays
a third rule from their per-episode accuracies, without training: the guard only in episodes
whose queries cover the classes (:func:`anyshot.outliers.covers_classes`, nearest uncentred
class means over at least 3/4 of the classes; the default's answer there), the answer without
the guard elsewhere. Prints per cell the three means and the rule's paired difference to the
default, and the cells below support-init minus its CI.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python studies/guard-scope/simulate.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from anyshot.episode_files import load_episodes
from anyshot.feature_cache import FeatureCache
from anyshot.outliers import covers_classes
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from realistic_grid import DOMAINS

HERE = Path(__file__).parent
A, B = "recommended", "recommended:min_agreement=0"


def main() -> None:
    torch.set_num_threads(1)
    out, below = {}, []
    for name, domain in DOMAINS.items():
        results = json.loads((HERE / f"grid-val-guard-{name}.json").read_text())["results"]
        data = dataset_split(DATA_ROOT, domain.dataset, "val")
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        network = domain.network()
        for cell, rows in results.items():
            specs = load_episodes(Path("/tmp/grid-episodes/val") / f"{cell}.jsonl", data)
            specs = specs[: len(rows[A]["accuracies"])]
            batch = EpisodeBatch.of(embed_episodes(cache, network, data, specs, show_progress=False).features, specs)
            covered = covers_classes(batch.support, batch.targets, batch.query, batch.ways).numpy()
            a, b = np.array(rows[A]["accuracies"]), np.array(rows[B]["accuracies"])
            rule = np.where(covered, a, b)
            si = rows["support-init"]
            d = 100 * (rule - a)
            out[cell] = {"default": 100 * a.mean(), "no_guard": 100 * b.mean(), "rule": 100 * rule.mean(),
                         "rule_minus_default": [d.mean(), 1.96 * d.std() / np.sqrt(len(d))],
                         "covered": float(covered.mean())}
            if 100 * rule.mean() < si["accuracy"] - si["ci95"]:
                below.append(cell)
            print(f"{cell:28s} default {100 * a.mean():5.1f} no guard {100 * b.mean():5.1f} rule {100 * rule.mean():5.1f} "
                  f"({d.mean():+5.2f} ± {1.96 * d.std() / np.sqrt(len(d)):.2f}) covered {covered.mean():.2f}", flush=True)
    diffs = [v["rule_minus_default"][0] for v in out.values()]
    print(f"{len(out)} cells; rule - default mean {np.mean(diffs):+.3f}; below support-init - CI: {below}")
    print("significantly below the default:", [c for c, v in out.items() if sum(v["rule_minus_default"]) < 0])
    (HERE / "simulate.json").write_text(json.dumps({"cells": out, "below_support_init": below}, indent=1))


if __name__ == "__main__":
    main()
