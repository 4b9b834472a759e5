"""The default head on many-way, low-accuracy episodes: a val-only probe of the collapse.

The honest-evaluation harness (EfficientNet-Lite0 at 84 px, ImageNet weights) shows the
recommended transductive head falling far *below* support-init on many-way Omniglot episodes
(e.g. 160-way 1-shot). This probe runs the default and variants of it on the **val** classes
(seeded fixed-way episodes, 5 queries per class on Omniglot, 15 on mini-ImageNet, batched on
cached features) to locate the cause: the query log-likelihood term with maximum-likelihood
class proportions (``likelihood_weight``, ``prior_count 0``), and what softens it.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/many_way_probe.py \\
        --output benchmarks/results/many-way-probe-val.json
"""

from __future__ import annotations

import dataclasses

from anyshot.backbones import load_backbone
from anyshot.feature_cache import FeatureCache
from anyshot.methods import SupportBasedInit
from anyshot.methods.presets import UNGUARDED, Method
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT, FEATURE_CACHE, REQUIRED, add_shared_arguments, script_parser
from harness.episodes import compare_methods, dataset_split, embed_episodes
from harness.output import write_json

#: dataset -> (queries per class, [(ways, shots), ...]) of balanced query sets
PLANS = {
    "omniglot": (5, [(5, 1), (20, 1), (40, 5), (160, 1)]),
    "mini-imagenet": (15, [(5, 1), (5, 5), (16, 1), (16, 5)]),
}
#: imbalanced query sets (75 queries, Dirichlet(alpha) proportions): where "balance always" fails
IMBALANCED = {"mini-imagenet": [(5, 1, 2.0), (5, 5, 2.0), (5, 1, 0.5), (5, 5, 0.5)]}


def variants() -> dict[str, Method]:
    """The default and what changes only its likelihood / balance terms."""
    base = UNGUARDED
    return {
        "support-init": SupportBasedInit(),
        "default": base,
        "default, prior_count 3": dataclasses.replace(base, prior_count=3.0),
        "default, prior_count 10": dataclasses.replace(base, prior_count=10.0),
        "default, balance always": dataclasses.replace(base, adaptive_balance=False),
        "default without the likelihood term": dataclasses.replace(base, likelihood_weight=0.0),
        "default, likelihood 0.05": dataclasses.replace(base, likelihood_weight=0.05),
        "balance always, prior_count 10": dataclasses.replace(
            base, adaptive_balance=False, prior_count=10.0
        ),
    }


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT,
        episodes=20,
        image_size=84,
        cache_dir=FEATURE_CACHE,
        output=REQUIRED,
    )
    args = parser.parse_args()
    backbone = load_backbone("efficientnet-lite0", image_size=args.image_size)
    cache = FeatureCache(args.cache_dir, channels_last=False)
    results: dict[str, dict[str, float]] = {}
    cells = [
        (name, f"{ways}-way {shots}-shot", dict(ways=ways, shots=shots, queries=queries))
        for name, (queries, settings) in PLANS.items()
        for ways, shots in settings
    ] + [
        (
            name,
            f"{ways}-way {shots}-shot imbalanced (alpha {alpha:g})",
            dict(ways=ways, shots=shots, total_queries=75, dirichlet_alpha=alpha),
        )
        for name, settings in IMBALANCED.items()
        for ways, shots, alpha in settings
    ]
    datasets = {name: dataset_split(args.data_root, name, "val") for name in PLANS}
    for name, setting, options in cells:
        protocol = "imbalanced" if "total_queries" in options else "fixed"
        sampler = build_sampler(protocol, datasets[name].labels, seed=0, **options)
        specs = list(sampler.take(args.episodes))
        features = embed_episodes(cache, backbone, datasets[name], specs).features
        cell = f"{name} val {setting}"
        results[cell] = compare_methods(variants(), features, specs, cell=cell)
    write_json(
        args.output,
        {
            "backbone": f"efficientnet-lite0 (ImageNet weights) at {args.image_size} px",
            "episodes_per_cell": args.episodes,
            "seed": 0,
            "queries_per_class": {name: plan[0] for name, plan in PLANS.items()},
            "imbalanced": "75 queries per episode, Dirichlet(alpha) class proportions",
            "accuracy_percent": results,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
