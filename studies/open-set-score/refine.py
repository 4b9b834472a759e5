"""Does OSLO's query refinement help the product's centred nearest-mean score? (val only)

OSLO (``benchmarks/open_set.py``) leads the product's score on mini-ImageNet test by 1.2 / 0.5
AUROC and trails on Omniglot by 5-7. The two differ in the centre (OSLO: raw rows centred on the
episode mean, ``all``; the product: unit rows centred, ``nall``) and in OSLO's refinement of
the class means with the queries, each weighted by its inlierness ``z`` times its assignment
``y``. Candidates on the saved val episodes (``episodes.py``): the product's rows (``cov``:
centred by ``covering_centre``) with OSLO's steps; and both always-centred rows x:
``max`` (no refinement, 1 - max cosine to the class means), ``oslo`` (OSLO's steps, score 1 - z),
``s*/max`` (OSLO's steps, then 1 - max cosine to the refined means), ``soft`` (1 - the
assignment-weighted cosine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from anyshot.outliers import covering_centre, episode_outlier_score
from scores import EPISODES, means_of, metrics, prepare


def refine(s, q, targets, ways, steps, lam_s, lam_z, query_weight):
    """OSLO's block steps on unit rows ``s [E, S, D]``, ``q [E, Q, D]`` -> (means, z)."""
    one_hot = F.one_hot(targets.long(), ways).float()
    sums = one_hot.transpose(1, 2) @ s
    counts = one_hot.sum(1).unsqueeze(-1)
    protos = sums / counts
    y = torch.full((*q.shape[:2], ways), 1.0 / ways)
    z = torch.full((*q.shape[:2], 1), 0.5)
    for _ in range(steps):
        c = q @ F.normalize(protos, dim=-1).transpose(1, 2)
        z = ((y * c).sum(-1, keepdim=True) / lam_s).sigmoid()
        y = (z * c / lam_z).softmax(-1)
        w = query_weight * z * y  # [E, Q, K]
        protos = (sums + w.transpose(1, 2) @ q) / (counts + w.sum(1).unsqueeze(-1))
    return F.normalize(protos, dim=-1), z.squeeze(-1)


def covering_rows(b):
    """The product's rows: unit rows centred by ``covering_centre`` (where the queries cover
    the classes), normalised again."""
    centre, _ = covering_centre(b["support"], b["targets"], b["query"], b["ways"])
    s = F.normalize(F.normalize(b["support"].clamp_min(0), dim=-1) - centre[:, None], dim=-1)
    q = F.normalize(F.normalize(b["query"].clamp_min(0), dim=-1) - centre[:, None], dim=-1)
    return s, q


def candidates(b):
    out = {}
    s, q = covering_rows(b)
    out["cov/max (shipped)"] = episode_outlier_score(b["support"], b["targets"], b["query"], b["ways"])
    out["cov/max (check)"] = 1 - (q @ means_of(s, b["targets"], b["ways"]).transpose(1, 2)).amax(-1)
    for lam in (0.05, 0.1, 0.2):
        for qw in (1.0, 0.5):
            _, z = refine(s, q, b["targets"], b["ways"], 2, lam, lam, qw)
            out[f"cov/s2-l{lam}-w{qw}/oslo"] = 1 - z
    for centre in ("all", "nall"):
        prenorm = centre.startswith("n")
        s, q = prepare(b["support"], b["query"], True, centre.lstrip("n"), prenorm)
        m = means_of(s, b["targets"], b["ways"])
        c0 = q @ m.transpose(1, 2)
        out[f"{centre}/max"] = 1 - c0.amax(-1)
        for lam in (0.02, 0.05, 0.1):
            out[f"{centre}/soft{lam}"] = 1 - ((c0 / lam).softmax(-1) * c0).sum(-1)
        for steps in (1, 2):
            for lam in (0.05, 0.1, 0.2):
                for qw in (1.0, 0.5):
                    m2, z = refine(s, q, b["targets"], b["ways"], steps, lam, lam, qw)
                    tag = f"{centre}/s{steps}-l{lam}-w{qw}"
                    out[f"{tag}/oslo"] = 1 - z
                    c2 = q @ m2.transpose(1, 2)
                    out[f"{tag}/max"] = 1 - c2.amax(-1)
                    out[f"{tag}/soft"] = 1 - ((c2 / lam).softmax(-1) * c2).sum(-1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes-dir", type=Path, default=EPISODES)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("refine.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {}
    for path in sorted(args.episodes_dir.glob("*.pt")):
        b = torch.load(path)
        outlier = b["query_targets"] < 0
        record[path.stem] = {k: metrics(v, outlier) for k, v in candidates(b).items()}
        print(path.stem, flush=True)
    args.out.write_text(json.dumps(record, indent=1))
    names = list(next(iter(record.values())))
    cells = list(record)
    base = "nall/max"
    rows = []
    for n in names:
        a = [record[c][n]["auroc"][0] for c in cells]
        d = [record[c][n]["auroc"][0] - record[c][base]["auroc"][0] for c in cells]
        rows.append((sum(a) / len(a), n, a, min(d)))
    print("candidate | " + " | ".join(cells) + " | mean | worst vs nall/max")
    for mean, n, a, worst in sorted(rows, reverse=True):
        print(f"{n} | " + " | ".join(f"{x:.1f}" for x in a) + f" | {mean:.2f} | {worst:+.1f}")


if __name__ == "__main__":
    main()
