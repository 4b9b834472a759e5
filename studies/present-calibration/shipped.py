"""Support-init's val ECE with the shipped rounded rule (tau = 0.46 shots^-0.25) against the
previous 0.46, per group of cells and in the cells of the most change; and the default's, whose
guard answers take the same rule.

    python shipped.py /tmp/pc/pc
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from fit import SHIPPED_FIRST, SHIPPED_SI, SHIPPED_TSALLIS, Cell, Rule, default_tau, report

cells = [Cell(p.stem, torch.load(p)) for p in sorted(Path(sys.argv[1]).glob("*.pt"))]
new = Rule(("log:shots",), [math.log(0.46), -0.25])
before = [c.ece(SHIPPED_SI.log_tau(c).exp(), base=True) for c in cells]
after = [c.ece(new.log_tau(c).exp(), base=True) for c in cells]
report("support-init's ECE (%), val", cells, {"0.46": before, "0.46 shots^-0.25": after})
old = (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, SHIPPED_SI)
now = (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, new)
d0 = [c.ece(default_tau(c, *old)) for c in cells]
d1 = [c.ece(default_tau(c, *now)) for c in cells]
report("the default's ECE (%), val (guard answers only differ)", cells, {"before": d0, "after": d1})
guard = sum(int((c.path == 3).sum()) for c in cells)
print(f"\nqueries the guard answered: {guard} of {sum(len(c.targets) for c in cells)}")
print(f"cells where support-init's ECE rose: {sum(a > b + 0.05 for a, b in zip(after, before))} of {len(cells)}")
worst = sorted(zip([a - b for a, b in zip(after, before)], [c.name for c in cells]), reverse=True)[:5]
print("largest rises:", ", ".join(f"{n} {d:+.1f}" for d, n in worst))
print(f"default: largest change {max(abs(a - b) for a, b in zip(d1, d0)):.2f} points")
print("\n| cell | accuracy | 0.46 | 0.46 shots^-0.25 |\n|---|---|---|---|")
for c, b, a in zip(cells, before, after):
    if a > b + 0.05 or a < b - 5:
        print(f"| {c.name} | {100 * float(c.base_correct.double().mean()):.1f} | {b:.1f} | {a:.1f} |")
