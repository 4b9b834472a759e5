"""Tune the head-scope fine-tuning hyper-parameters on VALIDATION classes only.

Embeds every image the episodes use once (frozen backbone), then runs support-init, fine-tuning
and transductive fine-tuning (scope ``head``) over a grid of temperature / lr / epochs on the
same seeded episodes. Prints a table and writes JSON.

    python benchmarks/tune_head.py --dataset omniglot --data-root ../shared/data/omniglot \\
        --image-size 84 --episodes 200 --output benchmarks/results/tune-head-omniglot-val.json
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.episodes import Episode, EpisodeSampler
from anyshot.evaluation import evaluate
from anyshot.io import write_json
from anyshot.methods import SupportBasedInit, TransductiveFineTuning
from anyshot.methods.frozen import frozen_forward
from anyshot.progress import progress_bar


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="val", choices=["val"], help="tuning uses val only")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.2, 0.1, 0.05])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2, 5e-2])
    parser.add_argument("--epoch-counts", type=int, nargs="+", default=[25, 50])
    parser.add_argument(
        "--balance-weights", type=float, nargs="*", default=[], help="class-balance weights to try"
    )
    parser.add_argument("--cache", type=Path, help="file to keep the embeddings in between runs")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    torch.manual_seed(0)
    backbone = load_backbone(args.backbone, image_size=args.image_size)
    dataset = load_dataset(args.dataset, args.data_root, args.split)
    samplers = {
        shots: EpisodeSampler(
            dataset.labels, ways=args.ways, shots=shots, queries=args.queries, seed=args.seed
        )
        for shots in args.shots
    }
    specs = {shots: list(s.take(args.episodes)) for shots, s in samplers.items()}
    needed = sorted(
        {i for ss in specs.values() for s in ss for items in (*s.support, *s.query) for i in items}
    )
    start = time.perf_counter()
    features: dict[int, torch.Tensor] = {}
    if args.cache is not None and args.cache.exists():
        features = torch.load(args.cache)
    missing = [i for i in needed if i not in features]
    for chunk in progress_bar(
        [missing[i : i + 256] for i in range(0, len(missing), 256)], desc="embedding"
    ):
        batch = dataset.load_batch(chunk, backbone.preprocessing)
        for index, row in zip(chunk, frozen_forward(backbone, batch, batch_size=64), strict=True):
            features[index] = row
    if args.cache is not None and missing:
        torch.save(features, args.cache)
    embed_seconds = time.perf_counter() - start
    print(f"embedded {len(needed)} images in {embed_seconds:.1f} s")

    def episodes(shots: int) -> Iterator[Episode]:
        for spec in specs[shots]:
            s_items = [i for items in spec.support for i in items]
            q_items = [i for items in spec.query for i in items]
            s_labels = [
                c for c, items in zip(spec.classes, spec.support, strict=True) for _ in items
            ]
            q_labels = [c for c, items in zip(spec.classes, spec.query, strict=True) for _ in items]
            yield Episode(
                torch.stack([features[i] for i in s_items])[:, :, None, None],
                s_labels,
                torch.stack([features[i] for i in q_items])[:, :, None, None],
                q_labels,
            )

    identity = nn.Flatten()
    losses = [(0.0, 0.0), (1.0, 0.0)] + [(1.0, b) for b in args.balance_weights if b > 0]
    grid = [
        (t, lr, ep, w, b)
        for t, lr, ep, (w, b) in itertools.product(
            args.temperatures, args.lrs, args.epoch_counts, losses
        )
    ]
    rows = []
    for shots in args.shots:
        base = evaluate(SupportBasedInit(), identity, episodes(shots)).summary
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
            summary = evaluate(method, identity, episodes(shots)).summary
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
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
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
