"""The any-shot curve (issue 16): accuracy from 1 to 500 labelled images per class.

A user saw the default lose to a logistic regression on frozen features once there were many
labels (10 classes, 100 images each: 77.0% vs 91.0%). This script measures the curve on val
classes, every method on the same seeded episodes of each cell, on cached frozen-backbone
features (the domains of ``realistic_grid.py``: mini-ImageNet at 224 px, Omniglot at 84 px).

Cells (name ``<domain>-<ways>w<shots>s``): K-way episodes, ``shots`` labelled images per class
and a held-out query set of a fixed number of images per class (the unlabelled images the
default is given, as ``anyshot classify`` gives it the images to classify):

* ``mini``: 10 and 16 ways (mini-ImageNet val has 16 classes), shots 1, 5, 20, 100, 500 (of 600
  images per class), 10 queries per class;
* ``omni``: 10 and 20 ways, shots 1, 5, 15 (of 20 images per class), 5 queries per class.

Methods (``--methods``):

* ``support-init``: :data:`~anyshot.methods.presets.SUPPORT_INIT` (cosine to class means);
* ``recommended``: :data:`~anyshot.methods.presets.RECOMMENDED`, the default, given the queries;
* ``recommended-inductive``: :data:`~anyshot.methods.presets.RECOMMENDED_INDUCTIVE`;
* ``logistic-regression``: the practitioner's anchor (:func:`logistic_regression`);
* the variants of :data:`VARIANTS` (candidate rules for many labels): ``gate->inductive`` is
  the default with :data:`~anyshot.methods.presets.RECOMMENDED_INDUCTIVE`'s answer instead of
  support-init's in the episodes its gate closes (emulated here: the default's ``gated`` mask
  picks the inductive head's logits); ``inductive-*`` change one setting of the inductive head.

The variants were compared on fewer episodes (``--episode-counts
1=40,5=40,15=40,20=30,100=10,500=4``, ``benchmarks/results/any-shot-curve-variants-val.json``).

Episodes per cell: ``--episode-counts`` (``shots=count`` pairs; default 100 up to 20 shots, 20
at 100 shots, 10 at 500), or ``--episodes`` for one count everywhere. Cell ``c``'s episode ``i``
is drawn from ``PCG64([seed_c, i])`` with ``seed_c`` a hash of ``--seed`` and the cell's name.
Accuracy: mean and 95% CI (``1.96 std / sqrt(n)``) over episodes, percent; the paired
difference of each method to the logistic regression with its 95% CI; seconds per episode (a
batched method's batch wall time / its episodes; cached features, embedding excluded).

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/any_shot_curve.py \\
        --output benchmarks/results/any-shot-curve-val.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer

from anyshot.evaluation import summarize
from anyshot.evaluation.cached import ItemFeatures
from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import (
    RECOMMENDED,
    RECOMMENDED_INDUCTIVE,
    SUPPORT_INIT,
    Method,
)
from anyshot.protocols import build_sampler
from harness.cli import DATA_ROOT, FEATURE_CACHE, add_shared_arguments, script_parser
from harness.episodes import EpisodeBatch, dataset_split, embed_episodes
from harness.output import cell_table, environment, write_json
from realistic_grid import DOMAINS

#: ``(support [E, S, D], targets [E, S], query [E, Q, D], ways) -> query logits [E, Q, K]``
EpisodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]

WAYS = {"mini": (10, 16), "omni": (10, 20)}
SHOTS = {"mini": (1, 5, 20, 100, 500), "omni": (1, 5, 15)}
QUERIES = {"mini": 10, "omni": 5}
EPISODE_COUNTS = "1=100,5=100,15=100,20=100,100=20,500=10"
ANCHOR = "logistic-regression"
#: The logistic regression's inverse L2 strengths searched by cross-validation, and the one
#: used when a class has fewer than :data:`CV_FOLDS` labelled images (on 30 val episodes of
#: mini 10w1s and omni 20w1s, C = 0.1 to 100 were within 2 points of each other and standardised
#: rows 20 points worse: a 1-shot support's per-feature spread is noise).
C_GRID = (0.1, 1.0, 10.0, 100.0)
FIXED_C = 10.0
CV_FOLDS = 3


def preset_fn(method: Method) -> EpisodeFn:
    """A head-scope preset's batched ``fit_features`` as an :data:`EpisodeFn`."""

    def run(
        support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, ways: int
    ) -> torch.Tensor:
        chunk = max(1, int(support.shape[0]))
        return method.fit_features(
            support, targets, query, ways=ways, episodes_per_chunk=chunk
        ).query_logits

    return run


