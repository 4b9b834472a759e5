"""Honest evaluation (issue 5): accuracy against ways, shots and episode hardness, with spread.

On Omniglot test and mini-ImageNet test, with the ImageNet EfficientNet-Lite0 at 84 px:

* accuracy versus ways (5, 10, 20, 40, 80, 160 on Omniglot; 5, 10, 20 = all on mini-ImageNet)
  at 1 and 5 shots;
* accuracy versus shots (1, 2, 5, 10, 15 on Omniglot, whose classes have 20 images; 1, 2, 5, 10,
  20 on mini-ImageNet) at 5 ways;
* every episode's hardness (Dhillon et al. eq. 9, EfficientNet-Lite0 logits at 84 px) and the
  accuracy-versus-hardness line of each method, pooled over a dataset's settings;

for three head-scope methods on the same seeded episodes: support-based initialisation, the
paper's transductive fine-tuning (T = 1, Adam 5e-5, 25 epochs) and anyshot's recommended
transductive setting (:data:`~anyshot.methods.presets.UNGUARDED`, the default before the
safeguards for realistic query sets: T = 0.1, lr 1e-2,
class-balance term).

Every image is embedded once (frozen backbone, channels-first rows of a
:class:`~anyshot.feature_cache.FeatureCache`, reused across runs); the methods run on the
cached rows through ``fit_features``, episodes of one shape batched together
(``evaluate_cached``: an episode's ``seconds`` is its batch's wall time / episodes, as each
result's ``config["timing"]`` says; before ``fit_features`` every episode ran alone). The
hardness model's logits are the same network's ImageNet classifier applied to the cached
features.

    OMP_NUM_THREADS=1 python benchmarks/honest_evaluation.py --data-root ../shared/data \\
        --cache-dir /tmp/anyshot-features --output-dir benchmarks/results

writes ``benchmarks/results/honest-evaluation-{omniglot,mini-imagenet}-test.json`` (bundles of
per-setting results), ``honest-evaluation.{md,csv}``, ``honest-evaluation-hardness.csv`` and
``benchmarks/results/plots/honest-evaluation-*.png``, and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from anyshot.backbones import load_backbone
from anyshot.evaluation.cached import evaluate_cached
from anyshot.feature_cache import FeatureCache
from anyshot.hardness import HardnessModel
from anyshot.methods import SupportBasedInit, TransductiveFineTuning
from anyshot.methods.presets import UNGUARDED, Method
from anyshot.progress import progress_bar
from anyshot.protocols import build_sampler, sampler_config
from anyshot.report import POOLED, write_report
from harness.cli import DATA_ROOT, FEATURE_CACHE, add_shared_arguments, script_parser
from harness.episodes import dataset_split, embed_episodes
from harness.output import write_json

#: ``batch_size`` of the fine-tuning methods: what the committed results record (it chunked
#: the rows of the old image path; ``fit_features`` uses every row of an episode in each step).
HEAD_CHUNK = 1024

#: dataset -> (queries per class, ways sweep, shots sweep at 5 ways)
PLANS: dict[str, tuple[int, list[int], list[int]]] = {
    "omniglot": (5, [5, 10, 20, 40, 80, 160], [1, 2, 5, 10, 15]),
    "mini-imagenet": (15, [5, 10, 20], [1, 2, 5, 10, 20]),
}


def methods() -> list[tuple[str, Method]]:
    """(label, method) of the three compared head-scope methods."""
    return [
        ("support-init", SupportBasedInit()),
        (
            "transductive (paper, head)",
            TransductiveFineTuning(scope="head", batch_size=HEAD_CHUNK),
        ),
        (
            "transductive (unguarded: the previous default)",
            dataclasses.replace(UNGUARDED, batch_size=HEAD_CHUNK),
        ),
    ]


def settings(dataset: str, small: int, large: int) -> list[tuple[str, int, int, int]]:
    """(protocol, ways, shots, episodes) of a dataset: the ways sweep, then the shots sweep."""
    _, ways_list, shots_list = PLANS[dataset]
    found = [
        ("many-way" if w > 20 else "fixed", w, k, large if w > 20 else small)
        for k in (1, 5)
        for w in ways_list
    ]
    found += [("fixed", 5, k, small) for k in shots_list if k not in (1, 5)]
    return found


def run_dataset(args: argparse.Namespace, name: str) -> tuple[Path, dict[str, Any]]:
    """Evaluate every setting and method of one dataset; write its bundle; return path, timing."""
    dataset = dataset_split(args.data_root, name, "test")
    queries = PLANS[name][0]
    plan = settings(name, args.episodes, args.many_way_episodes)
    samplers = {
        (w, k): build_sampler(protocol, dataset.labels, ways=w, shots=k, queries=queries, seed=0)
        for protocol, w, k, _ in plan
    }
    specs = {
        (w, k): list(samplers[(w, k)].take(n)) for _, w, k, n in plan
    }  # episode i of a setting is the same for every method
    backbone = load_backbone("efficientnet-lite0", image_size=args.image_size)
    cache = FeatureCache(args.cache_dir, channels_last=False)
    embedded = embed_episodes(cache, backbone, dataset, (s for ss in specs.values() for s in ss))
    features, needed = embedded.features, list(embedded.features.items)
    embed_seconds = embedded.seconds if embedded.computed else 0.0
    load_seconds = embedded.seconds - embed_seconds

    # Hardness: the generic model's logits = the ImageNet classifier on the cached features.
    hardness_backbone = load_backbone(
        "efficientnet-lite0", embedding="logits", image_size=args.image_size
    )
    hardness = HardnessModel(dataset, hardness_backbone)
    assert backbone.classifier is not None
    with torch.inference_mode():
        logits = backbone.classifier(features.features)
    hardness.add_embeddings(needed, logits)
    check = needed[:4]
    fresh = HardnessModel(dataset, hardness_backbone).embeddings(check)
    torch.testing.assert_close(fresh, hardness.embeddings(check), atol=1e-3, rtol=1e-4)

    results = []
    method_seconds = 0.0
    for protocol, w, k, n in progress_bar(plan, desc=f"{name} settings", unit="setting"):
        setting_specs = specs[(w, k)]
        values = [hardness(spec) for spec in setting_specs]
        for label, method in methods():
            config = {
                "command": "benchmarks/honest_evaluation.py",
                "dataset": name,
                "split": "test",
                **sampler_config(samplers[(w, k)]),
                "protocol": protocol,
                "episodes": n,
                "label": label,
                "method": type(method).__name__,
                "method_options": dataclasses.asdict(method),
                "backbone": "efficientnet-lite0",
                "image_size": args.image_size,
                "embedding": "features (1280-d), cached",
                "hardness": {**hardness.config(), "image_size": args.image_size},
            }

            start = time.perf_counter()
            result = evaluate_cached(
                method, features, setting_specs, config=config, hardness=values.__getitem__
            )
            method_seconds += time.perf_counter() - start
            results.append(result.to_dict())
    path = args.output_dir / f"honest-evaluation-{name}-test.json"
    timing = {
        "images_embedded_now": embedded.computed,
        "embedding_seconds": embed_seconds,
        "cache_load_seconds": load_seconds,
        "method_seconds": method_seconds,
        "images_used": len(needed),
    }
    bundle = {"timing": timing, "results": results}
    write_json(path, bundle, compact=True)
    return path, timing


def pivot(report_rows: list[Any], dataset: str, axis: str, fixed: dict[str, int]) -> str:
    """A Markdown table: one line per value of ``axis``, one column per method."""
    rows = [
        r
        for r in report_rows
        if r.dataset == dataset
        and all(getattr(r.setting, key) == value for key, value in fixed.items())
        and r.setting.shots is not None
    ]
    labels = [label for label, _ in methods()]
    values = sorted({int(getattr(r.setting, axis)) for r in rows})
    lines = [
        f"| {axis} | episodes | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for value in values:
        cells = {r.method: r for r in rows if getattr(r.setting, axis) == value}
        episodes = next(iter(cells.values())).episodes
        text = [
            f"{cells[m].mean:.2f} ± {cells[m].ci95:.2f} (std {cells[m].std:.1f})"
            if m in cells
            else "-"
            for m in labels
        ]
        lines.append(f"| {value} | {episodes} | " + " | ".join(text) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT,
        image_size=84,
        episodes=100,
        cache_dir=FEATURE_CACHE,
        helps={"episodes": "per setting up to 20 ways"},
    )
    parser.add_argument("--datasets", nargs="+", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--many-way-episodes", type=int, default=20, help="per setting > 20 ways")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    start = time.perf_counter()
    paths, timings = [], {}
    for name in args.datasets:
        path, timing = run_dataset(args, name)
        paths.append(path)
        timings[name] = timing
        print(f"{name}: {json.dumps(timing)}")
    report = write_report(paths, args.output_dir, name="honest-evaluation")
    for name in args.datasets:
        dataset = f"{name} test"
        print(f"\n### {dataset}: accuracy (%) versus ways, mean ± 95% CI (std)")
        for shots in (1, 5):
            print(f"\n{shots}-shot:\n")
            print(pivot(report.rows, dataset, "ways", {"shots": shots}))
        print(f"\n### {dataset}: accuracy (%) versus shots at 5 ways\n")
        print(pivot(report.rows, dataset, "shots", {"ways": 5}))
    print("\n### accuracy (%) = intercept + slope x hardness, area under the line\n")
    print("| dataset | method | episodes | hardness range | slope | intercept | r | area |")
    print("|---|---|---|---|---|---|---|---|")
    for fit in (f for f in report.fits if f["scope"] == POOLED):
        area = f"{fit['area']:.1f}" if fit["note"] == "" else f"n/a ({fit['note']})"
        print(
            f"| {fit['dataset']} | {fit['method']} | {fit['episodes']} | "
            f"{fit['hardness_min']:.2f} to {fit['hardness_max']:.2f} | {fit['slope']:.2f} | "
            f"{fit['intercept']:.2f} | {fit['correlation']:.2f} | {area} |"
        )
    labels = [label for label, _ in methods()]
    print("\n### within one setting: slope (r) of accuracy (%) on hardness\n")
    print("| dataset, setting | hardness range | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    within: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for fit in report.fits:
        if fit["scope"] != POOLED:
            within.setdefault((fit["dataset"], fit["scope"]), {})[fit["method"]] = fit
    for (dataset, scope), fits in within.items():
        first = next(iter(fits.values()))
        cells = [
            f"{fits[m]['slope']:.1f} ({fits[m]['correlation']:.2f})" if m in fits else "-"
            for m in labels
        ]
        print(
            f"| {dataset}, {scope} | {first['hardness_min']:.2f} to "
            f"{first['hardness_max']:.2f} | " + " | ".join(cells) + " |"
        )
    print(f"\n{len(report.warnings)} warnings:")
    for warning in report.warnings:
        print(f"- {warning}")
    for path in report.plots:
        print(f"plot: {path} ({path.stat().st_size // 1024} KB)")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
