"""Per cell, the default's answer paths with the shipped calibration: each path's share of the
episodes, mean confidence and accuracy (where the default is over- or under-confident).

    python paths.py /tmp/pc/pc > paths.txt
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from fit import PATHS, SHIPPED_FIRST, SHIPPED_TSALLIS, Cell, Rule, default_tau

NEW_SI = Rule(("log:shots",), [math.log(0.46), -0.25])
RULES = (SHIPPED_FIRST, SHIPPED_FIRST, SHIPPED_TSALLIS, NEW_SI)
for p in sorted(Path(sys.argv[1]).glob("*.pt")):
    c = Cell(p.stem, torch.load(p))
    tau = default_tau(c, *RULES)
    conf = (c.logits / tau[:, None]).softmax(-1).amax(-1)
    parts = []
    for k, n in enumerate(PATHS):
        m = c.path == k
        if m.any():
            parts.append(f"{n} {float(m.double().mean()):.2f}: conf {100 * float(conf[m].mean()):.1f} "
                         f"acc {100 * float(c.correct[m].double().mean()):.1f}")
    print(f"{c.name:24s} ece {c.ece(tau):5.1f} | " + " | ".join(parts))
