"""Blank frames among the queries: flagged or not? (issue 17, VALIDATION classes only)

A flat or near-flat frame (black, white, grey, one colour, a gradient, sensor noise) is the most
obvious image of none of the classes. With rows centred on the episode's mean unit row (the
product's score where the queries cover the classes) such frames were found to score below the
threshold on mini-ImageNet. This script scores them, on the open-set val episodes of
``benchmarks/open_set.py`` (5 ways, 1 or 5 shots, 15 inlier + 15 outlier queries) and a
practitioner-like cell (10 ways, 5 shots, 10 unlabelled images per class, no outliers), under
several rules, each at a 5% target false-alarm rate:

* ``centred``  -- the product today (centred where the queries cover the classes);
* ``raw``      -- never centred;
* ``sum-w``    -- the score ``d_centred + w d_raw``, its threshold from the left-out labelled
  rows' summed distances (one shot: a quantile ``q`` of the summed between-class distances);
* ``or-b``     -- flagged when the centred distance is above its threshold at ``(1 - b) rate``
  or the raw one above its threshold at ``b rate``; its score (for the AUROC) is the larger of
  the two distances over their thresholds.

Blank frames are scored against each episode's centre (computed from the labelled and query
rows, the frames not included: one frame moves it by ``1 / (S + Q + 1)``).

Prints, per domain and cell: false alarms on clean inlier queries, natural outliers detected,
AUROC of the natural outliers, blank frames detected (all kinds, and the worst kind).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from anyshot.embedding import as_images, embed_images
from anyshot.feature_cache import FeatureCache
from anyshot.outliers import (
    UnknownReference,
    auroc,
    covering_centre,
    nearest_mean_distance,
    outlier_distance,
    unknown_reference,
)
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT, FEATURE_CACHE
from blank_frames import blank_frames, centred_alone  # benchmarks/blank_frames.py
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from open_set import sampled
from realistic_grid import DOMAINS

RATE = 0.05
WEIGHTS = (0.5, 1.0, 2.0)
#: inlier and outlier queries of the open-set cells (those of studies/open-set-score)
FORMS = ((15, 15), (5, 25), (25, 5))


def reference(
    support: torch.Tensor, targets: torch.Tensor, ways: int, centre: torch.Tensor | None
) -> UnknownReference:
    """One space's reference (one episode): the uncentred one is the product's
    (:func:`anyshot.outliers.unknown_reference` without a centre), the centred one the
    product's before this study (``benchmarks/blank_frames.py``'s ``centred_alone``)."""
    if centre is None:
        return unknown_reference(support, targets, ways)
    return centred_alone(support, targets, ways, centre)


def summed(
    support: torch.Tensor,
    targets: torch.Tensor,
    ways: int,
    centre: torch.Tensor,
    q: float,
    weight: float = 1.0,
) -> UnknownReference:
    """The ``sum`` rule's reference: left-out distances of both spaces, summed row by row
    (the raw ones times ``weight``)."""
    raw, centred = reference(support, targets, ways, None), reference(
        support, targets, ways, centre
    )
    return UnknownReference(
        weight * raw.distances + centred.distances, raw.weights, raw.conformal, q
    )


def episode_scores(
    batch: EpisodeBatch, blanks: torch.Tensor, sum_q: float
) -> dict[str, dict[str, list[float]]]:
    """Per rule: flags (%) of inliers, outliers and each blank frame, and the AUROC."""
    s, t, q, ways = batch.support, batch.targets, batch.query, batch.ways
    centre, covered = covering_centre(s, t, q, ways)
    frames = blanks.unsqueeze(0).expand(len(batch), -1, -1)
    rows = torch.cat([q, frames], 1)  # [E, Q + F, D]
    d_raw = nearest_mean_distance(s, t, rows, ways)
    d_cen = nearest_mean_distance(s, t, rows, ways, centre=centre)
    outlier = batch.query_targets < 0  # [E, Q]
    check_product(batch, centre, covered, d_raw[:, : q.shape[1]], d_cen[:, : q.shape[1]], sum_q)
    out: dict[str, dict[str, list[float]]] = {}
    for e in range(len(batch)):
        c = centre[e] if bool(covered[e]) else None
        ref_raw = reference(s[e], t[e], ways, None)
        ref_cen = reference(s[e], t[e], ways, c) if c is not None else ref_raw
        rules: dict[str, tuple[torch.Tensor, Callable[[], torch.Tensor]]] = {}
        rules["raw"] = (d_raw[e], lambda: d_raw[e] > ref_raw.threshold(RATE))
        rules["centred"] = (d_cen[e], lambda: d_cen[e] > ref_cen.threshold(RATE))
        if c is None:
            for name in [f"sum-{w}" for w in WEIGHTS] + ["or-0.2", "or-0.5"]:
                rules[name] = rules["raw"]
        else:
            for w in WEIGHTS:
                ref_sum = summed(s[e], t[e], ways, c, sum_q, w)
                both = w * d_raw[e] + d_cen[e]
                rules[f"sum-{w}"] = (both, lambda both=both, r=ref_sum: both > r.threshold(RATE))
            for share in (0.2, 0.5):
                t_cen = ref_cen.threshold(RATE * (1 - share))
                t_raw = ref_raw.threshold(RATE * share)
                ratio = torch.maximum(d_cen[e] / t_cen, d_raw[e] / t_raw)
                rules[f"or-{share}"] = (ratio, lambda ratio=ratio: ratio > 1)
        nq = q.shape[1]
        for name, (score, flag_of) in rules.items():
            flags = flag_of().float()
            rec = out.setdefault(name, {})
            inl, outl = ~outlier[e], outlier[e]
            rec.setdefault("false_alarms", []).append(100 * float(flags[:nq][inl].mean()))
            if bool(outl.any()):
                rec.setdefault("detected", []).append(100 * float(flags[:nq][outl].mean()))
                rec.setdefault("auroc", []).append(100 * auroc(score[:nq], outl))
            rec.setdefault("blanks", []).append(flags[nq:].numpy().tolist())
            rec.setdefault("covered", []).append(float(bool(covered[e])))
    return out


def check_product(
    batch: EpisodeBatch,
    centre: torch.Tensor,
    covered: torch.Tensor,
    d_raw: torch.Tensor,
    d_cen: torch.Tensor,
    sum_q: float,
) -> None:
    """The product's score and threshold (``anyshot.outliers`` after this study) are the
    ``sum-1.0`` rule's halved, where its one-shot quantile is ``sum_q``."""
    s, t, ways = batch.support, batch.targets, batch.ways
    product = outlier_distance(s, t, batch.query, ways, centre=centre)
    expected = torch.where(covered.unsqueeze(1), (d_raw + d_cen) / 2, d_raw)
    assert torch.allclose(product, expected, atol=1e-5)
    for e in range(min(len(batch), 20)):
        c = centre[e] if bool(covered[e]) else None
        mine = reference(s[e], t[e], ways, None)
        if c is not None:
            mine = summed(s[e], t[e], ways, c, sum_q)
        theirs = unknown_reference(s[e], t[e], ways, centre=c)
        if c is not None and theirs.one_shot_quantile == sum_q:
            assert abs(2 * theirs.threshold(RATE) - mine.threshold(RATE)) < 1e-5


