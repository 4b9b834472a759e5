"""Val study: does ``anyshot.outliers.unknown_threshold`` give the false-alarm rate it targets?

Validation classes only (mini-ImageNet val at 224 px, Omniglot val at 84 px, frozen ImageNet
EfficientNet-Lite0 features through the shared FeatureCache, as ``benchmarks/realistic_grid.py``).
Per episode: K classes, ``shots`` labelled images each (or 1..``shots`` images, uneven), 15
clean query images per class and 15 images of K other classes of the split; the threshold comes
from the labelled images alone. Printed: the mean over episodes of the false-alarm rate (clean
queries flagged) and of the detection rate (other-class images flagged), per target rate.

    cd studies/unknown-threshold
    OMP_NUM_THREADS=1 PYTHONPATH=../../src:../../benchmarks ../../.venv/bin/python study.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from anyshot.evaluation.cached import embed_items
from anyshot.feature_cache import FeatureCache
from anyshot.outliers import class_means, mean_distance, unknown_threshold
from harness.cli import FEATURE_CACHE
from harness.episodes import dataset_split
from realistic_grid import DOMAINS

RATES = (0.05, 0.1)
DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"


def features(domain: str) -> tuple[torch.Tensor, np.ndarray]:
    """Every val image's embedding ``[N, D]`` and class index ``[N]``."""
    spec = DOMAINS[domain]
    dataset = dataset_split(DATA_ROOT, spec.dataset, "val")
    cache = FeatureCache(FEATURE_CACHE, channels_last=spec.channels_last)
    items = list(range(len(dataset.labels)))
    rows = embed_items(cache, spec.network(), dataset, items, show_progress=True).rows(items)
    return rows.float(), dataset.labels


def episode(
    rng: np.random.Generator, by_class: list[np.ndarray], ways: int, shots: int, uneven: bool
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Support items per class, clean query items, other-class items (15 per class)."""
    chosen = rng.choice(len(by_class), 2 * ways, replace=False)
    support, clean = [], []
    for c in chosen[:ways]:
        count = int(rng.integers(1, shots + 1)) if uneven else shots
        items = rng.choice(by_class[c], count + 15, replace=False)
        support.append(items[:count])
        clean.append(items[count:])
    others = [rng.choice(by_class[c], 15 // ways or 1, replace=False) for c in chosen[ways:]]
    return support, np.concatenate(clean), np.concatenate(others)


def cell(rows: torch.Tensor, labels: np.ndarray, ways: int, shots: int, uneven: bool,
         episodes: int) -> dict[str, float]:
    rng = np.random.default_rng([ways, shots, int(uneven)])
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    result: dict[str, list[float]] = {}
    for _ in range(episodes):
        support, clean, others = episode(rng, by_class, ways, shots, uneven)
        items = np.concatenate(support)
        targets = torch.cat([torch.full((len(s),), k) for k, s in enumerate(support)])
        means = class_means(rows[items][None], targets[None], ways)
        far = mean_distance(means, rows[clean][None])[0]
        near = mean_distance(means, rows[others][None])[0]
        for rate in RATES:
            threshold = unknown_threshold(rows[items], targets, ways, rate)
            result.setdefault(f"false alarms @{rate:g}", []).append(float((far > threshold).float().mean()))
            result.setdefault(f"detected @{rate:g}", []).append(float((near > threshold).float().mean()))
    return {key: 100 * float(np.mean(values)) for key, values in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--output", type=Path, default=Path("results.json"))
    args = parser.parse_args()
    results = {}
    for domain in ("mini", "omni"):
        rows, labels = features(domain)
        for ways in (5, 8) if domain == "mini" else (5, 20):
            for shots in (1, 2, 5, 20) if domain == "mini" else (1, 2, 5):
                for uneven in (False, True) if shots > 2 else (False,):
                    name = f"{domain} {ways}w{shots}s{' uneven' if uneven else ''}"
                    results[name] = cell(rows, labels, ways, shots, uneven, args.episodes)
                    print(name, {k: round(v, 1) for k, v in results[name].items()}, flush=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
