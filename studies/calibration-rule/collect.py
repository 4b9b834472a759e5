"""Collect, per val episode, the uncalibrated default's query logits and episode statistics.

For every cell (the 12 cells of ``benchmarks/calibration.py``: same names, seeds and episodes,
plus optional cells of ``realistic_grid.py``) and every episode: the default's query logits with
``confidence_temperature = fallback_temperature = 1`` (``[Q, K]``), the query labels, whether the
gate or the guard answered, and statistics the product sees in every episode (no labels of the
queries): see :func:`episode_stats`. Saved with ``torch.save`` to ``--output``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anyshot.evaluation.cached import ItemFeatures, episode_tensors, plan_batches
from anyshot.feature_cache import FeatureCache
from anyshot.methods.cosine import class_means, support_center, unit_embeddings
from anyshot.methods.presets import RECOMMENDED
from calibration import cells as calibration_cells
from harness.cli import DATA_ROOT, FEATURE_CACHE
from harness.episodes import dataset_split, embed_episodes
from realistic_grid import DOMAINS, Cell, grid

UNCALIBRATED = dataclasses.replace(
    RECOMMENDED, confidence_temperature=1.0, fallback_temperature=1.0,
    confidence_shots_power=0.0, confidence_similarity_slope=0.0,
            confidence_query_slope=0.0,
)
#: support-init's calibration (its logits cos / 0.1 divided by it)
SI_TAU = 0.46

STATS = (
    "shots",
    "ways",
    "queries",
    "si_sim",  # mean off-diagonal cosine of the support's unit class means
    "si_sim_c",  # the same after centring on the support centre (the head's first run)
    "q_maxcos",  # mean over queries of the largest cosine to a class mean
    "q_margin",  # mean over queries of the top-1 minus top-2 cosine to the class means
    "si_conf",  # support-init's mean max probability at its calibration (cos / 0.046)
    "spread",  # mean cosine of a support row to its class mean (1 at one shot)
    "loo",  # leave-one-out nearest-class-mean accuracy on the support (nan at one shot)
    "agree",  # fraction of queries where the head and support-init predict the same class
    "head_conf",  # the uncalibrated head's mean max probability over queries
    "head_ent",  # its mean prediction entropy (nats)
    "logit_std",  # mean over queries of the std of its logits across classes
    "head_margin",  # mean over queries of the head's top-1 minus top-2 logit
)


def episode_stats(
    support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, ways: int, head: torch.Tensor
) -> torch.Tensor:
    """``[E, len(STATS)]`` statistics of ``E`` episodes: ``support [E, S, D]``, ``targets
    [E, S]``, ``query [E, Q, D]`` raw rows, ``head [E, Q, K]`` the uncalibrated default's logits."""
    e, s, _ = support.shape
    q = query.shape[1]
    shots = s / ways
    means = class_means(support, targets, ways)  # [E, K, D] unit
    off = ~torch.eye(ways, dtype=torch.bool)
    sim = (means @ means.transpose(1, 2))[:, off].mean(1)
    center = support_center(support, targets, ways)
    centred = class_means(unit_embeddings(support, center=center), targets, ways, relu=False)
    sim_c = (centred @ centred.transpose(1, 2))[:, off].mean(1)
    uq = unit_embeddings(query)
    cos = uq @ means.transpose(1, 2)  # [E, Q, K]
    top = cos.topk(2, -1).values
    maxcos = top[..., 0].mean(1)
    margin = (top[..., 0] - top[..., 1]).mean(1)
    si_conf = (cos / (0.1 * SI_TAU)).softmax(-1).amax(-1).mean(1)
    us = unit_embeddings(support)
    own = (us * means.gather(1, targets[..., None].expand(-1, -1, means.shape[-1]))).sum(-1)
    spread = own.mean(1)
    loo = torch.full((e,), float("nan"))
    if shots >= 2:
        one_hot = F.one_hot(targets, ways).float()  # [E, S, K]
        sums = one_hot.transpose(1, 2) @ F.relu(support)  # [E, K, D]
        counts = one_hot.sum(1)  # [E, K]
        # each row against the means of every class, its own class without it
        raw = F.relu(support)  # [E, S, D]
        others = sums[:, None] - one_hot[..., None] * raw[:, :, None]  # [E, S, K, D]
        n = counts[:, None] - one_hot
        loo_means = F.normalize(others / n[..., None], dim=-1)
        pred = (loo_means * us[:, :, None]).sum(-1).argmax(-1)
        loo = (pred == targets).float().mean(1)
    si_pred = cos.argmax(-1)
    agree = (head.argmax(-1) == si_pred).float().mean(1)
    prob = head.double().softmax(-1)
    head_conf = prob.amax(-1).mean(1)
    ent = -(prob * prob.clamp_min(1e-30).log()).sum(-1).mean(1)
    logit_std = head.std(-1).mean(1)
    ht = head.topk(2, -1).values
    head_margin = (ht[..., 0] - ht[..., 1]).mean(1)
    full = lambda v: torch.full((e,), float(v))  # noqa: E731
    columns = [full(shots), full(ways), full(q), sim, sim_c, maxcos, margin, si_conf, spread, loo,
               agree, head_conf, ent, logit_std, head_margin]
    return torch.stack([c.double() for c in columns], 1)


