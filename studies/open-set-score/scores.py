"""Candidate outlier scores on the saved val open-set episodes (``episodes.py``): AUROC, AUPR.

Every score is computed from the episode's embeddings alone (no training), except OSTIM (the
anchor, ``benchmarks/open_set.py``'s implementation and settings, on every episode).
A candidate = preprocessing x score:

preprocessing (rows, then unit rows): ``relu`` (rectify; the cached rows are non-negative,
so it changes nothing, and an early run of ``raw`` gave the same numbers); centre ``none``,
``sup`` (mean of the support rows: inductive), ``all`` (mean of support + query rows:
transductive, as OSTIM), ``qry`` (mean of the query rows) or ``half`` (the average of the
support mean and the query mean); ``n`` prefix = rows L2-normalised before centring.

score (higher = outlier), from cosines ``c_k`` of a unit query to the unit class means:
``max`` 1 - max c (the product's with relu/none); ``rel`` mean_k c - max c; ``gap`` second
c - max c; ``msp10/20`` 1 - max softmax(T c); ``xo10`` OSTIM's outlier probability with
untrained prototypes (softmax over T c and -T mean c); ``img`` 1 - max cos to a support image;
``ref`` 1 - max c after refining the means with queries (3 soft steps, each query weighted by
its OSTIM-style K+1 softmax, so outliers put their weight on the extra class).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from anyshot.outliers import average_precision
from open_set import OstimSettings, ostim

EPISODES = Path("/tmp/open-set-score")


def prepare(support, query, relu, centre, prenorm):
    s, q = support.float(), query.float()
    if relu:
        s, q = s.clamp_min(0), q.clamp_min(0)
    if prenorm:
        s, q = F.normalize(s, dim=-1), F.normalize(q, dim=-1)
    if centre == "sup":
        c = s.mean(1, keepdim=True)
    elif centre == "all":
        c = torch.cat([s, q], 1).mean(1, keepdim=True)
    elif centre == "qry":
        c = q.mean(1, keepdim=True)
    elif centre == "half":
        c = (s.mean(1, keepdim=True) + q.mean(1, keepdim=True)) / 2
    else:
        c = torch.zeros_like(s[:, :1])
    return F.normalize(s - c, dim=-1), F.normalize(q - c, dim=-1)


def means_of(s, targets, ways):
    one_hot = F.one_hot(targets.long(), ways).float()
    return F.normalize(one_hot.transpose(1, 2) @ s, dim=-1)


def refined(s, q, targets, ways, temperature=10.0, steps=3, weight=1.0):
    one_hot = F.one_hot(targets.long(), ways).float()
    sums = one_hot.transpose(1, 2) @ s
    m = F.normalize(sums, dim=-1)
    for _ in range(steps):
        c = q @ m.transpose(1, 2)
        p = (temperature * torch.cat([c, -c.mean(-1, keepdim=True)], -1)).softmax(-1)[..., :ways]
        m = F.normalize(sums + weight * p.transpose(1, 2) @ q, dim=-1)
    return m


def score(kind, s, q, targets, ways):
    if kind == "img":
        return 1 - (q @ s.transpose(1, 2)).amax(-1)
    m = refined(s, q, targets, ways) if kind == "ref" else means_of(s, targets, ways)
    c = q @ m.transpose(1, 2)
    top = c.topk(2, dim=-1).values
    if kind in ("max", "ref"):
        return 1 - top[..., 0]
    if kind == "rel":
        return c.mean(-1) - top[..., 0]
    if kind == "gap":
        return top[..., 1] - top[..., 0]
    if kind.startswith("msp"):
        return 1 - (float(kind[3:]) * c).softmax(-1).amax(-1)
    if kind.startswith("xo"):
        t = float(kind[2:])
        return (t * torch.cat([c, -c.mean(-1, keepdim=True)], -1)).softmax(-1)[..., -1]
    raise ValueError(kind)


def auroc_batch(scores, outlier):
    """Per-episode AUROC ``[E]`` of ``[E, Q]`` scores (ties 1/2), vectorised over pairs."""
    diff = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # [E, Q, Q]: i - j
    pair = outlier.unsqueeze(-1) & ~outlier.unsqueeze(-2)  # i outlier, j inlier
    wins = (diff > 0).float() + 0.5 * (diff == 0).float()
    return (wins * pair).sum((1, 2)) / pair.sum((1, 2))


def mean_ci(values):
    v = torch.as_tensor(values, dtype=torch.float64) * 100
    return [float(v.mean()), float(1.96 * v.std() / len(v) ** 0.5)]


def metrics(scores, outlier):
    aupr = [average_precision(s, o) for s, o in zip(scores, outlier, strict=True)]
    return {"auroc": mean_ci(auroc_batch(scores.double(), outlier)), "aupr": mean_ci(aupr)}


CANDIDATES = [
    (f"{'relu' if r else 'raw'}/{'n' if n else ''}{c}/{k}", r, c, n, k)
    for r in (True,)
    for n in (False, True)
    for c in ("none", "sup", "all", "qry", "half")
    for k in ("max", "rel", "gap", "msp10", "msp20", "xo10", "img", "ref")
]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes-dir", type=Path, default=EPISODES)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("scores.json"))
    parser.add_argument("--cells", default="")
    parser.add_argument("--no-ostim", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {}
    files = sorted(args.episodes_dir.glob("*.pt"))
    for path in files:
        cell = path.stem
        if args.cells and cell not in args.cells.split(","):
            continue
        b = torch.load(path)
        outlier = b["query_targets"] < 0
        rows = {}
        for name, relu, centre, prenorm, kind in CANDIDATES:
            s, q = prepare(b["support"], b["query"], relu, centre, prenorm)
            rows[name] = metrics(score(kind, s, q, b["targets"], b["ways"]), outlier)
        if not args.no_ostim:
            shots = int(cell.split("-")[1][:-1])
            _, p_out = ostim(
                b["support"], b["targets"], b["query"], b["ways"], OstimSettings.for_shots(shots)
            )
            rows["OSTIM"] = metrics(p_out, outlier)
        record[cell] = rows
        best = sorted(rows.items(), key=lambda kv: -kv[1]["auroc"][0])[:6]
        print(cell, "current", rows["relu/none/max"]["auroc"], "OSTIM", rows.get("OSTIM"), flush=True)
        for name, row in best:
            print(f"   {name:22s} {row['auroc'][0]:.1f} ± {row['auroc'][1]:.1f}  aupr {row['aupr'][0]:.1f}")
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
