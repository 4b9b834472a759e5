"""Replay of a rule on ``diagnose.py``'s per-episode records (VALIDATION classes only): in the
episodes the gate answered, take the Tsallis head's answer where the gate's answer predicts fewer
than SHARE of the K classes, the Tsallis head more than MARGIN fewer still, and Q >= (6 + shots /
2) x its count (every query counted: the product counts only those the unknown rule keeps, and
the guard may still act). Prints the gated episodes per cell and each cell's paired change.

    python studies/present-five/simulate.py OUT-mini.json OUT-omni.json [MARGIN [SHARE]]
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
        kd, kt = np.array(r["kd"]), np.array(r["kt"])
        gated = np.array(r["gated"]) & np.array(r["fallback"])
        needed = 6 + r["shots"] / 2
        take = gated & (kd < share * r["K"]) & (kt < kd - margin) & (r["Q"] >= needed * kt)
        new = np.where(take, tsallis, default)
        diff, ci = (new - default).mean(), 1.96 * (new - default).std() / np.sqrt(len(new))
        groups.setdefault("-".join(cell.split("-")[:2]), []).append(diff)
        if take.any():
            print(f"{cell:26s} gated {gated.sum():3d} taken {take.sum():3d} (gate's answer "
                  f"{default[take].mean():5.1f}, Tsallis {tsallis[take].mean():5.1f}) cell "
                  f"{default.mean():5.1f} -> {new.mean():5.1f} ({diff:+.2f} ± {ci:.2f})")
for group, diffs in groups.items():
    print(f"{group:18s} {len(diffs):3d} cells, mean {np.mean(diffs):+.2f}, lowest {min(diffs):+.2f}")