def fitted_regression(support: np.ndarray, targets: np.ndarray) -> Pipeline:
    """A multinomial L2 logistic regression on L2-normalised rows ``[S, D]`` (lbfgs): C by
    stratified :data:`CV_FOLDS`-fold cross-validation over :data:`C_GRID` (accuracy) when every
    class has at least :data:`CV_FOLDS` images, else :data:`FIXED_C`."""
    pipeline = make_pipeline(Normalizer(), LogisticRegression(C=FIXED_C, max_iter=1000))
    if np.bincount(targets).min() < CV_FOLDS:
        return pipeline.fit(support, targets)
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0)
    search = GridSearchCV(pipeline, {"logisticregression__C": list(C_GRID)}, cv=folds)
    return search.fit(support, targets).best_estimator_


def logistic_regression(
    support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, ways: int
) -> torch.Tensor:
    """The anchor, episode by episode (:func:`fitted_regression`); logits ``[E, Q, K]``."""
    logits = []
    for s, t, q in zip(support, targets, query, strict=True):
        model = fitted_regression(s.double().numpy(), t.numpy())
        logits.append(torch.from_numpy(model.decision_function(q.double().numpy())).float())
    return torch.stack(logits)


def gate_to_inductive(transductive: Method, inductive: Method) -> EpisodeFn:
    """``transductive``, with ``inductive``'s answer (not support-init's) in the episodes its
    gate closed (the guard's fallback stays support-init)."""

    def run(
        support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, ways: int
    ) -> torch.Tensor:
        chunk = max(1, int(support.shape[0]))
        head = transductive.fit_features(
            support, targets, query, ways=ways, episodes_per_chunk=chunk
        )
        logits = head.query_logits.clone()
        gated = head.gated if head.gated is not None else torch.zeros(len(logits), dtype=torch.bool)
        if bool(gated.any()):
            picked = gated.nonzero().squeeze(1)
            logits[gated] = preset_fn(inductive)(
                support[picked], targets[picked], query[picked], ways
            )
        return logits

    return run


#: Candidate rules for many labels (name -> episode function): the default with the inductive
#: head as the gate's fallback, and the inductive head with more epochs, a lower learning rate
#: or a lower temperature (:func:`dataclasses.replace` of the preset).
VARIANTS: dict[str, EpisodeFn] = {
    "gate->inductive": gate_to_inductive(RECOMMENDED, RECOMMENDED_INDUCTIVE),
    "inductive-50ep": preset_fn(dataclasses.replace(RECOMMENDED_INDUCTIVE, epochs=50)),
    "inductive-100ep": preset_fn(dataclasses.replace(RECOMMENDED_INDUCTIVE, epochs=100)),
    "inductive-lr3e-3": preset_fn(dataclasses.replace(RECOMMENDED_INDUCTIVE, lr=3e-3)),
    "inductive-T0.05": preset_fn(dataclasses.replace(RECOMMENDED_INDUCTIVE, temperature=0.05)),
}

METHODS: dict[str, EpisodeFn] = {
    "support-init": preset_fn(SUPPORT_INIT),
    "recommended": preset_fn(RECOMMENDED),
    "recommended-inductive": preset_fn(RECOMMENDED_INDUCTIVE),
    ANCHOR: logistic_regression,
    **VARIANTS,
}