def collect_cell(features: ItemFeatures, specs: list, cell: Cell) -> dict:
    """Per episode of ``cell``: logits, targets, masks and statistics."""
    out: dict = {"logits": [], "targets": [], "stats": [], "gated": [], "guard": []}
    order: list[int] = []
    for batch in plan_batches(specs):
        support, targets, query, query_targets = episode_tensors(features, [specs[i] for i in batch])
        fitted = UNCALIBRATED.fit_features(support, targets, query, ways=cell.ways)
        fallback = fitted.fallback if fitted.fallback is not None else torch.zeros(len(batch), dtype=torch.bool)
        gated = fitted.gated if fitted.gated is not None else torch.zeros(len(batch), dtype=torch.bool)
        stats = episode_stats(support.float(), targets.long(), query.float(), cell.ways, fitted.query_logits)
        for j, i in enumerate(batch):
            order.append(i)
            out["logits"].append(fitted.query_logits[j])
            out["targets"].append(query_targets[j])
            out["gated"].append(bool(gated[j]))
            out["guard"].append(bool(fallback[j] and not gated[j]))
        out["stats"].append(stats)
    back = np.argsort(order)
    stats = torch.cat(out["stats"])[back]
    return {
        "logits": [out["logits"][i] for i in back],
        "targets": [out["targets"][i] for i in back],
        "gated": torch.tensor([out["gated"][i] for i in back]),
        "guard": torch.tensor([out["guard"][i] for i in back]),
        "stats": stats,
        "shots": cell.shots,
        "ways": cell.ways,
        "domain": cell.domain,
    }


#: realistic-grid cells added with --extra (cheap ones: 5 / 20 ways, small query sets)
EXTRA = (
    "mini-tiny-5w1s-q5", "mini-tiny-5w1s-q20", "mini-tiny-5w5s-q5", "mini-tiny-5w5s-q20",
    "omni-tiny-5w1s-q5", "omni-tiny-5w1s-q20", "omni-tiny-5w5s-q5", "omni-tiny-5w5s-q20",
    "omni-manyway-20w1s", "omni-manyway-20w5s", "mini-manyway-16w1s", "mini-manyway-16w5s",
    "omni-present-20w1s-k3", "omni-present-20w5s-k3", "mini-present-16w1s-k3", "mini-present-16w5s-k3",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="val")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--extra-episodes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extra", action="store_true", help="also the realistic-grid cells of EXTRA")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--cache-dir", type=Path, default=FEATURE_CACHE)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    chosen = calibration_cells(args.episodes)
    if args.extra:
        every = {c.name: c for c in grid({"mini": 16 if args.split == "val" else 20, "omni": 100}, args.extra_episodes)}
        chosen += [every[n] for n in EXTRA]
    found: dict = {}
    started = time.perf_counter()
    for name, domain in DOMAINS.items():
        mine = [c for c in chosen if c.domain == name]
        data = dataset_split(args.data_root, domain.dataset, args.split)
        labels = np.asarray(data.labels)
        specs = {c.name: list(c.sampler(labels, c.seed(args.seed)).take(c.episodes)) for c in mine}
        cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
        features = embed_episodes(cache, domain.network(), data, [s for v in specs.values() for s in v]).features
        for cell in mine:
            found[cell.name] = collect_cell(features, specs[cell.name], cell)
            print(f"{cell.name} done {time.perf_counter() - started:.0f}s", flush=True)
    torch.save({"stats": STATS, "cells": found, "split": args.split, "seed": args.seed}, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
