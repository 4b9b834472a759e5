"""Which input size for small images? EfficientNet-Lite0 (ImageNet weights) at each ``--sizes``
on the **val** classes of mini-ImageNet (84 px files) and Omniglot (105 px files).

The same seeded 5-way episodes (``--shots``, ``--queries`` per class, ``--episodes`` each) at
every size; support-init and the default method (:data:`~anyshot.methods.presets.RECOMMENDED`)
on FeatureCache rows (``--dtype``, default bfloat16 as the practitioner commands run on a CPU
that has it; channels-last). Prints mean accuracy (%) per cell and the paired difference of each
size from the largest, and writes a JSON.

Result (5-way 1-shot, 5 queries per class, 100 episodes, seed 7): the 224 px default beat the
images' own size on both, so the practitioner commands keep the backbone's input size whatever
the images' size (no shrinking rule): mini-ImageNet (84 px files) at 84 px support-init -15.9
(+-2.1), default method -20.4 (+-2.6) points; Omniglot (105 px files) at 84 px -4.9 (+-2.2) /
-8.5 (+-3.7), at 112 px -3.4 (+-2.1) / -7.0 (+-3.4).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/image_size_probe.py --datasets omniglot \
        --shots 1 --sizes 84 112 224 \
        --output benchmarks/results/image-size-probe-omniglot-val.json
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/image_size_probe.py \
        --datasets mini-imagenet --shots 1 --sizes 84 224 \
        --output benchmarks/results/image-size-probe-mini-imagenet-val.json
"""

from __future__ import annotations

import torch

from anyshot.backbones import build_backbone
from anyshot.evaluation.cached import embed_items, episode_items, evaluate_cached
from anyshot.feature_cache import FeatureCache
from anyshot.methods import SupportBasedInit
from anyshot.methods.presets import RECOMMENDED, Method
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT, FEATURE_CACHE, REQUIRED, add_shared_arguments, script_parser
from harness.episodes import dataset_split
from harness.output import environment, write_json

DATASETS = ("mini-imagenet", "omniglot")


def _accuracies(method: Method, features: object, specs: list) -> list[float]:
    records = evaluate_cached(method, features, specs).records  # type: ignore[arg-type]
    return [100 * float(r["accuracy"]) for r in records]


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser, data_root=DATA_ROOT, episodes=100, seed=7, cache_dir=FEATURE_CACHE,
        threads=2, output=REQUIRED,
    )  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", default=[84, 224])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    methods: dict[str, Method] = {"support-init": SupportBasedInit(), "default": RECOMMENDED}
    results: dict[str, dict[str, object]] = {}
    for name in args.datasets:
        dataset = dataset_split(args.data_root, name, "val")
        cache = FeatureCache(args.cache_dir, dtype=args.dtype)
        for shots in args.shots:
            sampler = build_sampler(
                "fixed", dataset.labels, ways=5, shots=shots, queries=args.queries, seed=args.seed
            )
            specs = list(sampler.take(args.episodes))
            items = sorted(episode_items(specs))
            per_size: dict[int, dict[str, list[float]]] = {}
            for size in args.sizes:
                network = build_backbone("efficientnet-lite0", image_size=size)
                features = embed_items(cache, network, dataset, items, show_progress=True)
                per_size[size] = {m: _accuracies(method, features, specs)
                                  for m, method in methods.items()}  # fmt: skip
            largest = max(args.sizes)
            cell: dict[str, object] = {}
            for size, by_method in per_size.items():
                for m, values in by_method.items():
                    diff = torch.tensor(values) - torch.tensor(per_size[largest][m])
                    half = 1.96 * float(diff.std()) / len(values) ** 0.5
                    cell[f"{size}px {m}"] = {
                        "mean": float(torch.tensor(values).mean()),
                        f"minus_{largest}px": float(diff.mean()),
                        "ci95": half,
                    }
                    print(f"{name:14s} 5-way {shots}-shot {size:4d} px {m:13s} "
                          f"{float(torch.tensor(values).mean()):6.2f}  vs {largest} px "
                          f"{float(diff.mean()):+6.2f} +- {half:.2f}", flush=True)  # fmt: skip
            results[f"{name} 5-way {shots}-shot"] = cell
    record = {"config": {k: str(v) for k, v in vars(args).items()}, "results": results,
              "environment": environment("torch", "torch_threads", "cpu_count")}  # fmt: skip
    write_json(args.output, record)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
