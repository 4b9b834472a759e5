"""Seconds per episode and accuracy of every method and scope, side by side, same episodes.

Runs support-init, fine-tuning and transductive fine-tuning (scopes head / last / all) with the
pretrained EfficientNet-Lite0 on the same seeded 5-way episodes. ``all`` is slow on a CPU, so
each row can have its own episode count (the first N episodes of the same stream).

    python benchmarks/method_timing.py --dataset omniglot --data-root ../shared/data/omniglot \\
        --split test --image-size 84 --output benchmarks/results/method-timing-omniglot.json
"""

from __future__ import annotations

import time
from typing import Any

from anyshot.backbones import load_backbone
from anyshot.episodes import EpisodeSampler, make_episode
from anyshot.evaluation import evaluate
from anyshot.methods import FewShotMethod, FineTuning, SupportBasedInit, TransductiveFineTuning
from anyshot.methods.presets import RECOMMENDED
from harness.cli import REQUIRED, add_shared_arguments, config_of, script_parser
from harness.episodes import dataset_split
from harness.output import environment, write_json


def rows(episodes: int, slow_episodes: int) -> list[tuple[str, FewShotMethod, int]]:
    """(name, method, episode count): paper defaults, plus anyshot's recommended head setting."""
    return [
        ("support-init", SupportBasedInit(), episodes),
        ("finetune head", FineTuning(scope="head"), episodes),
        ("transductive head", TransductiveFineTuning(scope="head"), episodes),
        ("recommended head", RECOMMENDED, episodes),
        ("finetune last", FineTuning(scope="last"), episodes),
        ("transductive last", TransductiveFineTuning(scope="last"), episodes),
        ("finetune all", FineTuning(scope="all"), slow_episodes),
        ("transductive all", TransductiveFineTuning(scope="all"), slow_episodes),
    ]


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser, data_root=REQUIRED, image_size=84, episodes=20, seed=0, output=REQUIRED
    )
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--split", default="test")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--slow-episodes", type=int, default=3, help="episodes for scope all")
    args = parser.parse_args()

    backbone = load_backbone("efficientnet-lite0", image_size=args.image_size)
    dataset = dataset_split(args.data_root, args.dataset, args.split)
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
            "config": config_of(args),
            **environment("torch_threads"),
            "rows": results,
        },
    )


if __name__ == "__main__":
    main()
