"""Confidences of a trained network (issue 17): what temperature calibrates them?

``--scope auto`` trains the whole network where the frozen backbone finds the classes alike
(Omniglot through the ImageNet EfficientNet-Lite0). The head's confidences are calibrated per fit
(``studies/calibration-rule/``); the trained network's were not (``NETWORK``'s
``confidence_temperature`` 1). This study fits ``FewShotClassifier()`` (scope auto, as
``anyshot classify`` / ``fit`` do, with no time limit) on seeded episodes of Omniglot (20 ways, 1 and 5 labelled
images per class, 5 query images per class, images at their own 105 px), records each query's
probabilities, and finds the temperature ``t`` (logits divided by ``t``; the probabilities'
logarithms are the logits up to a constant per image) that minimises the pooled negative
log-likelihood, per cell and over both. ECE in % (15 bins) before and after.

    OMP_NUM_THREADS=2 PYTHONPATH=src:benchmarks python studies/network-calibration/study.py \\
        --split val --episodes 6 --output studies/network-calibration/val.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from anyshot.calibration import expected_calibration_error
from anyshot.classifier import FewShotClassifier
from anyshot.data import load_dataset
from anyshot.methods.presets import NETWORK, RECOMMENDED
from anyshot.methods.scope_rule import ScopeRule
from anyshot.protocols import build_sampler

CELLS = {"omni-20w1s": (20, 1), "omni-20w5s": (20, 5)}
QUERIES = 5


def episode_probabilities(data, ways: int, shots: int, index: int, seed: int):
    """``(probabilities [Q, K], query labels [Q], scope)`` of episode ``index``."""
    sampler = build_sampler("fixed", data.labels, ways=ways, shots=shots, queries=QUERIES, seed=seed)
    spec = next(s for i, s in enumerate(sampler.take(index + 1)) if i == index)
    support = [data.image(int(i)) for items in spec.support for i in items]
    labels = [k for k, items in enumerate(spec.support) for _ in items]
    query = [data.image(int(i)) for i in spec.query_items]
    rule = ScopeRule(  # as FewShotClassifier() builds it, without a time limit (a busy CPU
        # would otherwise fall back to the head: the study is about the trained network)
        head=dataclasses.replace(RECOMMENDED, seed=seed + index),
        network=dataclasses.replace(NETWORK, seed=seed + index),
        time_budget=1e9,
    )
    model = FewShotClassifier(method=rule, cache_dir=False, seed=seed + index)
    model.fit(support, labels)
    truth = [spec.classes.index(int(data.labels[int(i)])) for i in spec.query_items]
    return model.predict_proba(query), np.asarray(truth), model.fit_info_["scope"]


def nll(log_p: np.ndarray, truth: np.ndarray, t: float) -> float:
    """Mean negative log-likelihood of softmax(log_p / t)."""
    z = torch.from_numpy(log_p / t)
    return float(-torch.log_softmax(z, -1)[torch.arange(len(truth)), torch.from_numpy(truth)].mean())


def best_temperature(log_p: np.ndarray, truth: np.ndarray) -> float:
    """The ``t`` of a grid from 0.2 to 5 (log-spaced) with the lowest NLL."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 161))
    return float(grid[int(np.argmin([nll(log_p, truth, t) for t in grid]))])


def ece(log_p: np.ndarray, truth: np.ndarray, t: float) -> float:
    p = torch.softmax(torch.from_numpy(log_p / t), -1)
    confidence, predicted = p.max(-1)
    return 100 * expected_calibration_error(confidence, predicted.numpy() == truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, help="also report the ECE at this t")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    data = load_dataset("omniglot", args.data_root / "omniglot", args.split)
    pooled: dict[str, list[np.ndarray]] = {"log_p": [], "truth": []}
    record: dict[str, object] = {"split": args.split, "episodes": args.episodes, "cells": {}}
    for cell, (ways, shots) in CELLS.items():
        log_ps, truths, scopes = [], [], []
        for index in range(args.episodes):
            began = time.perf_counter()
            p, truth, scope = episode_probabilities(data, ways, shots, index, args.seed)
            log_ps.append(np.log(np.clip(p, 1e-12, 1.0)))
            truths.append(truth)
            scopes.append(scope)
            accuracy = float((p.argmax(1) == truth).mean())
            print(f"{cell} ep{index} scope {scope} acc {accuracy:.3f} "
                  f"{time.perf_counter() - began:.0f} s", flush=True)
        log_p, truth = np.concatenate(log_ps), np.concatenate(truths)
        pooled["log_p"].append(log_p)
        pooled["truth"].append(truth)
        t = best_temperature(log_p, truth)
        row = {"scopes": scopes, "accuracy": float((log_p.argmax(1) == truth).mean()),
               "ece_as_shipped": ece(log_p, truth, 1.0), "best_t": t, "ece_best_t": ece(log_p, truth, t),
               "nll_as_shipped": nll(log_p, truth, 1.0), "nll_best_t": nll(log_p, truth, t)}
        if args.temperature:
            row["ece_given_t"] = ece(log_p, truth, args.temperature)
        row["log_probabilities"] = log_p.round(5).tolist()  # for other temperatures later
        row["truth"] = truth.tolist()
        record["cells"][cell] = row  # type: ignore[index]
        print(cell, json.dumps({k: v for k, v in row.items() if k not in ("log_probabilities", "truth")}), flush=True)
    log_p, truth = np.concatenate(pooled["log_p"]), np.concatenate(pooled["truth"])
    t = best_temperature(log_p, truth)
    record["pooled_best_t"] = t
    record["ece_at_pooled_t"] = {
        cell: ece(lp, tr, t) for cell, lp, tr in zip(CELLS, pooled["log_p"], pooled["truth"])
    }
    print("pooled t", t, record["ece_at_pooled_t"], flush=True)
    args.output.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
