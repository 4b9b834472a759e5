"""The product's answer replayed from ``studies/present-gate``'s stored val predictions, shared by
``ratio.py`` and ``gate_slope.py`` (run from ``studies/present-gate`` with it on PYTHONPATH)."""
from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator

import torch

from derive import perplexity

TSALLIS = "raw:center=0,entropy_weight=1,balance_weight=1,likelihood_weight=0,adaptive_balance=0@"


def cells() -> Iterator[tuple[str, dict, torch.Tensor, torch.Tensor]]:
    """``(name, cell, Tsallis head's predictions [E, Q], targets [E, Q])`` per stored cell with
    every head; ``cell`` holds the support-init / raw / inductive predictions, ways, shots."""
    for path in sorted(glob.glob("out/pg/*.pt")):
        store = torch.load(path)
        name = os.path.basename(path)[:-3].replace("_", " ")
        shots = int(re.search(r"w(\d+)s", name).group(1))
        tsallis = f"{TSALLIS}{2 if shots <= 1 else 7 if shots >= 5 else 5:g}"
        if not all(h in store for h in ("support-init", "raw", "inductive", tsallis)):
            continue
        cell = {h: store[h].float().argmax(-1) for h in ("support-init", "raw", "inductive")}
        cell.update(ways=store["raw"].shape[-1], shots=shots)
        yield name, cell, store[tsallis].float().argmax(-1), store["targets"]


def answer(cell: dict, raw: torch.Tensor, slope: float = 0.5) -> torch.Tensor:
    """[E, Q]: the gate (``6 + slope * shots`` queries per predicted class, inductive head) and
    the guard (agreement with support-init < 0.5 where support-init covers 3/4 of the classes)."""
    si, ways, shots = cell["support-init"], cell["ways"], cell["shots"]
    gate = (si.shape[1] < (6 + slope * shots) * perplexity(raw, ways)) | (si.shape[1] <= 1)
    guard = (perplexity(si, ways) >= 0.75 * ways) & ((raw == si).float().mean(1) < 0.5)
    out = torch.where(guard.unsqueeze(1), si, raw)
    return torch.where(gate.unsqueeze(1), cell["inductive"], out)
