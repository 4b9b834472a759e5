"""Replays of a rule on ``diagnose.py``'s per-episode records (VALIDATION classes only). Prints the
cells that move and each group's mean paired change.

* default (the gate rule): in the episodes the gate answered, take the Tsallis head's answer where
  the gate's answer predicts fewer than SHARE of the K classes, the Tsallis head more than MARGIN
  fewer still, and Q >= (6 + shots / 2) x its count (every query counted: the product counts only
  those the unknown rule keeps, and its agreement and covering conditions are not replayed);
* ``--within``: in the episodes the default answered with its first head, take the Tsallis head's
  answer where it predicts at most MARGIN more classes than the first head (the first head
  predicting fewer than SHARE of K and more than 1.5 classes, the gate open on its count).

    python studies/present-five/simulate.py [--within] OUT-mini.json OUT-omni.json [MARGIN [SHARE]]
"""
import json
import sys

import numpy as np

within = "--within" in sys.argv
files = [a for a in sys.argv[1:] if a.endswith(".json")]
numbers = [float(a) for a in sys.argv[1:] if not a.endswith(".json") and a != "--within"]
margin, share = (numbers + [0.5, 0.75][len(numbers):])[:2]
groups: dict[str, list[float]] = {}
for path in files:
    for cell, r in json.load(open(path)).items():
        default, tsallis = np.array(r["default"]), np.array(r["tsallis"])
        kt, opens = np.array(r["kt"]), r["Q"] >= (6 + r["shots"] / 2) * np.array(r["kt"])
        if within:
            kf = np.array(r["kf"])
            first = ~np.array(r["fallback"]) & ~np.array(r["chosen"])
            take = first & (kf < share * r["K"]) & (kf > 1.5) & (kt <= kf + margin) & opens
        else:
            kd = np.array(r["kd"])
            gated = np.array(r["gated"]) & np.array(r["fallback"])
            take = gated & (kd < share * r["K"]) & (kt < kd - margin) & opens
        new = np.where(take, tsallis, default)
        diff, ci = (new - default).mean(), 1.96 * (new - default).std() / np.sqrt(len(new))
        groups.setdefault("-".join(cell.split("-")[:2]), []).append(diff)
        if take.any() and abs(diff) > 0.005:
            print(f"{cell:26s} taken {take.sum():3d} (default {default[take].mean():5.1f}, Tsallis "
                  f"{tsallis[take].mean():5.1f}) cell {default.mean():5.1f} -> {new.mean():5.1f} "
                  f"({diff:+.2f} ± {ci:.2f})")
for group, diffs in groups.items():
    print(f"{group:18s} {len(diffs):3d} cells, mean {np.mean(diffs):+.2f}, lowest {min(diffs):+.2f}")
