"""Replay rules that give gated episodes the Tsallis head's answer, on ``collect.py``'s records
(VALIDATION classes only).

Rule (m, a): a gated episode that the Tsallis head did not already answer, whose support-init
predictions cover the classes and which has more than one query, takes the Tsallis head's
answer where that head's counted queries per predicted class reach ``m`` and it agrees with the
default's answer on at least ``a`` of the queries.

    python studies/gated-tsallis/simulate.py studies/gated-tsallis/collect-val-*.json.gz
"""
from __future__ import annotations

import gzip
import json
import sys

import numpy as np


def ci(x: np.ndarray) -> float:
    return 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0.0


def replay(cells: dict, m: float, a: float, show: bool = False) -> tuple[float, float, int, int]:
    deltas, worst, below, moved = [], 0.0, 0, 0
    for name, r in cells.items():
        d, t, si = (np.array(r[k]) for k in ("default", "tsallis", "si"))
        gated, chosen, cover = (np.array(r[k], dtype=bool) for k in ("gated", "chosen", "cover"))
        counted, kt, agree = (np.array(r[k], dtype=float) for k in ("counted", "kt", "agree"))
        take = gated & ~chosen & cover & (r["Q"] > 1) & (counted >= m * kt) & (agree >= a)
        new = np.where(take, t, d)
        delta = new.mean() - d.mean()
        deltas.append(delta)
        moved += int(delta != 0)
        if new.mean() < si.mean() - ci(si):
            below += 1
        worst = min(worst, delta)
        if show and take.any():
            paired = new - d
            print(f"  {name:28s} took {int(take.sum()):3d}/{len(d)}  default {d.mean():5.1f} -> {new.mean():5.1f} "
                  f"({delta:+.2f} ± {ci(paired):.2f})  si {si.mean():.1f}")
    return float(np.mean(deltas)), worst, below, moved


def main() -> None:
    cells: dict = {}
    for path in sys.argv[1:]:
        with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as handle:
            cells.update(json.load(handle))
    mini = {k: v for k, v in cells.items() if k.startswith("mini")}
    omni = {k: v for k, v in cells.items() if k.startswith("omni")}
    print(f"{len(mini)} mini cells, {len(omni)} omni cells; rows: m, a -> mean delta per cell (mini / omni), "
          "worst delta, cells below SI - CI, cells moved")
    for m in (0.0, 2.0, 3.0, 4.0, 5.0):
        for a in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85):
            rm, ro = replay(mini, m, a), replay(omni, m, a)
            print(f"m={m:3.1f} a={a:4.2f}: {rm[0]:+.3f} / {ro[0]:+.3f}  worst {rm[1]:+.2f} / {ro[1]:+.2f}  "
                  f"below {rm[2]} / {ro[2]}  moved {rm[3]} / {ro[3]}")
    if True:  # the two rules closest to the study's conclusion, per cell
        for m, a in ((4.0, 0.85), (4.0, 0.75)):
            print(f"--- m={m} a={a}")
            replay(mini, m, a, show=True)
            replay(omni, m, a, show=True)


if __name__ == "__main__":
    main()
