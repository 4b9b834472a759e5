"""The unequal-support cells of a merged realistic-grid record (``realistic_grid_tables.py``
output): support-init, the previous default, the default, their paired difference (± 95% CI
over episodes) and the best other method, per cell.

    python studies/unbalanced-support/spread_table.py benchmarks/results/realistic-grid-val.json
"""
import json
import sys

import numpy as np

record = json.load(open(sys.argv[1]))["results"]
print("| cell | support-init | previous default | default | paired difference | best other |")
print("|---|---|---|---|---|---|")
for cell, row in record.items():
    if "-unbalanced-" not in cell:
        continue
    new, old = (np.asarray(row[m]["accuracies"]) * 100 for m in ("default", "previous-default"))
    gap = new - old
    half = 1.96 * gap.std(ddof=1) / len(gap) ** 0.5
    others = {m: s["accuracy"] for m, s in row.items()
              if m not in ("support-init", "default", "previous-default")}
    best = max(others, key=others.get) if others else "-"
    best_text = f"{best} {others[best]:.1f}" if others else "-"
    print(f"| {cell} | {row['support-init']['accuracy']:.1f} | {row['previous-default']['accuracy']:.1f} "
          f"| {row['default']['accuracy']:.1f} | {gap.mean():+.2f} ± {half:.2f} | {best_text} |")
