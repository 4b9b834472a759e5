"""The mini-ImageNet table: every method on one fixed list of episodes, balanced and imbalanced.

Backbone: the offline ImageNet-pretrained EfficientNet-Lite0, pooled 1280-d features of 224x224
bilinear resizes of the 84 px images, inputs scaled to [-1, 1], computed once per image with
:class:`anyshot.feature_cache.FeatureCache`. **The backbone was trained on ImageNet, which
contains every mini-ImageNet class: these numbers are optimistic for the few-shot protocol.**

Two protocols, 5-way 1-shot and 5-shot, episodes seeded by ``--seed``:

* ``balanced``: 15 queries per class (``--episodes``, 1,000 in the table);
* ``imbalanced``: 75 queries per episode split by Dirichlet(alpha = 2) class proportions
  (``--imbalanced-episodes``, 500 in the table);
* ``strongly imbalanced``: the same with alpha = 0.5 (``--strong-imbalance-episodes``):
  often one or two classes hold most queries and some none.

Rows (every head-scope row runs on the cached features, all episodes of a cell in one
``fit_features`` call; time per episode = the call's wall time / episodes):

* ``support-init``; ``fine-tuning`` (support cross-entropy only, the tuned head settings);
* ``transductive (paper)``: the paper's hyper-parameters (T = 1, Adam 5e-5, 25 epochs,
  lambda = 1) on the head;
* ``transductive + TIM balance``: query entropy plus TIM's class-balance term (anyshot's
  previous default);
* ``anyshot default``: :data:`anyshot.methods.presets.RECOMMENDED`, the settings tuned on val
  plus the safeguards for realistic query sets (chosen on ``realistic_grid.py --split val``);
* ``unguarded (the default before the safeguards)``: :data:`~anyshot.methods.presets.UNGUARDED`
  (``--split val --grid`` runs the candidates it was chosen from);
* ``likelihood only (previous default)``: the unguarded head without the adaptive balance term;
* ``transductive (last)``: the paper's method at scope ``last`` (images through the network,
  last stage trained) on the first ``--last-episodes`` episodes of each setting (slow);
* easyfsl 1.5.0 peers on the identical episode features, with its benchmark settings
  (``scripts/methods_configs.json`` of its repository), run in ``benchmarks/.venv-easyfsl``
  by ``benchmarks/easyfsl_methods.py`` (``--no-easyfsl`` skips them).

    .venv/bin/python benchmarks/mini_imagenet_table.py --split test --episodes 1000 \\
        --imbalanced-episodes 500 --last-episodes 10 \\
        --output benchmarks/results/mini-imagenet-table-test.json
    .venv/bin/python benchmarks/mini_imagenet_table.py --split val --episodes 300 \\
        --imbalanced-episodes 300 --seed 1 --grid --last-episodes 0 \\
        --output benchmarks/results/mini-imagenet-table-val.json
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anyshot.backbones import build_backbone
from anyshot.data import ImageDataset
from anyshot.episodes import EpisodeSpec, make_episode
from anyshot.evaluation import summarize
from anyshot.feature_cache import FeatureCache
from anyshot.methods import SupportBasedInit, TransductiveFineTuning
from anyshot.methods.presets import (
    RECOMMENDED,
    RECOMMENDED_INDUCTIVE,
    TIM_LIKE,
    UNGUARDED,
    Method,
)
from anyshot.progress import progress_bar
from anyshot.protocols import build_sampler
from harness.cli import (
    DATA_ROOT,
    FEATURE_CACHE,
    REQUIRED,
    add_shared_arguments,
    script_parser,
)
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes, run_method
from harness.output import environment, write_json

HERE = Path(__file__).resolve().parent
EASYFSL_PYTHON = HERE / ".venv-easyfsl" / "bin" / "python"

#: easyfsl's own benchmark settings (scripts/methods_configs.json of easy-few-shot-learning).
EASYFSL_SETTINGS: dict[str, dict[str, Any]] = {
    "TIM": {
        "fine_tuning_steps": 50,
        "fine_tuning_lr": 0.001,
        "cross_entropy_weight": 1.0,
        "marginal_entropy_weight": 1.0,
        "conditional_entropy_weight": 0.5,
        "temperature": 10.0,
        "feature_normalization": 2,
    },
    "BDCSPN": {"feature_normalization": 2},
    "LaplacianShot": {
        "inference_steps": 10,
        "knn": 3,
        "lambda_regularization": 0.1,
        "feature_normalization": 2,
    },
    "SimpleShot": {"feature_normalization": 2},
    "TransductiveFinetuning": {
        "fine_tuning_steps": 10,
        "fine_tuning_lr": 0.0001,
        "temperature": 10.0,
        "feature_normalization": 2,
    },
}

#: Dhillon et al. (ICLR 2020), WRN-28-10 pre-trained on the 64 mini-ImageNet train classes.
PAPER_WRN = {
    "support-init": (56.17, 73.31),
    "fine-tuning": (57.73, 78.17),
    "transductive (paper)": (65.73, 78.40),
}


def head_rows(grid: bool) -> dict[str, Method]:
    """Row name -> method (a SupportBasedInit or a head-scope FineTuning)."""
    rows: dict[str, Method] = {
        "support-init": SupportBasedInit(),
        "fine-tuning": RECOMMENDED_INDUCTIVE,
        "transductive (paper)": TransductiveFineTuning(scope="head"),
        "transductive + TIM balance": TIM_LIKE,
        "anyshot default": RECOMMENDED,
        "unguarded (the default before the safeguards)": UNGUARDED,
    }
    previous = dataclasses.replace(UNGUARDED, adaptive_balance=False, balance_weight=0.0)
    rows["likelihood only (previous default)"] = previous
    if grid:
        base = UNGUARDED
        rows["default, no centring"] = dataclasses.replace(base, center=False)
        rows["centring + entropy"] = dataclasses.replace(
            previous, likelihood_weight=0.0, entropy_weight=1.0
        )
        rows["centring + entropy + balance"] = dataclasses.replace(
            previous, likelihood_weight=0.0, entropy_weight=1.0, balance_weight=1.0
        )
        for count in (5.0, 20.0):
            rows[f"likelihood only, prior_count {count:g}"] = dataclasses.replace(
                previous, prior_count=count
            )
        rows["likelihood only, T 0.07"] = dataclasses.replace(previous, temperature=0.07)
        rows["likelihood only, 50 epochs"] = dataclasses.replace(previous, epochs=50)
        for weight in (1.0, 2.0, 5.0):
            rows[f"default, balance {weight:g}"] = dataclasses.replace(base, balance_weight=weight)
        rows["default, balance always"] = dataclasses.replace(base, adaptive_balance=False)
        rows["likelihood only + balance 0.3 always"] = dataclasses.replace(
            previous, balance_weight=0.3
        )
    return rows


def draw(
    dataset: ImageDataset, protocol: str, shots: int, count: int, seed: int
) -> list[EpisodeSpec]:
    """``count`` seeded 5-way episodes of one protocol (``balanced``, ``imbalanced``: alpha 2,
    ``strongly imbalanced``: alpha 0.5)."""
    sampler = build_sampler(
        "fixed" if protocol == "balanced" else "imbalanced",
        dataset.labels,
        ways=5,
        shots=shots,
        queries=15,
        total_queries=75,
        dirichlet_alpha=0.5 if protocol == "strongly imbalanced" else 2.0,
        seed=seed,
    )
    return list(sampler.take(count))


def row_result(accuracies: Sequence[float], seconds_per_episode: Sequence[float]) -> dict[str, Any]:
    """Summary (percentages) plus median seconds per episode and the per-episode accuracies."""
    stats = summarize(accuracies)
    return {
        "accuracy": 100 * stats["accuracy_mean"],
        "std": 100 * stats["accuracy_std"],
        "ci95": 100 * stats["accuracy_ci95"],
        "episodes": stats["episodes"],
        "seconds_per_episode_median": float(statistics.median(seconds_per_episode)),
        "accuracies": [float(a) for a in accuracies],
    }


def run_head(method: Method, batch: EpisodeBatch) -> dict[str, Any]:
    """A head-scope method (or support-init) on every episode at once (one ``fit_features``)."""
    run = run_method(method, batch)
    return row_result(run.accuracies, run.seconds)


def run_last(
    dataset: ImageDataset, specs: Sequence[EpisodeSpec], backbone: torch.nn.Module
) -> dict[str, Any]:
    """The paper's transductive fine-tuning at scope ``last``, one episode at a time."""
    method = TransductiveFineTuning(scope="last")
    accuracies, seconds = [], []
    bar = progress_bar(total=len(specs), desc="scope last", unit="episode")
    for spec in specs:
        episode = make_episode(dataset, spec, backbone.preprocessing)  # type: ignore[arg-type]
        start = time.perf_counter()
        logits = method(backbone, episode)
        seconds.append(time.perf_counter() - start)
        assert episode.query_targets is not None
        accuracies.append(float((logits.argmax(1) == episode.query_targets).float().mean()))
        bar.update(1)
    bar.close()
    return row_result(accuracies, seconds)


