"""One image per class: which statistic of the between-class distances tracks the 95% quantile
of clean images' distances? Prints, per domain and K, the mean and spread of that quantile
over each statistic (300 episodes, 15 clean queries per class). Run as ``study.py``."""

from __future__ import annotations

import numpy as np
import torch

from anyshot.outliers import class_means, mean_distance, other_class_distances
from study import features

for domain, ways_list in (("mini", (5, 8)), ("omni", (5, 20, 50))):
    rows, labels = features(domain)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for ways in ways_list:
        rng = np.random.default_rng(ways)
        ratios: dict[str, list[float]] = {"nearest other median": [], "median": [], "q25": []}
        for _ in range(300):
            items = [rng.choice(by_class[c], 16, replace=False)
                     for c in rng.choice(len(by_class), ways, replace=False)]
            support = rows[[i[0] for i in items]]
            query = rows[np.concatenate([i[1:] for i in items])]
            targets = torch.arange(ways)
            clean = mean_distance(class_means(support[None], targets[None], ways), query[None])
            quantile = float(torch.quantile(clean[0], 0.95))
            between = other_class_distances(support, targets)
            full = torch.full((ways, ways), 9.0)
            first, second = torch.triu_indices(ways, ways, offset=1)
            full[first, second] = full[second, first] = between
            ratios["nearest other median"].append(quantile / float(full.amin(1).median()))
            ratios["median"].append(quantile / float(between.median()))
            ratios["q25"].append(quantile / float(torch.quantile(between, 0.25)))
        for name, values in ratios.items():
            print(f"{domain} {ways}w {name}: ratio {np.mean(values):.3f} sd {np.std(values):.3f}")
