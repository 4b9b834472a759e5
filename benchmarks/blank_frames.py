"""Blank frames among the queries (issue 17): does the unknown rule flag them?

A flat or near-flat frame (black, white, grey, one colour, a gradient, sensor noise) is the most
obvious image of none of the classes. Each episode's frames are scored against its labelled
images, with the centre (where the product centres) of its labelled and query rows, the frames
not included; every score's threshold is set from the labelled images alone for a 5%
false-alarm rate (:func:`anyshot.outliers.unknown_reference`).

Scores, on the same episodes and frozen features (``realistic_grid.py``'s domains):

* ``product``: :func:`anyshot.outliers.outlier_distance`, what ``classify`` / ``predict`` give:
  the cosine distance to the nearest class mean, averaged with the same distance of rows centred
  on the episode's mean unit row where the queries cover the classes;
* ``centred``: the centred distance alone where the queries cover the classes (the product's
  score before ``studies/blank-frames/``; its one-shot quantile was 0.22);
* ``uncentred``: never centred.

Cells: 5 ways, 1 or 5 shots, 15 inlier + 15 outlier queries (the outliers images of 5 other
classes of the split, ``open_set.py``'s episodes), and 10 ways, 5 shots, 10 queries per class
without outliers (a practitioner's ``fit --unlabeled`` folder). Per cell and score: false alarms
(inlier queries flagged), outliers detected, AUROC of the outliers (mean and 95% CI over
episodes), and the share of blank frames flagged, in all and by kind.

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/blank_frames.py \\
        --split test --output benchmarks/results/blank-frames-test.json   # ~3 min, cached
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from anyshot.backbones import Backbone
from anyshot.embedding import as_images, embed_images
from anyshot.feature_cache import FeatureCache
from anyshot.outliers import (
    UnknownReference,
    auroc,
    covering_centre,
    leave_one_out_distances,
    nearest_mean_distance,
    other_class_distances,
    outlier_distance,
    unknown_reference,
)
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT, FEATURE_CACHE, add_shared_arguments, script_parser
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from harness.output import environment, write_json
from open_set import sampled
from realistic_grid import DOMAINS

RATE = 0.05
#: The one-shot quantile of the centred distance alone (the product's before the blank frames).
CENTRED_ALONE_QUANTILE = 0.22
SCORES = ("product", "centred", "uncentred")


def blank_frames(side: int) -> dict[str, Image.Image]:
    """Twelve flat and near-flat RGB frames of ``side`` pixels (seeded noise)."""
    rng = np.random.default_rng(0)
    flat = {
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "grey": (128, 128, 128),
        "dark-grey": (64, 64, 64),
        "light-grey": (192, 192, 192),
        "red": (200, 30, 30),
        "green": (30, 160, 60),
        "blue": (30, 60, 200),
        "beige": (220, 200, 160),
    }
    frames = {name: Image.new("RGB", (side, side), colour) for name, colour in flat.items()}
    ramp = np.tile(np.linspace(0, 255, side, dtype=np.float32), (side, 1))
    frames["gradient"] = Image.fromarray(np.stack([ramp] * 3, -1).astype(np.uint8))
    noise = np.clip(128 + 25 * rng.standard_normal((side, side, 3)), 0, 255)
    frames["grey-noise"] = Image.fromarray(noise.astype(np.uint8))
    dark = np.clip(20 + 8 * rng.standard_normal((side, side, 3)), 0, 255)
    frames["dark-noise"] = Image.fromarray(dark.astype(np.uint8))
    return frames


def centred_alone(
    support: torch.Tensor, targets: torch.Tensor, ways: int, centre: torch.Tensor
) -> UnknownReference:
    """The reference of the centred distance alone (``[S, D]``, ``[S]``, ``[D]``)."""
    distances, weights = leave_one_out_distances(support, targets, ways, centre=centre)
    if len(distances):
        return UnknownReference(distances, weights, True, CENTRED_ALONE_QUANTILE)
    between = other_class_distances(support, targets, centre=centre)
    return UnknownReference(between, torch.ones_like(between), False, CENTRED_ALONE_QUANTILE)


def scores_and_references(
    batch: EpisodeBatch, rows: torch.Tensor
) -> tuple[dict[str, torch.Tensor], Callable[[str, int], UnknownReference], torch.Tensor]:
    """``[E, R]`` scores of ``rows`` ``[E, R, D]`` by score name, the reference of a score in an
    episode, and the ``[E]`` bool episodes centred."""
    s, t, ways = batch.support, batch.targets, batch.ways
    centre, covered = covering_centre(s, t, batch.query, ways)
    scores = {
        "product": outlier_distance(s, t, rows, ways, centre=centre),
        "centred": nearest_mean_distance(s, t, rows, ways, centre=centre),
        "uncentred": nearest_mean_distance(s, t, rows, ways),
    }

    def reference(score: str, e: int) -> UnknownReference:
        centred = bool(covered[e]) and score != "uncentred"
        c = centre[e] if centred else None
        if score == "centred" and c is not None:
            return centred_alone(s[e], t[e], ways, c)
        return unknown_reference(s[e], t[e], ways, centre=c)

    return scores, reference, covered


def cell_rows(batch: EpisodeBatch, blanks: torch.Tensor, kinds: list[str]) -> dict[str, Any]:
    """Per score: false alarms, detected, AUROC (open-set cells), blank frames flagged (%)."""
    frames = blanks.unsqueeze(0).expand(len(batch), -1, -1)
    queries = batch.query.shape[1]
    scores, reference, covered = scores_and_references(
        batch, torch.cat([batch.query.float(), frames], 1)
    )
    outlier = batch.query_targets < 0  # [E, Q]
    rows: dict[str, Any] = {}
    for name in SCORES:
        alarms, detected, areas, flagged = [], [], [], []
        for e in range(len(batch)):
            flags = scores[name][e] > reference(name, e).threshold(RATE)
            inlier, out = flags[:queries][~outlier[e]], flags[:queries][outlier[e]]
            alarms.append(100 * float(inlier.float().mean()))
            if len(out):
                detected.append(100 * float(out.float().mean()))
                areas.append(100 * auroc(scores[name][e][:queries], outlier[e]))
            flagged.append(flags[queries:].float().numpy())
        by_kind = 100 * np.mean(flagged, axis=0)
        rows[name] = {
            "false_alarms": mean_ci(alarms),
            "blank_frames_flagged": float(by_kind.mean()),
            "by_kind": dict(zip(kinds, by_kind.round(1).tolist(), strict=True)),
            **({"detected": mean_ci(detected), "auroc": mean_ci(areas)} if detected else {}),
        }
    rows["centred_share"] = float(covered.float().mean())
    return rows


def mean_ci(values: list[float]) -> dict[str, float]:
    """Mean and 95% CI half-width (``1.96 std / sqrt(n)``) of per-episode values."""
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(array.mean()),
        "ci95": float(1.96 * array.std(ddof=1) / len(array) ** 0.5),
    }


def markdown(results: dict[str, Any]) -> str:
    """One table: a row per cell and score."""
    lines = [
        "| cell | score | false alarms % | outliers detected % | AUROC | blank frames flagged % "
        "| least flagged frame % |",
        "|---|---|---|---|---|---|---|",
    ]

    def text(value: dict[str, float] | None) -> str:
        return "-" if value is None else f"{value['mean']:.1f} ± {value['ci95']:.1f}"

    for cell, rows in results.items():
        for name in SCORES:
            row = rows[name]
            least = min(row["by_kind"].items(), key=lambda kv: kv[1])
            lines.append(
                f"| {cell} | {name} | {text(row['false_alarms'])} | {text(row.get('detected'))} "
                f"| {text(row.get('auroc'))} | {row['blank_frames_flagged']:.1f} "
                f"| {least[0]} {least[1]:.1f} |"
            )
    return "\n".join(lines)


def run_domain(args: Any, name: str, results: dict[str, Any]) -> None:
    """Every cell of one domain, into ``results``."""
    domain = DOMAINS[name]
    data = dataset_split(args.data_root, domain.dataset, args.split)
    network = domain.network()
    if not isinstance(network, Backbone):
        raise TypeError(f"{name}: the domain's network carries no preprocessing")
    frames = blank_frames(domain.image_size)
    blanks, _ = embed_images(
        network, as_images(list(frames.values()), network.preprocessing), batch_size=16
    )
    cells = {
        f"{name}-5w{k}s-15-15": sampled(data, k, 15, 15, args.episodes, args.seed) for k in (1, 5)
    }
    tenfold = build_sampler("fixed", data.labels, ways=10, shots=5, queries=10, seed=args.seed)
    cells[f"{name}-10w5s-10"] = list(tenfold.take(args.episodes))
    cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
    every = [spec for specs in cells.values() for spec in specs]
    features = embed_episodes(cache, network, data, every).features
    for cell, specs in cells.items():
        results[cell] = cell_rows(EpisodeBatch.of(features, specs), blanks.float(), list(frames))
        print(f"{cell} done", flush=True)


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT,
        episodes=300,
        seed=0,
        cache_dir=FEATURE_CACHE,
        threads=1,
        output=Path("benchmarks/results/blank-frames-val.json"),
        split="val",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for name in DOMAINS:
        run_domain(args, name, results)
    record = {
        "setting": {
            "split": args.split,
            "episodes": args.episodes,
            "seed": args.seed,
            "false_alarm_rate": RATE,
            "seconds_total": time.perf_counter() - started,
            **environment("torch_threads", "OMP_NUM_THREADS", "torch", "machine", "python"),
        },
        "cells": results,
        "markdown": markdown(results),
    }
    write_json(args.output, record)
    print(record["markdown"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