def run_easyfsl(batch: EpisodeBatch, work: Path, threads: int) -> dict[str, Any]:
    """easyfsl's methods on the same episode features (its own venv); name -> row result."""
    file = work / "episodes.pt"
    torch.save(batch.tensors(), file)
    output = work / "easyfsl.json"
    command = [
        str(EASYFSL_PYTHON),
        str(HERE / "easyfsl_methods.py"),
        "--episodes-file",
        str(file),
        "--output",
        str(output),
        "--threads",
        str(threads),
        "--methods",
        *EASYFSL_SETTINGS,
    ]
    for method, settings in EASYFSL_SETTINGS.items():
        for key, value in settings.items():
            command += ["--option", f"{method}.{key}={json.dumps(value)}"]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, check=True, env=environment)
    results = json.loads(output.read_text())["results"]
    return {
        f"easyfsl {name}": row_result(r["accuracies"], r["seconds"]) for name, r in results.items()
    }


def markdown(record: dict[str, Any]) -> str:
    """One table: rows x (protocol, shots) cells ``mean ± ci (std) [s/episode]``."""
    settings = list(record["results"])
    names: list[str] = []
    for cell in record["results"].values():
        names += [n for n in cell if n not in names]
    header = "| method | " + " | ".join(settings) + " | paper WRN-28-10 (1 / 5-shot) |"
    lines = [header, "|---" * (len(settings) + 2) + "|"]
    for name in names:
        cells = []
        for setting in settings:
            r = record["results"][setting].get(name)
            cells.append(
                "-"
                if r is None
                else f"{r['accuracy']:.2f} ± {r['ci95']:.2f} (std {r['std']:.1f}; "
                f"{1000 * r['seconds_per_episode_median']:.1f} ms; n={r['episodes']})"
            )
        paper = PAPER_WRN.get(name)
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {'-' if paper is None else f'{paper[0]} / {paper[1]}'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT / "mini-imagenet",
        image_size=224,
        episodes=1000,
        seed=0,
        cache_dir=FEATURE_CACHE,
        threads=2,
        output=REQUIRED,
        helps={"episodes": "balanced episodes"},
    )
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("--imbalanced-episodes", type=int, default=500)
    parser.add_argument(
        "--strong-imbalance-episodes",
        type=int,
        default=0,
        help="also episodes with Dirichlet(alpha = 0.5) query proportions (0 = none)",
    )
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--last-episodes", type=int, default=10, help="0 skips scope last")
    parser.add_argument("--grid", action="store_true", help="also the tuning candidates")
    parser.add_argument("--no-easyfsl", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    dataset = dataset_split(args.data_root, "mini-imagenet", args.split)
    backbone = build_backbone("efficientnet-lite0", image_size=args.image_size)
    settings: dict[str, tuple[str, int, list[EpisodeSpec]]] = {}
    protocols = (
        ("balanced", args.episodes),
        ("imbalanced", args.imbalanced_episodes),
        ("strongly imbalanced", args.strong_imbalance_episodes),
    )
    for protocol, count in protocols:
        for shots in args.shots:
            if count > 0:
                specs = draw(dataset, protocol, shots, count, args.seed)
                settings[f"{protocol} {shots}-shot"] = (protocol, shots, specs)
    embedded = embed_episodes(
        FeatureCache(args.cache_dir),
        backbone,
        dataset,
        (s for _, _, specs in settings.values() for s in specs),
    )
    features, embed_seconds = embedded.features, embedded.seconds
    methods = head_rows(args.grid)

    record: dict[str, Any] = {
        "setting": {
            "split": args.split,
            "data_root": str(args.data_root),
            "backbone": "efficientnet-lite0 (ImageNet weights; ImageNet contains these classes)",
            "image_size": args.image_size,
            "seed": args.seed,
            "ways": 5,
            "balanced_queries_per_class": 15,
            "imbalanced_total_queries": 75,
            "dirichlet_alpha": 2.0,
            "strong_imbalance_dirichlet_alpha": 0.5,
            "episodes": {name: len(specs) for name, (_, _, specs) in settings.items()},
            "last_episodes": args.last_episodes,
            **environment("torch_threads", "torch", "machine", "python"),
            "embedding_seconds_this_run": embed_seconds,
            "methods": {name: dataclasses.asdict(m) for name, m in methods.items()},
            "easyfsl_settings": None if args.no_easyfsl else EASYFSL_SETTINGS,
            "paper_wrn_28_10": PAPER_WRN,
        },
        "results": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        for name, (protocol, _shots, specs) in settings.items():
            batch = EpisodeBatch.of(features, specs)
            cell: dict[str, Any] = {}
            for row, method in methods.items():
                cell[row] = run_head(method, batch)
                print(
                    f"{name:22s} {row:32s} {cell[row]['accuracy']:6.2f} ± {cell[row]['ci95']:.2f}",
                    flush=True,
                )
            if args.last_episodes > 0 and protocol == "balanced":
                cell["transductive (last)"] = run_last(
                    dataset, specs[: args.last_episodes], backbone
                )
                # The same episodes through the default, for a paired comparison.
                cell["anyshot default, same episodes as last"] = run_head(
                    RECOMMENDED, batch.first(args.last_episodes)
                )
            if not args.no_easyfsl:
                cell.update(run_easyfsl(batch, Path(scratch), args.threads))
            record["results"][name] = cell
            write_json(args.output, record)  # what is finished survives an interruption
    table = markdown(record)
    record["markdown"] = table
    write_json(args.output, record)
    print(table)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
