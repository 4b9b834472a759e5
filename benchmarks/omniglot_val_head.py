"""Head-scope settings on Omniglot **val** with the from-scratch conv-4 (issue 3 checkpoint).

Embeds the 13,760 val images once (pre-training logits, the paper's embedding) into a
:class:`~anyshot.feature_cache.FeatureCache`, then runs support-init and head transductive
variants batched on the same seeded balanced episodes (5- and 20-way, 1- and 5-shot, 15
queries per class) and writes a JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/omniglot_val_head.py \\
        --output benchmarks/results/omniglot-val-head.json
"""

from __future__ import annotations

import dataclasses

from anyshot.backbones import load_backbone
from anyshot.evaluation.cached import embed_items
from anyshot.feature_cache import FeatureCache
from anyshot.methods import SupportBasedInit
from anyshot.methods.presets import TIM_LIKE, UNGUARDED, Method
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT, FEATURE_CACHE, REQUIRED, add_shared_arguments, script_parser
from harness.episodes import compare_methods, dataset_split
from harness.output import write_json

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT / "omniglot",
        episodes=300,
        seed=1,
        cache_dir=FEATURE_CACHE,
        output=REQUIRED,
    )
    parser.add_argument("--checkpoint", default="benchmarks/checkpoints/omniglot-conv4.pt")
    args = parser.parse_args()
    backbone = load_backbone(args.checkpoint)
    dataset = dataset_split(args.data_root, "omniglot", "val")
    cache = FeatureCache(args.cache_dir, channels_last=False)
    everything = list(range(len(dataset)))
    features = embed_items(cache, backbone, dataset, everything, batch_size=512, show_progress=True)
    base = UNGUARDED
    methods: dict[str, Method] = {
        "support-init": SupportBasedInit(),
        "default": base,
        "entropy + TIM balance": TIM_LIKE,
        "likelihood only": dataclasses.replace(base, adaptive_balance=False, balance_weight=0.0),
        "default, balance 2": dataclasses.replace(base, balance_weight=2.0),
        "default, balance always": dataclasses.replace(base, adaptive_balance=False),
        "default, prior_count 5": dataclasses.replace(base, prior_count=5.0),
    }
    results: dict[str, dict[str, float]] = {}
    for ways, shots in SETTINGS:
        sampler = build_sampler(
            "fixed", dataset.labels, ways=ways, shots=shots, queries=15, seed=args.seed
        )
        name = f"{ways}-way {shots}-shot"
        results[name] = compare_methods(
            methods, features, list(sampler.take(args.episodes)), cell=name
        )
    write_json(args.output, {"episodes": args.episodes, "seed": args.seed, "results": results})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
