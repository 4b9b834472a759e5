"""The shipped trained-head rule with one more factor, ``cover ** e`` (``cover.py``'s effective
share of the classes the answer predicts), every other number kept; ``e`` on a grid.

    python cover_term.py /tmp/pc/pc
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from cover import NEW_SI, add_cover
from fit import SHIPPED_FIRST, SHIPPED_TSALLIS, Cell, Rule, default_tau, report

cells = [Cell(p.stem, torch.load(p)) for p in sorted(Path(sys.argv[1]).glob("*.pt"))]
for c in cells:
    add_cover(c)
base = SHIPPED_FIRST.params.tolist()
variants = {"shipped": (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, NEW_SI)}
for e in (-0.1, -0.2, -0.3, -0.4):
    r = Rule(("log:shots", "s", "h", "log:cover"), base + [e])
    variants[f"cover^{e}"] = (r, r, SHIPPED_TSALLIS, NEW_SI)
    variants[f"cover^{e} first only"] = (r, SHIPPED_FIRST, SHIPPED_TSALLIS, NEW_SI)
eces = {n: [c.ece(default_tau(c, *v)) for c in cells] for n, v in variants.items()}
report("the default's ECE (%), val", cells, eces)
for n, e in eces.items():
    rose = [(a - b, c.name) for a, b, c in zip(e, eces["shipped"], cells) if a > b + 0.05]
    print(f"{n}: rose in {len(rose)} cells (largest {max(rose)[0] if rose else 0:+.1f} {max(rose)[1] if rose else ''})")
