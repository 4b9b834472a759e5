"""Episodes per second: batched head-scope methods vs one episode at a time, on embeddings.

Synthetic fixed N-way K-shot episodes of random ``D``-dimensional features (the timing does not
depend on the values). The one-at-a-time path calls the method on an
``Episode(features[:, :, None, None], ...)`` with ``nn.Flatten()`` as the backbone, which is what
running a head-scope method on cached features costs today; the batched path is
:mod:`anyshot.methods.batched`. Also reports the largest difference between the two logits.

    OMP_NUM_THREADS=1 python benchmarks/batched_episodes.py --episodes 1000 \\
        --output benchmarks/results/batched-episodes.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.io import write_json
from anyshot.methods import SupportBasedInit
from anyshot.methods.batched import batched_head_finetuning, batched_support_init
from anyshot.methods.recommended import HEAD_SETTINGS, recommended_method


def episodes(
    count: int, ways: int, shots: int, queries: int, dim: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``support [E, W*S, D]``, ``targets [E, W*S]``, ``query [E, W*Q, D]`` (ReLU-like features)."""
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(count, ways * shots, dim, generator=g).relu()
    targets = torch.arange(ways).repeat_interleave(shots).expand(count, -1).contiguous()
    query = torch.randn(count, ways * queries, dim, generator=g).relu()
    return support, targets, query


def timed(function: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--one-at-a-time", type=int, default=None, help="episodes timed singly")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    singly = args.one_at_a_time if args.one_at_a_time is not None else args.episodes

    support, targets, query = episodes(
        args.episodes, args.ways, args.shots, args.queries, args.dim, args.seed
    )
    labels = targets[0].tolist()
    flatten = nn.Flatten()
    methods: dict[str, tuple[Any, Callable[[], torch.Tensor]]] = {
        "support-init": (
            SupportBasedInit(),
            lambda: batched_support_init(support, targets, query),
        ),
        "recommended-head": (
            recommended_method(),
            lambda: batched_head_finetuning(recommended_method(), support, targets, query),
        ),
    }
    results: dict[str, Any] = {}
    for name, (method, batched) in methods.items():
        batched_logits, batched_s = timed(batched)

        def loop(method: Any = method) -> torch.Tensor:
            return torch.stack(
                [
                    method(flatten, Episode(s[:, :, None, None], labels, q[:, :, None, None]))
                    for s, q in zip(support[:singly], query[:singly], strict=True)
                ]
            )

        single_logits, single_s = timed(loop)
        difference = (batched_logits[:singly] - single_logits).abs().max().item()
        agreement = (
            (batched_logits[:singly].argmax(-1) == single_logits.argmax(-1)).float().mean().item()
        )
        results[name] = {
            "batched_episodes_per_s": args.episodes / batched_s,
            "batched_seconds": batched_s,
            "one_at_a_time_episodes_per_s": singly / single_s,
            "one_at_a_time_seconds": single_s,
            "one_at_a_time_episodes": singly,
            "speedup": (args.episodes / batched_s) / (singly / single_s),
            "max_abs_logit_difference": difference,
            "argmax_agreement": agreement,
        }
        print(
            f"{name:18s} batched {args.episodes / batched_s:10.1f} episodes/s   "
            f"one at a time {singly / single_s:8.1f} episodes/s   "
            f"x{results[name]['speedup']:.1f}   max |diff| {difference:.2e}   "
            f"same argmax {agreement:.4f}"
        )
    record = {
        "setting": {
            "episodes": args.episodes,
            "ways": args.ways,
            "shots": args.shots,
            "queries_per_class": args.queries,
            "dim": args.dim,
            "recommended": HEAD_SETTINGS,
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
        },
        "results": results,
    }
    if args.output is not None:
        write_json(args.output, record)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
