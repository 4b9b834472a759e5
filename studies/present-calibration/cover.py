"""The default's trained heads with a term in how many of the classes their answer predicts.

``cover`` = the effective number of classes an episode's answer predicts (exp of the entropy
of its predicted-class frequencies over the queries) divided by the ways. Rules for the first
head and the gate's inductive head (one rule for both, as shipped, or one each):
``log tau = a + b log shots + c s + d h [+ e log cover]``, fitted as ``fit.py`` does.

    python cover.py /tmp/pc/pc
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from fit import SHIPPED_FIRST, SHIPPED_SI, SHIPPED_TSALLIS, Cell, Rule, default_tau, fit, report

NEW_SI = Rule(("log:shots",), [math.log(0.46), -0.25])


def add_cover(cell: Cell) -> None:
    eps = int(cell.episode.max()) + 1
    pred = cell.logits.argmax(-1)
    counts = torch.zeros(eps, cell.ways, dtype=torch.float64)
    counts.index_put_((cell.episode, pred), torch.ones_like(pred, dtype=torch.float64), accumulate=True)
    p = counts / counts.sum(1, keepdim=True).clamp_min(1)
    effective = torch.exp(-(p * p.clamp_min(1e-12).log()).sum(1))
    cover = (effective / cell.ways)[cell.episode]
    cell.feats["log:cover"] = cover.log()
    cell.feats["log:keff"] = effective[cell.episode].log()


cells = [Cell(p.stem, torch.load(p)) for p in sorted(Path(sys.argv[1]).glob("*.pt"))]
for c in cells:
    add_cover(c)
trained = lambda c: (c.path == 0) | (c.path == 1)  # noqa: E731
variants = {"shipped": (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, NEW_SI)}
for feats in [("log:shots", "s", "h"), ("log:shots", "s", "h", "log:cover"), ("log:shots", "s", "h", "log:keff")]:
    tag = " + ".join(feats)
    both = fit(Rule(feats), cells, trained, False, 10.0)
    ts = fit(Rule(("log:shots",) + tuple(f for f in feats if f.startswith("log:c") or f.startswith("log:k"))), cells, lambda c: c.path == 2, False, 10.0)
    print(f"[{tag}] trained: {both}\n    tsallis: {ts}")
    variants[f"refit [{tag}]"] = (both, both, SHIPPED_TSALLIS, NEW_SI)
    variants[f"refit [{tag}] + tsallis"] = (both, both, ts, NEW_SI)
eces = {n: [c.ece(default_tau(c, *v)) for c in cells] for n, v in variants.items()}
report("the default's ECE (%), val", cells, eces)
print("\n| cell | " + " | ".join(variants) + " |")
for i, c in enumerate(cells):
    if c.kind == "present" or c.ways == 5 and c.kind in ("balanced", "dirichlet"):
        print(f"| {c.name} | " + " | ".join(f"{eces[n][i]:.1f}" for n in variants) + " |")
