"""Does a power transform of the rows help the product's outlier score? (val only)

The cached EfficientNet-Lite0 rows are non-negative; ``x ** beta`` (beta < 1; Hu et al.'s
PT-MAP uses 0.5) makes their distribution less skewed before the unit normalisation. Each
candidate feeds ``rows ** beta`` to the product's own functions (``episode_outlier_score``,
``unknown_threshold``), on the saved val episodes of ``studies/open-set-score/episodes.py``;
OSLO (``benchmarks/open_set.py``, its settings) on the same episodes as the anchor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from anyshot.outliers import covering_centre, episode_outlier_score, unknown_threshold
from open_set import OsloSettings, oslo
from scores import EPISODES, auroc_batch, mean_ci

BETAS = (1.0, 0.75, 0.5, 0.35, 0.25)


def false_alarms(b, beta, rate=0.05):
    """Share of inlier / outlier queries above the product's threshold (%, per episode)."""
    s, q = b["support"] ** beta, b["query"] ** beta
    centre, covered = covering_centre(s, b["targets"], q, b["ways"])
    scores = episode_outlier_score(s, b["targets"], q, b["ways"])
    inl, out = [], []
    for e in range(len(s)):
        t = unknown_threshold(
            s[e], b["targets"][e], b["ways"], rate, centre=centre[e] if bool(covered[e]) else None
        )
        flag = scores[e] > t
        o = b["query_targets"][e] < 0
        inl.append(float(flag[~o].float().mean()))
        out.append(float(flag[o].float().mean()))
    return mean_ci(inl), mean_ci(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes-dir", type=Path, default=EPISODES)
    parser.add_argument("--betas", type=float, nargs="+", default=BETAS)
    parser.add_argument("--thresholds", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("power.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {}
    for path in sorted(args.episodes_dir.glob("*.pt")):
        b = torch.load(path)
        outlier = b["query_targets"] < 0
        row = {}
        _, z = oslo(b["support"], b["targets"], b["query"], b["ways"], OsloSettings())
        row["OSLO"] = {"auroc": mean_ci(auroc_batch(z.double(), outlier))}
        for beta in args.betas:
            s, q = b["support"] ** beta, b["query"] ** beta
            score = episode_outlier_score(s, b["targets"], q, b["ways"])
            row[f"b{beta}"] = {"auroc": mean_ci(auroc_batch(score.double(), outlier))}
            if args.thresholds:
                fa, det = false_alarms(b, beta)
                row[f"b{beta}"].update(false_alarms=fa, detected=det)
        record[path.stem] = row
        print(path.stem, " ".join(f"{k} {v['auroc'][0]:.1f}" for k, v in row.items()), flush=True)
    args.out.write_text(json.dumps(record, indent=1))
    names = list(next(iter(record.values())))
    print("mean over cells:", " ".join(
        f"{n} {sum(r[n]['auroc'][0] for r in record.values()) / len(record):.2f}" for n in names))


if __name__ == "__main__":
    main()
