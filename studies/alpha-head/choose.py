"""The default with a second, Tsallis head: per episode, the Tsallis head's answer replaces the
default's trained head when it predicts the queries hold more than ``m`` fewer classes
(``predicted_classes``); the gate and guard then act as in the product (derive.py's rule).
VALIDATION classes only; reads the stored predictions of run.py and present-gate/run_heads.py.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD python ../alpha-head/choose.py
"""
from __future__ import annotations

import glob
import os
import re
import sys

import torch

from derive import acc, perplexity, rule

TSALLIS = "raw:center=0,entropy_weight=1,balance_weight=1,likelihood_weight=0,adaptive_balance=0@"
#: (margin, share): the Tsallis answer where it predicts more than ``margin`` fewer classes and
#: the default's own count is below ``share`` of the support classes; 1e9: the default as it is
MARGINS = [(m, f) for m in (0.0, 0.5, 1.0) for f in (0.5, 0.6, 0.75, 1.01)] + [(1e9, 1.01)]


def order_of(shots: int, low: float, high: float) -> float:
    """alpha-TIM's tuned orders: ``low`` at one shot, ``high`` at five or more (5 between)."""
    return low if shots <= 1 else high if shots >= 5 else 5.0


def main() -> None:
    low, high = 2.0, 7.0
    results = {m: [] for m in MARGINS}
    for path in sorted(glob.glob("out/pg/*.pt")):
        store = torch.load(path)
        name = os.path.basename(path)[:-3].replace("_", " ")
        shots = int(re.search(r"w(\d+)s", name).group(1))
        tsallis = f"{TSALLIS}{order_of(shots, low, high):g}"
        if not all(h in store for h in ("support-init", "raw", "inductive", tsallis)):
            continue
        y = store["targets"]
        ways = store["raw"].shape[-1]
        preds = {h: store[h].float().argmax(-1) for h in ("support-init", "raw", "inductive")}
        t = store[tsallis].float().argmax(-1)
        si, ci = acc(preds["support-init"], y)
        for m, share in MARGINS:
            k_raw = perplexity(preds["raw"], ways)
            pick = ((perplexity(t, ways) < k_raw - m) & (k_raw < share * ways)).unsqueeze(1)
            cell = dict(name=name, shots=shots, y=y, ways=ways, **preds)
            cell["raw"] = torch.where(pick, t, preds["raw"])
            a = acc(rule(cell, "raw", 6, 0.5, "si>si"), y)[0]
            results[m, share].append((name, a, si, ci))
    default = {n: a for n, a, _, _ in results[1e9, 1.01]}
    print(f"orders {low:g}/{high:g}; {len(default)} cells")
    for m, rows in results.items():
        below = [n for n, a, si, ci in rows if a < si - ci]
        gain = [a - default[n] for n, a, _, _ in rows]
        pres = [a - default[n] for n, a, _, _ in rows if "pres" in n]
        bd = [a - default[n] for n, a, _, _ in rows if "bal" in n or "dir" in n]
        worst = min(rows, key=lambda r: r[1] - default[r[0]])
        print(f"margin {m[0]:g} share {m[1]:g}: below SI-CI {len(below)} {below[:3]}, vs default: mean {sum(gain) / len(gain):+.2f}, "
              f"present {sum(pres) / len(pres):+.2f} ({len(pres)}), bal/dir {sum(bd) / len(bd):+.2f} ({len(bd)}), "
              f"worst {worst[1] - default[worst[0]]:+.1f} {worst[0]}")
    if "--detail" in sys.argv:
        at = sys.argv.index("--detail")
        m = (float(sys.argv[at + 1]), float(sys.argv[at + 2]))
        for n, a, si, ci in results[m]:
            print(f"{n:26s} si {si:5.1f}±{ci:3.1f} default {default[n]:5.1f} with tsallis {a:5.1f} ({a - default[n]:+.1f})")


if __name__ == "__main__":
    main()
