"""Does the Tsallis head's share rule leave out present-class episodes whose first head spreads
wide? (VALIDATION classes; issue 14.) On mini-ImageNet test 20w1s-k5 a quarter of the episodes
keep the first head because it predicts 15 or more of the 20 classes (the share rule:
``own < 0.75 K``). This replays, from choose.py's stored val predictions, the product's rule
(guard only where support-init's predictions cover the classes, as since
studies/guard-scope) beside an extra ratio clause: also the Tsallis answer where it predicts
fewer than ``r`` times the first head's classes, whatever their share.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD:$PWD/../alpha-head python ../alpha-head/ratio.py
"""
from __future__ import annotations

import sys

import torch

from derive import acc, perplexity
from replay import answer, cells

#: --uncovered: the ratio clause only where support-init's predictions do not cover the classes
UNCOVERED = "--uncovered" in sys.argv
RATIOS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8)  # 0: the product's rule alone


def main() -> None:
    rows: dict[float, list] = {r: [] for r in RATIOS}
    for name, cell, t, y in cells():
        ways = cell["ways"]
        own, theirs = perplexity(cell["raw"], ways), perplexity(t, ways)
        covers = perplexity(cell["support-init"], ways) >= 0.75 * ways
        si, ci = acc(cell["support-init"], y)
        for r in RATIOS:
            wide = (theirs < r * own) & (~covers if UNCOVERED else True)
            pick = ((own < 0.75 * ways) & (theirs < own - 0.5)) | wide
            a = acc(answer(cell, torch.where(pick.unsqueeze(1), t, cell["raw"])), y)[0]
            rows[r].append((name, a, si, ci, float(pick.float().mean())))
    base = {n: a for n, a, *_ in rows[0.0]}
    print(f"{len(base)} cells")
    for r, got in rows.items():
        below = [n for n, a, si, ci, _ in got if a < si - ci]
        diff = [a - base[n] for n, a, *_ in got]
        worst = min(got, key=lambda x: x[1] - base[x[0]])
        best = max(got, key=lambda x: x[1] - base[x[0]])
        print(f"ratio {r:g}: below SI-CI {below}, mean {sum(diff) / len(diff):+.3f}, "
              f"worst {worst[1] - base[worst[0]]:+.1f} {worst[0]}, best {best[1] - base[best[0]]:+.1f} {best[0]}")
        for n, a, si, ci, p in got:
            if abs(a - base[n]) >= 0.5:
                print(f"    {n:26s} si {si:5.1f} product {base[n]:5.1f} -> {a:5.1f} (tsallis {p:.2f})")


if __name__ == "__main__":
    main()