def summary(rec: dict[str, list[float]], names: list[str]) -> dict[str, object]:
    """Means (and the 95% CI half-width) of an ``episode_scores`` record."""

    def mean_ci(values: list[float]) -> str:
        a = np.asarray(values, dtype=float)
        return f"{a.mean():.1f} ± {1.96 * a.std(ddof=1) / np.sqrt(len(a)):.1f}"

    blanks = 100 * np.asarray(rec["blanks"], dtype=float)  # [E, F]
    by_kind = dict(zip(names, blanks.mean(0).round(1).tolist(), strict=True))
    row: dict[str, object] = {
        "false_alarms": mean_ci(rec["false_alarms"]),
        "blanks_flagged": round(float(blanks.mean()), 1),
        "worst_blank": min(by_kind.items(), key=lambda kv: kv[1]),
        "covered": round(100 * float(np.mean(rec["covered"])), 1),
    }
    if "detected" in rec:
        row["detected"] = mean_ci(rec["detected"])
        row["auroc"] = mean_ci(rec["auroc"])
    row["by_kind"] = by_kind
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--sum-q", type=float, default=0.25, help="sum rule's one-shot quantile")
    parser.add_argument("--domains", default="mini,omni")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, object] = {}
    for name in args.domains.split(","):
        domain = DOMAINS[name]
        data = dataset_split(DATA_ROOT, domain.dataset, "val")
        network = domain.network()
        frames = blank_frames(domain.image_size)
        images = as_images(list(frames.values()), network.preprocessing)
        blanks, _ = embed_images(network, images, batch_size=16)
        cells = {
            f"{name}-5w{k}s-{i}-{o}": sampled(data, k, i, o, args.episodes, 0)
            for k in (1, 5)
            for i, o in FORMS
        }
        practitioner = build_sampler(
            "fixed", data.labels, ways=10, shots=5, queries=10, seed=1
        )
        cells[f"{name}-10w5s-10"] = list(practitioner.take(args.episodes))
        cache = FeatureCache(FEATURE_CACHE, channels_last=domain.channels_last)
        every = [spec for specs in cells.values() for spec in specs]
        features = embed_episodes(cache, network, data, every).features
        # the cache's rows and a fresh pass over the same decoded images must agree
        check = [data.image(int(i)) for i in features.items[:4]]
        fresh, _ = embed_images(network, as_images(check, network.preprocessing), batch_size=4)
        cos = torch.nn.functional.cosine_similarity(fresh, features.features[:4].float()).min()
        print(f"{name}: cache vs fresh pass, min cosine {float(cos):.5f}", flush=True)
        for cell, specs in cells.items():
            batch = EpisodeBatch.of(features, specs)
            scores = episode_scores(batch, blanks.float(), args.sum_q)
            results[cell] = {rule: summary(rec, list(frames)) for rule, rec in scores.items()}
            for rule, row in results[cell].items():  # type: ignore[union-attr]
                shown = {k: v for k, v in row.items() if k != "by_kind"}
                print(cell, rule, json.dumps(shown), flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
