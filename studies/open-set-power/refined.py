"""OSLO's refinement of the centred class means inside the product's score, covered episodes
only (val only).

The product's score is the mean of the centred and the uncentred nearest-mean distance where
the queries cover the classes (``covering_centre``), the uncentred distance elsewhere. Here,
in covered episodes only, the centred class means (and optionally the uncentred ones) take
OSLO's steps: each query weighs ``z y_k`` (inlierness ``z = sigmoid(sum_k y_k c_k / lam)``,
assignment ``y = softmax(z c / lam)``), ``steps`` times. Uncovered episodes are unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from anyshot.outliers import _unit, class_means, covering_centre, mean_distance
from open_set import OsloSettings, oslo
from scores import EPISODES, auroc_batch, mean_ci


def refine(s, targets, q, ways, steps, lam):
    """OSLO steps on unit rows ``s [E, S, D]``, ``q [E, Q, D]`` -> unit means ``[E, K, D]``."""
    one_hot = F.one_hot(targets.long(), ways).float()
    sums, counts = one_hot.transpose(1, 2) @ s, one_hot.sum(1).unsqueeze(-1)
    protos = sums / counts
    y = torch.full((*q.shape[:2], ways), 1.0 / ways)
    for _ in range(steps):
        c = q @ F.normalize(protos, dim=-1).transpose(1, 2)
        z = ((y * c).sum(-1, keepdim=True) / lam).sigmoid()
        y = (z * c / lam).softmax(-1)
        w = z * y
        protos = (sums + w.transpose(1, 2) @ q) / (counts + w.sum(1).unsqueeze(-1))
    return F.normalize(protos, dim=-1)


def score(b, steps, lam, both):
    s, t, q, k = b["support"], b["targets"], b["query"], b["ways"]
    centre, covered = covering_centre(s, t, q, k)
    raw_means = class_means(s, t, k)
    raw = mean_distance(raw_means, q)
    if steps:
        means = refine(_unit(s, True, centre), t, _unit(q, True, centre), k, steps, lam)
    else:
        means = class_means(s, t, k, centre=centre)
    cen = mean_distance(means, q, centre=centre)
    if both and steps:
        raw_r = 1 - (_unit(q, True) @ refine(_unit(s, True), t, _unit(q, True), k, steps, lam)
                     .transpose(1, 2)).amax(-1)
        raw_c = torch.where(covered[:, None], raw_r, raw)
    else:
        raw_c = raw
    return torch.where(covered[:, None], (cen + raw_c) / 2, raw)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes-dir", type=Path, default=EPISODES)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("refined.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = [("product", 0, 0.1, False)] + [
        (f"s{st}-l{lam}{'-both' if both else ''}", st, lam, both)
        for st in (1, 2) for lam in (0.05, 0.1, 0.2) for both in (False, True)
    ]
    record = {}
    for path in sorted(args.episodes_dir.glob("*.pt")):
        b = torch.load(path)
        outlier = b["query_targets"] < 0
        row = {}
        _, z = oslo(b["support"], b["targets"], b["query"], b["ways"], OsloSettings())
        row["OSLO"] = mean_ci(auroc_batch(z.double(), outlier))
        for name, st, lam, both in variants:
            row[name] = mean_ci(auroc_batch(score(b, st, lam, both).double(), outlier))
        record[path.stem] = row
        print(path.stem, flush=True)
    args.out.write_text(json.dumps(record, indent=1))
    cells = list(record)
    print("variant | " + " | ".join(cells) + " | mean | worst vs product")
    for name in record[cells[0]]:
        a = [record[c][name][0] for c in cells]
        d = min(record[c][name][0] - record[c]["product"][0] for c in cells)
        print(f"{name} | " + " | ".join(f"{x:.1f}" for x in a) + f" | {sum(a)/len(a):.2f} | {d:+.1f}")


if __name__ == "__main__":
    main()
