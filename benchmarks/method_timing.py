"""Seconds per episode and accuracy of every method and scope, side by side, same episodes.

Runs support-init, fine-tuning and transductive fine-tuning (scopes head / last / all) with the
pretrained EfficientNet-Lite0 on the same seeded 5-way episodes. ``all`` is slow on a CPU, so
each row can have its own episode count (the first N episodes of the same stream).

    python benchmarks/method_timing.py --dataset omniglot --data-root ../shared/data/omniglot \\
        --split test --image-size 84 --output benchmarks/results/method-timing-omniglot.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.episodes import EpisodeSampler, make_episode
from anyshot.evaluation import evaluate
from anyshot.io import write_json
from anyshot.methods import FewShotMethod, FineTuning, SupportBasedInit, TransductiveFineTuning
from anyshot.methods.recommended import recommended_method


def rows(episodes: int, slow_episodes: int) -> list[tuple[str, FewShotMethod, int]]:
    """(name, method, episode count): paper defaults, plus anyshot's recommended head setting."""
    return [
        ("support-init", SupportBasedInit(), episodes),
        ("finetune head", FineTuning(scope="head"), episodes),
        ("transductive head", TransductiveFineTuning(scope="head"), episodes),
        ("recommended head", recommended_method(), episodes),
        ("finetune last", FineTuning(scope="last"), episodes),
        ("transductive last", TransductiveFineTuning(scope="last"), episodes),
        ("finetune all", FineTuning(scope="all"), slow_episodes),
        ("transductive all", TransductiveFineTuning(scope="all"), slow_episodes),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--slow-episodes", type=int, default=3, help="episodes for scope all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    backbone = load_backbone("efficientnet-lite0", image_size=args.image_size)
    dataset = load_dataset(args.dataset, args.data_root, args.split)
    sampler = EpisodeSampler(
        dataset.labels, ways=args.ways, shots=args.shots, queries=args.queries, seed=args.seed
    )
    results: list[dict[str, Any]] = []
    print(f"{'method':<20}{'episodes':>9}{'accuracy':>10}{'ci95':>7}{'s/episode':>11}")
    for name, method, count in rows(args.episodes, args.slow_episodes):
        episodes = [make_episode(dataset, s, backbone.preprocessing) for s in sampler.take(count)]
        start = time.perf_counter()
        summary = evaluate(method, backbone, episodes).summary
        wall = time.perf_counter() - start
        results.append({"method": name, "wall_seconds": wall, **summary})
        print(
            f"{name:<20}{count:>9}{100 * summary['accuracy_mean']:>9.2f}%"
            f"{100 * summary['accuracy_ci95']:>7.2f}{summary['seconds_per_episode_median']:>11.3f}"
        )
    write_json(
        args.output,
        {
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "torch_threads": torch.get_num_threads(),
            "rows": results,
        },
    )


if __name__ == "__main__":
    main()
