"""The gate's per-shot slope (``queries_per_shot``, 0.5 shipped) replayed on the val cells of
``studies/present-gate`` with today's Tsallis rule and guard (as ``ratio.py``): at 20 shots the
gate asks 16 queries per predicted class, and present-class cells with 15 per class get the
inductive head. VALIDATION classes.

    cd studies/present-gate && PYTHONPATH=$PWD/../../src:$PWD:$PWD/../alpha-head python ../alpha-head/gate_slope.py
"""
from __future__ import annotations

import torch

from derive import acc, perplexity
from replay import answer, cells

SLOPES = (0.5, 0.45, 0.4, 0.3)


def main() -> None:
    rows: dict[float, list] = {s: [] for s in SLOPES}
    for name, cell, t, y in cells():
        ways = cell["ways"]
        own, theirs = perplexity(cell["raw"], ways), perplexity(t, ways)
        chosen = torch.where(((own < 0.75 * ways) & (theirs < own - 0.5)).unsqueeze(1), t, cell["raw"])
        si, ci = acc(cell["support-init"], y)
        for s in SLOPES:
            per_episode = (answer(cell, chosen, s) == y).float().mean(1)
            rows[s].append((name, 100 * float(per_episode.mean()), si, ci, per_episode))
    base = {n: (a, e) for n, a, _, _, e in rows[0.5]}
    for s, got in rows.items():
        below = [n for n, a, si, ci, _ in got if a < si - ci]
        diff = [a - base[n][0] for n, a, *_ in got]
        print(f"slope {s:g}: {len(got)} cells, below SI-CI {below}, mean {sum(diff) / len(diff):+.3f}")
        for n, a, si, ci, e in got:
            d = 100 * (e - base[n][1])
            if abs(float(d.mean())) >= 0.3:
                half = 1.96 * float(d.std()) / len(d) ** 0.5
                print(f"    {n:26s} si {si:5.1f} shipped {base[n][0]:5.1f} -> {a:5.1f} ({float(d.mean()):+.2f} ± {half:.2f})")


if __name__ == "__main__":
    main()
