"""The product's threshold rule on candidate scores of the nearest-mean kind (val episodes).

For a preprocessing of ``scores.py`` (rows -> centred unit rows, the centre the episode's),
the score is the cosine distance to the nearest class mean of the prepared rows, and the
threshold is ``anyshot.outliers.unknown_reference`` on the prepared support rows (left-out
distances, weighted split-conformal; one shot: a quantile of the between-class distances) at a
5% target. Reports false alarms (inlier queries above it) and detections (outliers above it),
mean and 95% CI over episodes; at one shot also the false alarms for other quantile levels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from anyshot.outliers import unknown_reference
from scores import EPISODES, mean_ci, prepare, score

RATE = 0.05
LEVELS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
PREPS = {  # name: (relu, centre, prenorm)
    "relu/none": (True, "none", False),
    "relu/nall": (True, "all", True),
    "relu/all": (True, "all", False),
    "relu/nsup": (True, "sup", True),
    "relu/nqry": (True, "qry", True),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes-dir", type=Path, default=EPISODES)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("thresholds.json"))
    parser.add_argument("--preps", default=",".join(PREPS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {}
    for path in sorted(args.episodes_dir.glob("*.pt")):
        b = torch.load(path)
        outlier = b["query_targets"] < 0
        record[path.stem] = {}
        for name in args.preps.split(","):
            relu, centre, prenorm = PREPS[name]
            s, q = prepare(b["support"], b["query"], relu, centre, prenorm)
            distance = score("max", s, q, b["targets"], b["ways"])
            alarms, found, by_level = [], [], {lv: [] for lv in LEVELS}
            for e in range(len(s)):
                ref = unknown_reference(s[e], b["targets"][e], b["ways"], relu=False)
                flagged = distance[e] > ref.threshold(RATE)
                alarms.append(float(flagged[~outlier[e]].float().mean()))
                found.append(float(flagged[outlier[e]].float().mean()))
                if not ref.conformal:
                    for lv in LEVELS:
                        t = float(torch.quantile(ref.distances.double(), lv))
                        by_level[lv].append(float((distance[e][~outlier[e]] > t).float().mean()))
            row = {"false_alarms": mean_ci(alarms), "detected": mean_ci(found)}
            if by_level[LEVELS[0]]:
                row["false_alarms_by_level"] = {lv: mean_ci(v)[0] for lv, v in by_level.items()}
            record[path.stem][name] = row
            print(path.stem, name, json.dumps(row), flush=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
