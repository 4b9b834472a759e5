"""Per-cell accuracy of a realistic-grid run's method against the default of another run.

    python compare.py RUN.json benchmarks/results/realistic-grid-val.json

RUN.json's method is its first one other than support-init; the reference is ``default`` (or
``recommended``) of the second file. Prints the 12 largest losses, the 4 largest gains, the
mean change and how many cells the method has below support-init minus its CI.
"""

import json
import sys

import numpy as np


def accuracy(row: dict, *names: str) -> float:
    return next(row[n]["accuracy"] for n in names if n in row)


new = json.load(open(sys.argv[1]))["results"]
old = json.load(open(sys.argv[2]))["results"]
rows = []
for cell, row in new.items():
    method = next(n for n in row if n != "support-init")
    was = accuracy(old[cell], "default", "recommended")
    now, base = row[method]["accuracy"], row["support-init"]["accuracy"]
    rows.append((now - was, cell, base, was, now, row[method]["below_support_init"]))
rows.sort()
for diff, cell, base, was, now, below in rows[:12] + rows[-4:]:
    print(f"{cell:28s} SI {base:6.2f} default {was:6.2f} new {now:6.2f} diff {diff:+.2f} below {below}")
print("cells", len(rows), "mean diff", np.mean([r[0] for r in rows]), "below", sum(r[5] for r in rows))
