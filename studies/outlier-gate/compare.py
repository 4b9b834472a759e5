"""Paired differences of the gate variants to ``recommended`` (the default before this study)
on the val grid runs of this folder: mean per cell, present-class cells, cells significantly
lower / higher (95% CI of the per-episode difference), cells below support-init minus its CI.

    python studies/outlier-gate/compare.py studies/outlier-gate/grid-val-*.json
"""

from __future__ import annotations

import json
import sys

import numpy as np

VARIANTS = ("recommended:gate_outlier_rate=0.05", "recommended:gate_outlier_rate=0.2")

for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    for variant in VARIANTS:
        diffs, present, lower, higher, below = [], [], [], [], []
        for cell, methods in results.items():
            new = np.array(methods[variant]["accuracies"])
            old = np.array(methods["recommended"]["accuracies"])
            d = 100 * (new - old)
            mean, half = d.mean(), 1.96 * d.std(ddof=1) / len(d) ** 0.5
            diffs.append(mean)
            if "present" in cell:
                present.append(mean)
            if mean + half < 0:
                lower.append(f"{cell} {mean:+.1f}±{half:.1f}")
            if mean - half > 0:
                higher.append(f"{cell} {mean:+.1f}±{half:.1f}")
            si = methods["support-init"]
            if methods[variant]["accuracy"] < si["accuracy"] - si["ci95"]:
                below.append(cell)
        print(f"{path}: {variant}: {len(diffs)} cells, {np.mean(diffs):+.2f} per cell, "
              f"present classes {np.mean(present):+.2f} ({len(present)})")
        print(f"  significantly lower: {lower}\n  higher: {higher}\n  below support-init: {below}")
