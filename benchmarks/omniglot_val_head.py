"""Head-scope settings on Omniglot **val** with the from-scratch conv-4 (issue 3 checkpoint).

Embeds the 13,760 val images once (pre-training logits, the paper's embedding) into a
:class:`~anyshot.feature_cache.FeatureCache`, then runs support-init and head transductive
variants batched on the same seeded balanced episodes (5- and 20-way, 1- and 5-shot, 15
queries per class) and writes a JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/omniglot_val_head.py \\
        --output benchmarks/results/omniglot-val-head.json
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from anyshot.backbones import load_backbone
from anyshot.cached_evaluation import ItemFeatures, evaluate_cached
from anyshot.data import load_dataset
from anyshot.feature_cache import FeatureCache
from anyshot.io import write_json
from anyshot.methods import FineTuning, SupportBasedInit, TransductiveFineTuning
from anyshot.methods.recommended import recommended_method
from anyshot.protocols import build_sampler

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", default="../shared/data/omniglot")
    parser.add_argument("--checkpoint", default="benchmarks/checkpoints/omniglot-conv4.pt")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/anyshot-features"))
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    backbone = load_backbone(args.checkpoint)
    dataset = load_dataset("omniglot", args.data_root, "val")
    features = FeatureCache(args.cache_dir, channels_last=False).features(
        backbone, dataset, range(len(dataset)), batch_size=512, show_progress=True
    )
    base = recommended_method()
    methods: dict[str, SupportBasedInit | FineTuning] = {
        "support-init": SupportBasedInit(),
        "default": base,
        "entropy + TIM balance": TransductiveFineTuning(
            scope="head", temperature=0.1, lr=1e-2, entropy_weight=1.0, balance_weight=1.0
        ),
        "likelihood only": dataclasses.replace(base, adaptive_balance=False, balance_weight=0.0),
        "default, balance 2": dataclasses.replace(base, balance_weight=2.0),
        "default, balance always": dataclasses.replace(base, adaptive_balance=False),
        "default, prior_count 5": dataclasses.replace(base, prior_count=5.0),
    }
    items = ItemFeatures(list(range(len(dataset))), features)
    results: dict[str, dict[str, float]] = {}
    for ways, shots in SETTINGS:
        sampler = build_sampler(
            "fixed", dataset.labels, ways=ways, shots=shots, queries=15, seed=args.seed
        )
        specs = list(sampler.take(args.episodes))
        name = f"{ways}-way {shots}-shot"
        results[name] = {}
        for label, method in methods.items():
            result = evaluate_cached(method, items, specs)
            accuracy = 100 * float(np.mean([r["accuracy"] for r in result.records]))
            results[name][label] = accuracy
            print(f"{name:16s} {label:26s} {accuracy:6.2f}", flush=True)
    write_json(args.output, {"episodes": args.episodes, "seed": args.seed, "results": results})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
