"""Support-init's rule fitted on one domain's val cells and scored on the other's.

    python holdout.py /tmp/pc/pc
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from fit import SHIPPED_SI, Cell, Rule, fit, report

cells = [Cell(p.stem, torch.load(p)) for p in sorted(Path(sys.argv[1]).glob("*.pt"))]
one = lambda c: torch.ones_like(c.correct)  # noqa: E731
rules = {"shipped 0.46": SHIPPED_SI}
for feats in [("log:shots",), ("log:shots", "s")]:
    tag = " + ".join(feats)
    rules[f"{tag} (all)"] = fit(Rule(feats), cells, one, True, 10.0)
    for d in ("mini", "omni"):
        rules[f"{tag} (fit on {d})"] = fit(Rule(feats), [c for c in cells if c.domain == d], one, True, 10.0)
for n, r in rules.items():
    print(f"{n}: {r}")
report("support-init's ECE, rules fitted on one domain", cells,
       {n: [c.ece(r.log_tau(c).exp(), base=True) for c in cells] for n, r in rules.items()})
