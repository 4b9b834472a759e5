"""Tune the head-scope fine-tuning hyper-parameters on VALIDATION classes only.

Embeds every image the episodes use once (frozen backbone, channels-first rows of the
``--cache-dir`` :class:`~anyshot.feature_cache.FeatureCache`, the same rows as a plain forward
pass), then runs support-init, fine-tuning and transductive fine-tuning (scope ``head``) over a
grid of temperature / lr / epochs on the same seeded episodes, batched on the embeddings
(``evaluate_cached``: an episode's ms is its batch's time / episodes; before ``fit_features``
each episode ran alone). Prints a table and writes JSON.

    python benchmarks/tune_head.py --dataset omniglot --data-root ../shared/data/omniglot \\
        --image-size 84 --episodes 200 --output benchmarks/results/tune-head-omniglot-val.json
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from anyshot.backbones import load_backbone
from anyshot.episodes import EpisodeSampler
from anyshot.evaluation.cached import evaluate_cached
from anyshot.feature_cache import FeatureCache
from anyshot.methods import SupportBasedInit, TransductiveFineTuning
from anyshot.progress import progress_bar
from harness.cli import FEATURE_CACHE, REQUIRED, add_shared_arguments, config_of, script_parser
from harness.episodes import dataset_split, embed_episodes
from harness.output import write_json


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=REQUIRED,
        image_size=84,
        episodes=200,
        seed=0,
        cache_dir=FEATURE_CACHE,
        output=REQUIRED,
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="val", choices=["val"], help="tuning uses val only")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.2, 0.1, 0.05])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2, 5e-2])
    parser.add_argument("--epoch-counts", type=int, nargs="+", default=[25, 50])
    parser.add_argument(
        "--balance-weights", type=float, nargs="*", default=[], help="class-balance weights to try"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        dest="cache_dir",
        default=argparse.SUPPRESS,
        help="the same as --cache-dir (it used to name a torch.save file of the embeddings)",
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    backbone = load_backbone(args.backbone, image_size=args.image_size)
    dataset = dataset_split(args.data_root, args.dataset, args.split)
    samplers = {
        shots: EpisodeSampler(
            dataset.labels, ways=args.ways, shots=shots, queries=args.queries, seed=args.seed
        )
        for shots in args.shots
    }
    specs = {shots: list(s.take(args.episodes)) for shots, s in samplers.items()}
    cache = FeatureCache(args.cache_dir, channels_last=False)
    embedded = embed_episodes(cache, backbone, dataset, (s for ss in specs.values() for s in ss))
    features = embedded.features
    embed_seconds = embedded.seconds
    print(f"embedded {len(features.items)} images in {embed_seconds:.1f} s")

    losses = [(0.0, 0.0), (1.0, 0.0)] + [(1.0, b) for b in args.balance_weights if b > 0]
    grid = [
        (t, lr, ep, w, b)
        for t, lr, ep, (w, b) in itertools.product(
            args.temperatures, args.lrs, args.epoch_counts, losses
        )
    ]
    rows = []
    for shots in args.shots:
        base = evaluate_cached(SupportBasedInit(), features, specs[shots]).summary
        rows.append({"shots": shots, "method": "support-init", **base})
        print(f"{shots}-shot support-init {100 * base['accuracy_mean']:.2f}")
        for temperature, lr, epochs, weight, balance in progress_bar(
            grid, desc=f"{shots}-shot grid"
        ):
            method = TransductiveFineTuning(
                scope="head",
                temperature=temperature,
                lr=lr,
                epochs=epochs,
                entropy_weight=weight,
                balance_weight=balance,
            )
            summary = evaluate_cached(method, features, specs[shots]).summary
            rows.append(
                {
                    "shots": shots,
                    "method": f"transd+bal{balance:g}"
                    if balance
                    else ("transductive" if weight else "finetune"),
                    "balance_weight": balance,
                    "temperature": temperature,
                    "lr": lr,
                    "epochs": epochs,
                    "entropy_weight": weight,
                    **summary,
                }
            )
    print(
        f"{'shots':>5} {'method':>13} {'T':>5} {'lr':>6} {'ep':>3} {'acc':>6} {'ci95':>5} {'ms':>6}"
    )
    for row in sorted(rows, key=lambda r: (r["shots"], -r["accuracy_mean"]))[:]:
        print(
            f"{row['shots']:>5} {row['method']:>13} {row.get('temperature', '-')!s:>5} "
            f"{row.get('lr', '-')!s:>6} {row.get('epochs', '-')!s:>3} "
            f"{100 * row['accuracy_mean']:6.2f} {100 * row['accuracy_ci95']:5.2f} "
            f"{1000 * row['seconds_per_episode_median']:6.1f}"
        )
    by_setting: dict[tuple, list[float]] = {}
    for row in rows:
        if row["method"] != "support-init" and row["entropy_weight"] > 0:
            key = (row["temperature"], row["lr"], row["epochs"], row["balance_weight"])
            by_setting.setdefault(key, []).append(row["accuracy_mean"])
    best = max(by_setting.items(), key=lambda kv: float(np.mean(kv[1])))
    print(
        f"best transductive setting over shots {args.shots} (mean accuracy): "
        f"T, lr, epochs, balance = {best[0]}"
    )
    write_json(
        args.output,
        {
            "config": config_of(args),
            "embedding_seconds": embed_seconds,
            "best_transductive": {
                "temperature": best[0][0],
                "lr": best[0][1],
                "epochs": best[0][2],
                "balance_weight": best[0][3],
            },
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
