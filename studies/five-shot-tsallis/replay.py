"""Replay rules that give the Tsallis head's answer to episodes the default answered with its
first head, on ``collect.py``'s records (VALIDATION classes only).

Rule (feature, c, a, k): an episode with at least 2 shots that the default answered with its
first head (not gated, no fallback, Tsallis not chosen) takes the Tsallis head's answer where
``feature`` (``cos``: the mean cosine between the support's class means; ``loo``: the support's
leave-one-out nearest-mean accuracy, negated) is at least ``c``, the two heads agree on at
least ``a`` of the queries, and the first head predicts at least ``k`` classes.

    python studies/five-shot-tsallis/replay.py collect-val-mini.json collect-val-omni.json
"""
from __future__ import annotations

import gzip
import json
import sys

import numpy as np


def ci(x: np.ndarray) -> float:
    return 1.96 * x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else 0.0


def arrays(r: dict) -> dict:
    return {k: np.array(v, dtype=float) for k, v in r.items() if isinstance(v, list)}


def taken(r: dict, a: dict, feature: str, c: float, agree: float, k: float) -> np.ndarray:
    first = (a["gated"] == 0) & (a["fallback"] == 0) & (a["chosen"] == 0)
    value = a["cos"] if feature == "cos" else -a["loo"]
    return first & (r["shots"] >= 2) & (value >= c) & (a["agree_ft"] >= agree) & (a["kf"] >= k)


def replay(cells: dict, feature: str, c: float, agree: float, k: float, show: bool = False):
    deltas, worst, below = [], (0.0, ""), 0
    for name, r in cells.items():
        a = arrays(r)
        take = taken(r, a, feature, c, agree, k)
        new = np.where(take, a["tsallis"], a["default"])
        delta = new.mean() - a["default"].mean()
        deltas.append(delta)
        if new.mean() < a["si"].mean() - ci(a["si"]):
            below += 1
        if delta < worst[0]:
            worst = (delta, name)
        if show and take.any():
            print(f"  {name:28s} took {int(take.sum()):3d}/{len(new)} default {a['default'].mean():5.1f} -> "
                  f"{new.mean():5.1f} ({delta:+.2f} ± {ci(new - a['default']):.2f})")
    return float(np.mean(deltas)), worst, below


BINS = {
    "loo": [(0, .4), (.4, .5), (.5, .6), (.6, .7), (.7, .8), (.8, .9), (.9, 1.01)],
    "cos": [(0, .55), (.55, .6), (.6, .65), (.65, .7), (.7, .75), (.75, 1)],
    "agree_ft": [(0, .7), (.7, .8), (.8, .9), (.9, .95), (.95, 1.01)],
}


def bins(cells: dict) -> None:
    """Tsallis head minus the default on the episodes the first head answered (at least 2
    shots, the first head predicting at least 2.5 classes), by bins of each feature."""
    for feature, edges in BINS.items():
        values, gains = [], []
        for r in cells.values():
            if r["shots"] < 2:
                continue
            a = arrays(r)
            m = taken(r, a, "cos", -9.0, 0.0, 2.5)
            values += list(a[feature][m])
            gains += list((a["tsallis"] - a["default"])[m])
        v, g = np.array(values), np.array(gains)
        print(f"  {feature:9s}", "  ".join(
            f"[{lo:g},{hi:g}) n={int(((v >= lo) & (v < hi)).sum())} {g[(v >= lo) & (v < hi)].mean():+.2f}"
            for lo, hi in edges if ((v >= lo) & (v < hi)).any()))


def main() -> None:
    cells: dict = {}
    for path in sys.argv[1:]:
        with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as handle:
            cells.update(json.load(handle))
    domains = {d: {k: v for k, v in cells.items() if k.startswith(d)} for d in ("mini", "omni")}
    print({d: len(v) for d, v in domains.items()}, "cells")
    for name, domain in domains.items():
        print(name, "- Tsallis head minus default, first-head episodes, by feature bin:")
        bins(domain)
    grid = [("cos", c) for c in (0.0, 0.5, 0.55, 0.6, 0.65, 0.7)] + [("loo", -c) for c in (0.95, 0.9, 0.85, 0.8, 0.7, 0.6)]
    for feature, c in grid:
        for agree in (0.0, 0.5, 0.75, 0.85):
            for k in (0.0, 1.5, 2.5):
                out = [replay(v, feature, c, agree, k) for v in domains.values()]
                print(f"{feature} c={c:+.2f} a={agree:.2f} k={k:.1f}: "
                      + " | ".join(f"{m:+.3f} worst {w[0]:+.2f} {w[1]} below {b}" for m, w, b in out))


if __name__ == "__main__":
    main()
