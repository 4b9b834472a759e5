"""The Tsallis head's answer for first-head episodes by the share of the classes the first head
predicts (``kf / K``, kf the effective number of classes of its predictions), on ``collect.py``'s
records (VALIDATION classes only).

By bins of that share, then a band rule: an episode with at least 2 shots that the default
answered with its first head takes the Tsallis head's answer where ``lo <= kf / K < hi``.

    python studies/five-shot-tsallis/share_band.py studies/five-shot-tsallis/collect-val-*.json.gz
"""
from __future__ import annotations

import gzip
import json
import sys

import numpy as np


def ci(x: np.ndarray) -> float:
    return 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0.0


def first_head(r: dict, a: dict) -> np.ndarray:
    return (a["gated"] == 0) & (a["fallback"] == 0) & (a["chosen"] == 0) & (r["shots"] >= 2)


def arrays(r: dict) -> dict:
    return {k: np.array(v, dtype=float) for k, v in r.items() if isinstance(v, list)}


def by_bins(cells: dict, domain: str) -> None:
    rows = []
    for name, r in cells.items():
        if not name.startswith(domain):
            continue
        a = arrays(r)
        mask = first_head(r, a)
        share = a["kf"][mask] / r["K"]
        rows += list(zip(share, (a["tsallis"] - a["default"])[mask]))
    print(f"{domain}: Tsallis minus default (points per episode) by kf / K")
    for lo, hi in [(0, .3), (.3, .5), (.5, .6), (.6, .7), (.7, .8), (.8, .9), (.9, 1.01)]:
        d = np.array([x[1] for x in rows if lo <= x[0] < hi])
        if len(d):
            print(f"  {lo:.1f}-{hi:.1f}: {len(d):4d} episodes, {d.mean():+.2f} ± {ci(d):.2f}")


def band(cells: dict, lo: float, hi: float) -> None:
    per = {}
    for name, r in cells.items():
        a = arrays(r)
        share = a["kf"] / r["K"]
        take = first_head(r, a) & (share >= lo) & (share < hi)
        new = np.where(take, a["tsallis"], a["default"])
        per[name] = (new.mean() - a["default"].mean(), ci(new - a["default"]), int(take.sum()))
    mean = {d: np.mean([v[0] for k, v in per.items() if k.startswith(d)]) for d in ("mini", "omni")}
    worst = min(per.items(), key=lambda kv: kv[1][0])
    moved = sorted(((k, v) for k, v in per.items() if v[2]), key=lambda kv: -kv[1][0])
    print(f"[{lo}, {hi}): per cell mini {mean['mini']:+.3f}, omni {mean['omni']:+.3f}; "
          f"worst {worst[0]} {worst[1][0]:+.2f} ± {worst[1][1]:.2f}")
    print("   " + ", ".join(f"{k} {v[0]:+.2f} ± {v[1]:.2f} ({v[2]} eps)" for k, v in moved[:6]))


cells = {}
for path in sys.argv[1:]:
    cells.update(json.load(gzip.open(path)))
by_bins(cells, "mini")
by_bins(cells, "omni")
for lo, hi in [(0.3, 0.8), (0.4, 0.8), (0.5, 0.8), (0.5, 0.9)]:
    band(cells, lo, hi)
