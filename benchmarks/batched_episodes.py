"""Episodes per second of head-scope methods on embeddings: many episodes per call vs one.

Synthetic fixed N-way K-shot episodes of random ``D``-dimensional features (the timing does not
depend on the values). Both paths run the method's ``fit_features``: **batched** is one call on
all ``--episodes`` episodes (``[E, S, D]`` support rows), **one at a time** is one call per
episode (a batch of one) on the first ``--one-at-a-time`` episodes. Also reports the largest
difference between the two paths' logits.

Results written before ``fit_features`` existed timed a different "one at a time": the method's
``__call__`` on an ``Episode`` of ``[N, D, 1, 1]`` rows with ``nn.Flatten()`` as the backbone
(and ``anyshot.methods.batched`` as the batched path).

    OMP_NUM_THREADS=1 python benchmarks/batched_episodes.py --episodes 1000 \\
        --output benchmarks/results/batched-episodes.json
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from anyshot.methods import SupportBasedInit
from anyshot.methods.presets import RECOMMENDED, Method
from harness.cli import OPTIONAL, add_shared_arguments, script_parser
from harness.episodes import EpisodeBatch, run_method
from harness.output import environment, write_json


def episodes(count: int, ways: int, shots: int, queries: int, dim: int, seed: int) -> EpisodeBatch:
    """``count`` episodes of ReLU-like random features, rows in way order."""
    g = torch.Generator().manual_seed(seed)
    support = torch.randn(count, ways * shots, dim, generator=g).relu()
    query = torch.randn(count, ways * queries, dim, generator=g).relu()

    def targets(per_class: int) -> torch.Tensor:
        return torch.arange(ways).repeat_interleave(per_class).expand(count, -1).contiguous()

    return EpisodeBatch(support, targets(shots), query, targets(queries), ways)


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(parser, episodes=1000, seed=0, output=OPTIONAL)
    parser.add_argument("--one-at-a-time", type=int, default=None, help="episodes timed singly")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--dim", type=int, default=1280)
    args = parser.parse_args()
    singly = args.one_at_a_time if args.one_at_a_time is not None else args.episodes

    batch = episodes(args.episodes, args.ways, args.shots, args.queries, args.dim, args.seed)
    methods: dict[str, Method] = {
        "support-init": SupportBasedInit(),
        "recommended-head": RECOMMENDED,
    }
    results: dict[str, Any] = {}
    for name, method in methods.items():
        batched = run_method(method, batch)
        single = run_method(method, batch.first(singly), one_at_a_time=True)
        batched_s, single_s = batched.seconds_total, single.seconds_total
        first = batched.logits[:singly]
        difference = (first - single.logits).abs().max().item()
        agreement = (first.argmax(-1) == single.logits.argmax(-1)).float().mean().item()
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
            "recommended": dataclasses.asdict(RECOMMENDED),
            **environment("torch_threads", "OMP_NUM_THREADS", "torch", "machine"),
        },
        "results": results,
    }
    if args.output is not None:
        write_json(args.output, record)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
