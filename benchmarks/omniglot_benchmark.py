"""Omniglot from scratch (issue 3): pre-train conv-4 on the Vinyals train classes, evaluate on test.

1. Pre-training: runs ``anyshot pretrain`` (28 x 28 grey, no flip, validation on the val classes)
   unless the checkpoint's training state says the run is complete; a partial run is resumed.
2. Evaluation on the test classes: 5- and 20-way, 1- and 5-shot, 15 queries per class, seeded
   episodes (``EpisodeSampler(seed=0)``, the same episodes ``anyshot evaluate --seed 0`` draws).
   ``--part fast``: support-based initialisation and head-scope (transductive) fine-tuning on
   every episode; the test images are decoded and embedded once (eval mode, no augmentation) and
   the methods run on the cached embeddings, which is what they compute from the images anyway,
   many episodes at once (``evaluate_cached``; the first ``--verify`` episodes of each row are
   run again one per ``fit_features`` call and checked against the batched run).
   ``--part all``: fine-tuning of every parameter (paper settings, no flip) on the images of the
   first episodes of each setting, as many as ``--all-seconds`` allows.

Writes ``benchmarks/results/omniglot-scratch-{fast,all}.json``: pre-training record (config,
per-epoch history, wall time), then per setting and method the summary (mean, std, 95% CI) and
the per-episode accuracies.

    OMP_NUM_THREADS=1 python benchmarks/omniglot_benchmark.py --data-root ../shared/data/omniglot \\
        --cycles 10:0.1,20:0.01 --part fast
    OMP_NUM_THREADS=1 python benchmarks/omniglot_benchmark.py --data-root ../shared/data/omniglot \\
        --cycles 10:0.1,20:0.01 --part all --all-seconds 600
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from anyshot.backbones import load_backbone
from anyshot.backbones.base import Backbone
from anyshot.data.memory import MemoryImages
from anyshot.episodes import Episode, EpisodeSampler, EpisodeSpec
from anyshot.evaluation import EvaluationResult, evaluate, summarize
from anyshot.evaluation.cached import ItemFeatures, evaluate_cached
from anyshot.methods import FineTuning, SupportBasedInit, TransductiveFineTuning
from anyshot.methods.frozen import frozen_forward
from anyshot.methods.presets import TIM_LIKE, UNGUARDED, Method
from anyshot.pretrain import last_path
from harness.cli import DATA_ROOT, add_shared_arguments, script_parser
from harness.episodes import dataset_root, dataset_split
from harness.output import environment, write_json

SETTINGS = ((5, 1), (5, 5), (20, 1), (20, 5))
QUERIES = 15
PUBLISHED = {
    "Prototypical Networks (Snell et al. 2017)": {
        "5w1s": 98.8,
        "5w5s": 99.7,
        "20w1s": 96.0,
        "20w5s": 98.9,
    },
    "MAML (Finn et al. 2017)": {"5w1s": 98.7, "5w5s": 99.9, "20w1s": 95.8, "20w5s": 98.9},
}


FAST_METHODS: list[tuple[str, str, Method]] = [
    ("support-init", "logits", SupportBasedInit()),
    ("support-init (features)", "features", SupportBasedInit()),
    ("finetune head (paper)", "logits", FineTuning(scope="head")),
    ("transductive head (paper)", "logits", TransductiveFineTuning(scope="head")),
    ("transductive head (entropy + TIM balance)", "logits", TIM_LIKE),
    (
        "transductive head (likelihood only: the previous default)",
        "logits",
        dataclasses.replace(UNGUARDED, adaptive_balance=False, balance_weight=0.0),
    ),
    ("transductive head (unguarded: the previous default)", "logits", UNGUARDED),
    (
        "transductive head (unguarded, balance always)",
        "logits",
        dataclasses.replace(UNGUARDED, adaptive_balance=False),
    ),
]
"""``(row label, embedding, method)`` of ``--part fast``, in the order they run."""


def _settings(args: argparse.Namespace) -> list[tuple[int, int]]:
    """The ``(ways, shots)`` of ``--settings``, in :data:`SETTINGS` order."""
    chosen = args.settings.split(",")
    unknown = sorted(set(chosen) - {f"{w}w{s}s" for w, s in SETTINGS})
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from 5w1s,5w5s,20w1s,20w5s")
    return [(w, s) for w, s in SETTINGS if f"{w}w{s}s" in chosen]


def pretrain_command(args: argparse.Namespace, resume: bool) -> list[str]:
    """The ``anyshot pretrain`` command line of this benchmark."""
    command = [
        sys.executable,
        "-m",
        "anyshot",
        "pretrain",
        "--dataset",
        "omniglot",
        "--data-root",
        str(args.data_root),
        "--split",
        "train",
        "--arch",
        "conv4",
        "--image-size",
        "28",
        "--channels",
        "1",
        "--cycles",
        args.cycles,
        "--seed",
        "0",
        "--output",
        str(args.checkpoint),
    ]
    return [*command, "--resume"] if resume else command


def run_pretraining(args: argparse.Namespace) -> dict[str, Any]:
    """Pre-train (or resume, or skip when complete); the run's record.

    A checkpoint without its training state (a fresh clone: ``*.last.pt`` is not committed) is
    used as it is, recorded from the summary it carries (history up to its best epoch).
    """
    state_file = last_path(args.checkpoint)
    state = _training_state(state_file)
    if state is None and args.checkpoint.exists():
        saved = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        summary: dict[str, Any] = saved["extra"]["pretrain"]
        return {
            "command": " ".join(pretrain_command(args, resume=False)[1:]),
            "config": summary["config"],
            "epochs": None,
            "best_epoch": summary["epoch"],
            "best_val_accuracy": summary["val_accuracy"],
            "history": summary["history"],
            "train_seconds_sum_of_epochs": None,
            "wall_seconds_this_invocation": None,
            "note": f"{state_file.name} absent: recorded from the checkpoint's own summary",
        }
    wall = None
    if state is None or state["epoch"] < sum(int(c.split(":")[0]) for c in args.cycles.split(",")):
        command = pretrain_command(args, resume=state is not None)
        print("running:", " ".join(command), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        wall = time.perf_counter() - start
        state = _training_state(state_file)
    assert state is not None
    return {
        "command": " ".join(pretrain_command(args, resume=False)[1:]),
        "config": state["config"],
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_metric"],
        "history": state["history"],
        "train_seconds_sum_of_epochs": sum(h["seconds"] for h in state["history"]),
        "wall_seconds_this_invocation": wall,
    }


def _training_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    state: dict[str, Any] = data["extra"]["training_state"]
    return state


def _episode(spec: EpisodeSpec, images: MemoryImages, names: list[str]) -> Episode:
    """The episode of ``spec`` on in-memory images."""
    support = [i for items in spec.support for i in items]
    query = [i for items in spec.query for i in items]
    return Episode(
        images.batch(support),
        [names[c] for c, items in zip(spec.classes, spec.support, strict=True) for _ in items],
        images.batch(query),
        [names[c] for c, items in zip(spec.classes, spec.query, strict=True) for _ in items],
        classes=[names[c] for c in spec.classes],
    )


def _record(
    result: EvaluationResult, ways: int, shots: int, method: str, seconds: float
) -> dict[str, Any]:
    accuracies = [r["accuracy"] for r in result.records]
    return {
        "ways": ways,
        "shots": shots,
        "queries": QUERIES,
        "method": method,
        "summary": dict(summarize(accuracies)),
        "seconds": seconds,
        "accuracies": [round(a, 4) for a in accuracies],
    }


def _keep(out: list[Any], save: Any, record: dict[str, Any]) -> None:
    """Append ``record``, save everything so far and print one line."""
    out.append(record)
    save(out)
    summary = record["summary"]
    print(
        f"{record['ways']}-way {record['shots']}-shot {record['method']}: "
        f"{100 * summary['accuracy_mean']:.2f} ± {100 * summary['accuracy_ci95']:.2f} on "
        f"{summary['episodes']} episodes ({record['seconds']:.0f} s)",
        flush=True,
    )


def fast_part(
    args: argparse.Namespace, backbone: Backbone, test: MemoryImages, save: Any
) -> list[Any]:
    """Support-init and head-scope methods on cached embeddings, every episode, batched.

    The methods run through :func:`~anyshot.evaluation.cached.evaluate_cached` (fixed-shape
    episodes trained together, each with its own gradients); the first ``--verify`` episodes
    of every row are also run one episode per ``fit_features`` call and the largest
    per-episode accuracy difference is recorded (``verify``).
    """
    start = time.perf_counter()
    embeddings = {}
    for embedding in ("logits", "features"):
        backbone.embedding = embedding
        embeddings[embedding] = frozen_forward(backbone, _all_images(test), batch_size=512)
    backbone.embedding = "logits"
    print(f"embedded {len(test)} test images in {time.perf_counter() - start:.0f} s", flush=True)
    everything = list(range(len(test)))
    out: list[Any] = []
    for ways, shots in _settings(args):
        sampler = EpisodeSampler(
            test.labels.numpy(), ways=ways, shots=shots, queries=QUERIES, seed=0
        )
        specs = list(sampler.take(args.episodes))
        for label, embedding, method in FAST_METHODS:
            features = ItemFeatures(everything, embeddings[embedding])
            begin = time.perf_counter()
            result = evaluate_cached(method, features, specs)
            record = _record(result, ways, shots, label, time.perf_counter() - begin)
            record["verify"] = _verify(method, features, specs[: args.verify], result)
            _keep(out, save, record)
    return out


def _verify(
    method: Method, features: ItemFeatures, specs: list[EpisodeSpec], batched: EvaluationResult
) -> dict[str, Any]:
    """Run ``specs`` one per ``fit_features`` call; how far their accuracies are from the
    batched ones."""
    if not specs:
        return {"episodes": 0}
    alone = evaluate_cached(method, features, specs, episodes_per_chunk=1)
    differences = [
        abs(a["accuracy"] - b["accuracy"])
        for a, b in zip(alone.records, batched.records[: len(specs)], strict=True)
    ]
    return {
        "episodes": len(specs),
        "max_accuracy_difference": max(differences),
        "episodes_that_differ": sum(d > 0 for d in differences),
    }


def all_part(
    args: argparse.Namespace, backbone: Backbone, test: MemoryImages, save: Any
) -> list[Any]:
    """Scope ``all`` (paper settings, no flip) on the images of the first episodes, batch-norm
    in training mode (``norm_statistics="batch"``: how the table's rows were measured)."""
    methods = [
        ("finetune all (paper)", FineTuning(scope="all", flip=False, norm_statistics="batch")),
        (
            "transductive all (paper)",
            TransductiveFineTuning(scope="all", flip=False, norm_statistics="batch"),
        ),
    ]
    settings = _settings(args)
    budget = args.all_seconds / (len(settings) * len(methods))
    names = list(test.class_names)
    out: list[Any] = []
    for ways, shots in settings:
        sampler = EpisodeSampler(
            test.labels.numpy(), ways=ways, shots=shots, queries=QUERIES, seed=0
        )
        for label, method in methods:
            begin = time.perf_counter()

            episodes = _timed(sampler, args.episodes, test, names, begin + budget)
            result = evaluate(method, backbone, episodes)
            _keep(out, save, _record(result, ways, shots, label, time.perf_counter() - begin))
    return out


def _timed(
    sampler: EpisodeSampler, count: int, test: MemoryImages, names: list[str], deadline: float
) -> Iterator[Episode]:
    """Up to ``count`` episodes, none started after ``deadline`` (at least one)."""
    for index, spec in enumerate(sampler.take(count)):
        if index and time.perf_counter() > deadline:
            return
        yield _episode(spec, test, names)


def _all_images(test: MemoryImages) -> torch.Tensor:
    return test.batch(torch.arange(len(test)))


def main() -> None:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT / "omniglot",
        episodes=1000,
        results=Path("benchmarks/results"),
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=Path("benchmarks/checkpoints/omniglot-conv4.pt")
    )
    parser.add_argument(
        "--cycles",
        default="10:0.1,20:0.01",
        help="pre-training schedule (the paper's is 40:0.1,80:0.01)",
    )
    parser.add_argument("--part", choices=["fast", "all"], default="fast")
    parser.add_argument(
        "--all-seconds",
        type=float,
        default=600.0,
        help="time budget of --part all, shared across settings and methods",
    )
    parser.add_argument(
        "--settings",
        default="5w1s,5w5s,20w1s,20w5s",
        help="comma-separated subset of 5w1s,5w5s,20w1s,20w5s (both parts)",
    )
    parser.add_argument(
        "--verify",
        type=int,
        default=20,
        help="--part fast: also run the first N episodes of every row one at a time and "
        "record the largest accuracy difference from the batched run",
    )
    args = parser.parse_args()
    args.data_root = dataset_root(args.data_root, "omniglot")

    started = time.perf_counter()
    pretraining = run_pretraining(args)
    backbone = load_backbone(args.checkpoint).eval()
    dataset = dataset_split(args.data_root, "omniglot", "test")
    test = MemoryImages.from_dataset(dataset, backbone.preprocessing)
    path = args.results / f"omniglot-scratch-{args.part}.json"

    def save(results: list[Any]) -> None:
        """Rewrite the results file (atomically) after every method: nothing finished is lost."""
        write_json(
            path,
            {
                "benchmark": "Omniglot from scratch (issue 3)",
                "checkpoint": str(args.checkpoint),
                "split": "test (Vinyals), seeded episodes seed 0, 15 queries per class",
                "pretraining": pretraining,
                "published": PUBLISHED,
                "results": results,
                "evaluation_wall_seconds": time.perf_counter() - started,
                **environment("torch_threads"),
            },
        )

    run = fast_part if args.part == "fast" else all_part
    run(args, backbone, test, save)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
