"""Support-init's rule with the one-shot tau kept at the previous 0.46 (its NLL optimum on the
5-way val cells) and only the shots' power fitted, against the free fit (0.51 shots^-0.32).

    python intercept.py /tmp/pc/pc
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from fit import SHIPPED_SI, Cell, Rule, report

cells = [Cell(p.stem, torch.load(p)) for p in sorted(Path(sys.argv[1]).glob("*.pt"))]
before = [c.ece(SHIPPED_SI.log_tau(c).exp(), base=True) for c in cells]
rules = {f"0.46 shots^{b}": Rule(("log:shots",), [math.log(0.46), b]) for b in (-0.25, -0.30, -0.35, -0.40)}
rules["0.51 shots^-0.32"] = Rule(("log:shots",), [math.log(0.51), -0.32])
eces = {"0.46": before} | {n: [c.ece(r.log_tau(c).exp(), base=True) for c in cells] for n, r in rules.items()}
report("support-init's ECE (%), val", cells, eces)
print()
for n, e in eces.items():
    rose = [(a - b, c.name) for a, b, c in zip(e, before, cells) if a > b + 0.05]
    one = [x for c, x in zip(cells, e) if c.shots == 1]
    print(f"{n}: rose in {len(rose)} cells (largest {max(rose)[0] if rose else 0:+.1f}); one-shot mean {sum(one) / len(one):.2f}")