def cell_seed(base: int, name: str) -> int:
    """A cell's stream seed: a hash of ``--seed`` and the cell's name."""
    digest = hashlib.sha256(f"{int(base)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def parse_counts(text: str) -> dict[int, int]:
    """``"1=100,500=10"`` -> ``{1: 100, 500: 10}`` (episodes per shots)."""
    pairs = (item.split("=") for item in text.split(",") if item.strip())
    return {int(shots): int(count) for shots, count in pairs}


def run_cell(
    functions: dict[str, EpisodeFn], batch: EpisodeBatch, chunk: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Method name -> per-episode accuracies and seconds on ``batch``, in chunks of ``chunk``
    episodes."""
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, fn in functions.items():
        accuracies, seconds = [], []
        for start in range(0, len(batch), chunk):
            part = slice(start, start + chunk)
            began = time.perf_counter()
            logits = fn(batch.support[part], batch.targets[part], batch.query[part], batch.ways)
            elapsed = time.perf_counter() - began
            correct = (logits.argmax(-1) == batch.query_targets[part]).double().mean(-1)
            accuracies += correct.tolist()
            seconds += [elapsed / len(correct)] * len(correct)
        results[name] = (np.asarray(accuracies), np.asarray(seconds))
    return results


def summaries(runs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Per method: accuracy mean, CI (percent), seconds per episode, paired difference to the
    anchor (when it ran) and per-episode accuracies."""
    out: dict[str, dict[str, Any]] = {}
    for name, (accuracies, seconds) in runs.items():
        stats = summarize(accuracies)
        row: dict[str, Any] = {
            "accuracy": 100 * stats["accuracy_mean"],
            "ci95": 100 * stats["accuracy_ci95"],
            "episodes": stats["episodes"],
            "seconds_per_episode": float(np.mean(seconds)),
        }
        if ANCHOR in runs:
            paired = summarize(accuracies - runs[ANCHOR][0])
            row["minus_anchor"] = 100 * paired["accuracy_mean"]
            row["minus_anchor_ci95"] = 100 * paired["accuracy_ci95"]
        row["accuracies"] = [round(float(a), 6) for a in accuracies]
        out[name] = row
    return out


def markdown(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Cells x methods: accuracy mean ± CI (%), seconds per episode; with the anchor, the
    paired difference to it (± its CI)."""

    def entry(name: str, s: dict[str, Any]) -> str:
        text = f"{s['accuracy']:.1f} ± {s['ci95']:.1f} · {s['seconds_per_episode']:.3g} s"
        if "minus_anchor" in s and name != ANCHOR:
            text += f" [{s['minus_anchor']:+.1f} ± {s['minus_anchor_ci95']:.1f}]"
        return text

    note = (
        "accuracy % (mean ± 95% CI) · s/episode; [paired difference to the logistic "
        "regression ± CI]"
    )
    return "\n".join(cell_table(results, note, entry))


def domain_cells(
    args: Any, name: str, counts: dict[int, int]
) -> tuple[list[tuple[str, list[Any]]], Any]:
    """The domain's cells selected by ``--shots`` / ``--ways`` (name, episodes) and its
    dataset."""
    data = dataset_split(args.data_root, DOMAINS[name].dataset, args.split)
    labels = np.asarray(data.labels)
    cells = []
    for ways in WAYS[name]:
        for shots in SHOTS[name]:
            if (args.ways and ways not in args.ways) or (args.shots and shots not in args.shots):
                continue
            cell = f"{name}-{ways}w{shots}s"
            count = args.episodes or counts[shots]
            sampler = build_sampler(
                "fixed",
                labels,
                ways=ways,
                shots=shots,
                queries=QUERIES[name],
                seed=cell_seed(args.seed, cell),
            )
            cells.append((cell, list(sampler.take(count))))
    return cells, data


def run_domain(
    args: Any, name: str, functions: dict[str, EpisodeFn], record: dict[str, Any]
) -> None:
    """Every selected cell of one domain, written into ``record`` (and the output file)."""
    cells, data = domain_cells(args, name, parse_counts(args.episode_counts))
    cache = FeatureCache(args.cache_dir, channels_last=DOMAINS[name].channels_last)
    every = [spec for _, specs in cells for spec in specs]
    features: ItemFeatures = embed_episodes(cache, DOMAINS[name].network(), data, every).features
    for cell, specs in cells:
        started = time.perf_counter()
        runs = run_cell(functions, EpisodeBatch.of(features, specs), args.chunk)
        record["results"][cell] = summaries(runs)
        record["markdown"] = markdown(record["results"])
        write_json(args.output, record)  # what is finished survives an interruption
        print(f"{cell}: {time.perf_counter() - started:.0f} s", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> Any:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT,
        episodes=0,
        seed=0,
        cache_dir=FEATURE_CACHE,
        threads=1,
        output=Path("benchmarks/results/any-shot-curve-val.json"),
        helps={"episodes": "episodes in every cell (default 0: --episode-counts)"},
        split="val",
    )
    parser.add_argument(
        "--episode-counts",
        default=EPISODE_COUNTS,
        help=f"episodes per cell by shots, shots=count pairs (default {EPISODE_COUNTS})",
    )
    parser.add_argument("--domains", default="mini,omni", help="comma-separated: mini, omni")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, of {', '.join(METHODS)} (default all)",
    )
    parser.add_argument("--shots", type=int, nargs="*", help="only these shots (default all)")
    parser.add_argument("--ways", type=int, nargs="*", help="only these ways (default all)")
    parser.add_argument("--chunk", type=int, default=50, help="episodes per batched call")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {list(METHODS)}")
    functions = {m: METHODS[m] for m in args.methods.split(",")}
    started = time.perf_counter()
    record: dict[str, Any] = {
        "setting": {
            "split": args.split,
            "seed": args.seed,
            "episode_counts": args.episode_counts,
            "episodes": args.episodes,
            "ways": WAYS,
            "shots": SHOTS,
            "queries_per_class": QUERIES,
            "methods": list(functions),
            "presets": {
                "recommended": dataclasses.asdict(RECOMMENDED),
                "recommended-inductive": dataclasses.asdict(RECOMMENDED_INDUCTIVE),
            },
            "logistic_regression": {"C_grid": C_GRID, "fixed_C": FIXED_C, "folds": CV_FOLDS},
            "domains": {n: dataclasses.asdict(DOMAINS[n]) for n in args.domains.split(",")},
            **environment("torch_threads", "OMP_NUM_THREADS", "torch", "machine", "python"),
        },
        "results": {},
    }
    for name in args.domains.split(","):
        run_domain(args, name.strip(), functions, record)
    record["setting"]["seconds_total"] = time.perf_counter() - started
    write_json(args.output, record)
    print(record["markdown"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
