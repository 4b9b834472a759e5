"""Replay (VALIDATION classes only) on ``diagnose.py``'s per-episode records: the Tsallis head's
answer also where it predicts at most MARGIN more classes than the first head (episodes the
default answered with its first head, the first head predicting fewer than SHARE of K and more
than 1.5 classes, the gate open on the Tsallis head's count). Prints the cells that move by more
than 0.05 points and the mean change per group of cells.

    python studies/present-five/within.py /tmp/val-mini.json /tmp/val-omni.json 0.5
"""
import json
import sys

import numpy as np

files = [a for a in sys.argv[1:] if a.endswith(".json")]
numbers = [float(a) for a in sys.argv[1:] if not a.endswith(".json")]
margin, share = (numbers + [0.5, 0.75][len(numbers):])[:2]
groups: dict[str, list[float]] = {}
for path in files:
    for cell, r in json.load(open(path)).items():
        default, tsallis = np.array(r["default"]), np.array(r["tsallis"])
        kf, kt = np.array(r["kf"]), np.array(r["kt"])
        first = ~np.array(r["fallback"]) & ~np.array(r["chosen"])
        needed = 6 + r["shots"] / 2
        candidate = (kf < share * r["K"]) & (kf > 1.5)
        take = first & candidate & (kt <= kf + margin) & (r["Q"] >= needed * kt)
        new = np.where(take, tsallis, default)
        diff, ci = (new - default).mean(), 1.96 * (new - default).std() / np.sqrt(len(new))
        groups.setdefault("-".join(cell.split("-")[:2]), []).append(diff)
        if take.any() and abs(diff) > 0.05:
            print(f"{cell:26s} taken {take.sum():3d} cell {default.mean():5.1f} -> "
                  f"{new.mean():5.1f} ({diff:+.2f} ± {ci:.2f})")
for group, diffs in groups.items():
    print(f"{group:18s} {len(diffs):3d} cells, mean {np.mean(diffs):+.2f}, lowest {min(diffs):+.2f}")
