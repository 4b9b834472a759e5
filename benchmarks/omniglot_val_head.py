"""Head-scope settings on Omniglot **val** with the from-scratch conv-4 (issue 3 checkpoint).

Embeds the 13,760 val images once (pre-training logits, the paper's embedding) into a
:class:`~anyshot.feature_cache.FeatureCache`, then runs support-init and head transductive
variants batched on the same seeded balanced episodes (5-way 1-shot, 20-way 1- and 5-shot, 15
queries per class) and writes a JSON.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/omniglot_val_head.py \\
        --output benchmarks/results/omniglot-val-head.json
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from anyshot.backbones import load_backbone
from anyshot.data import load_dataset
from anyshot.feature_cache import FeatureCache
from anyshot.io import write_json
from anyshot.methods import TransductiveFineTuning
from anyshot.methods.batched import batched_head_finetuning, batched_support_init
from anyshot.methods.recommended import recommended_method
from anyshot.protocols import build_sampler


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
    methods = {
        "support-init": None,
        "default": base,
        "entropy + TIM balance": TransductiveFineTuning(
            scope="head", temperature=0.1, lr=1e-2, entropy_weight=1.0, balance_weight=1.0
        ),
        "likelihood only": dataclasses.replace(base, adaptive_balance=False, balance_weight=0.0),
        "default, balance 2": dataclasses.replace(base, balance_weight=2.0),
        "default, balance always": dataclasses.replace(base, adaptive_balance=False),
        "default, prior_count 5": dataclasses.replace(base, prior_count=5.0),
    }
    results: dict[str, dict[str, float]] = {}
    for ways, shots in ((5, 1), (20, 1), (20, 5)):
        sampler = build_sampler(
            "fixed", dataset.labels, ways=ways, shots=shots, queries=15, seed=args.seed
        )
        parts: list[tuple[torch.Tensor, ...]] = []
        for spec in sampler.take(args.episodes):
            s_items = [i for way in spec.support for i in way]
            q_items = [i for way in spec.query for i in way]
            s_labels = [k for k, way in enumerate(spec.support) for _ in way]
            q_labels = [k for k, way in enumerate(spec.query) for _ in way]
            parts.append(
                (
                    features[s_items],
                    torch.tensor(s_labels),
                    features[q_items],
                    torch.tensor(q_labels),
                )
            )
        support, targets, query, query_targets = (torch.stack(p) for p in zip(*parts, strict=True))
        name = f"{ways}-way {shots}-shot"
        results[name] = {}
        for label, method in methods.items():
            logits = (
                batched_support_init(support, targets, query)
                if method is None
                else batched_head_finetuning(method, support, targets, query)
            )
            accuracy = 100 * float((logits.argmax(-1) == query_targets).float().mean())
            results[name][label] = accuracy
            print(f"{name:16s} {label:26s} {accuracy:6.2f}", flush=True)
    write_json(args.output, {"episodes": args.episodes, "seed": args.seed, "results": results})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
