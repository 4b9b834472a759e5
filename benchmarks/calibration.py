"""Calibration study (issue 17): are the default's confidences what its accuracy is?

A prediction's confidence is its largest softmax probability; the expected calibration error
(ECE, 15 equal-width bins, :mod:`anyshot.calibration`) averages ``|accuracy - confidence|`` over
the bins. The default (:data:`anyshot.methods.presets.RECOMMENDED`, transductive fine-tuning of
the cosine head, logits ``cos / T + log pi`` with ``T = 0.1``) is trained with a sharp
temperature that makes the argmax work, not the confidences.

Cells: 5-way, 1 and 5 shots, on the domains of ``realistic_grid.py`` (mini-ImageNet at 224 px,
Omniglot at 84 px, frozen EfficientNet-Lite0 rows from the shared FeatureCache), and the query
sets of its cells of the same names (so the same episodes for the same ``--seed``):
``balanced`` (15 queries per class) and ``dirichlet2`` / ``dirichlet0.5`` (query counts from
Dirichlet(alpha) proportions, 75 queries on mini-ImageNet, 25 on Omniglot).

For every cell the default's query logits are computed once with its confidence temperature
set to 1 (the uncalibrated head; ``confidence_temperature`` only divides the final logits, so
the predictions are the same) together with which episodes a safeguard answered with
support-based initialisation (``FittedHead.fallback``).

``--split val`` (the study) then chooses the calibration on validation classes: a temperature
``tau`` dividing the final logits, fitted by minimising the negative log-likelihood of the
query labels with every cell weighted equally (:func:`fit_temperature`; NLL is convex in
``1 / tau``), pooled over both domains (the product cannot know the domain). Candidates, each
fitted the same way on its own group of queries: one ``tau`` for everything; one for trained
and one for fallback episodes; one per shot count. Every candidate's ECE is reported per cell.

``--split test`` (the report, once the value is frozen in the presets) gives, per cell,
accuracy and the ECE of the uncalibrated and of the shipped (calibrated) confidences, the latter
with a 95% percentile-bootstrap interval over the cell's episodes (:func:`ece_interval`: how
far another draw of as many episodes could put it).

``--cells PATTERNS`` adds the cells of ``realistic_grid.py`` those patterns select (its names,
episodes and episode counts unless ``--episodes`` is given; e.g. ``'*-present-*-k5'``, the query
sets of a few of many classes where the default's Tsallis head answers); ``--split test`` only
(the val fits pool 5-way logits). The present-class files of ``benchmarks/results/``:

    CELLS='mini-present-*-k3,mini-present-*-k5,omni-present-*w1s-k3,omni-present-*w1s-k5,omni-present-*w5s-k3,omni-present-*w5s-k5'
    PYTHONPATH=src:benchmarks python benchmarks/calibration.py --split test --episodes 100 \
        --threads 1 --cells "$CELLS" --output benchmarks/results/calibration-test-present.json
    # the default before its Tsallis head: the same command in a worktree of afc7492
    git worktree add W afc7492 && cp benchmarks/calibration.py W/benchmarks/ && cd W && \
        PYTHONPATH=src:benchmarks python benchmarks/calibration.py --split test --episodes 100 \
        --threads 2 --cells "$CELLS" --data-root /abs/path/to/data \
        --output ../benchmarks/results/calibration-test-present-previous.json

    OMP_NUM_THREADS=1 PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/calibration.py \\
        --split val --output benchmarks/results/calibration-val.json
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyshot.calibration import calibration_bins
from anyshot.evaluation import summarize
from anyshot.evaluation.cached import ItemFeatures, episode_tensors, plan_batches
from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import RECOMMENDED, SUPPORT_INIT, Method
from harness.cli import DATA_ROOT, FEATURE_CACHE, add_shared_arguments, script_parser
from harness.episodes import dataset_split, embed_episodes
from harness.output import environment, write_json
from realistic_grid import DOMAINS, Cell, grid, select

WAYS = 5
SHOTS = (1, 5)
#: Queries per episode of the imbalanced cells, per domain (as ``realistic_grid.py``).
DIRICHLET_QUERIES = {"mini": 75, "omni": 25}
ALPHAS = (2.0, 0.5)
#: Method name -> (uncalibrated, shipped): the default and support-init, whose answers the
#: default gives in the episodes a safeguard hands to it.
METHODS: dict[str, tuple[Method, Method]] = {
    "default": (
        dataclasses.replace(
            RECOMMENDED,
            confidence_temperature=1.0,
            fallback_temperature=1.0,
            fallback_shots_power=0.0,
            confidence_shots_power=0.0,
            confidence_similarity_slope=0.0,
            confidence_query_slope=0.0,
            tsallis_confidence_temperature=None,
            tsallis_confidence_shots_power=0.0,
        ),
        RECOMMENDED,
    ),
    "support-init": (
        dataclasses.replace(SUPPORT_INIT, confidence_temperature=1.0, confidence_shots_power=0.0),
        SUPPORT_INIT,
    ),
}


@dataclasses.dataclass(frozen=True)
class CellLogits:
    """One cell's query predictions, every query of every episode in a row.

    Attributes:
        logits: ``[N, K]`` query logits of the uncalibrated default.
        targets: ``[N]`` way indices.
        fallback: ``[N]`` bool: the query's episode was answered by support-init.
        episode: ``[N]`` the query's episode index.
        shots: labelled images per class.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    fallback: torch.Tensor
    episode: torch.Tensor
    shots: int

    @property
    def correct(self) -> torch.Tensor:
        """``[N]`` bool: the argmax is the label."""
        return self.logits.argmax(-1) == self.targets

    def accuracy(self) -> dict[str, float]:
        """Mean per-episode accuracy and its 95% CI half-width (%)."""
        episodes = int(self.episode.max()) + 1
        right = torch.zeros(episodes).index_add_(0, self.episode, self.correct.float())
        count = torch.zeros(episodes).index_add_(0, self.episode, torch.ones(len(self.episode)))
        stats = summarize((right / count).tolist())
        return {"mean": 100 * stats["accuracy_mean"], "ci95": 100 * stats["accuracy_ci95"]}


def cells(episodes: int) -> list[Cell]:
    """The 5-way cells of both domains (see the module docstring)."""
    chosen: list[Cell] = []
    for domain, total in DIRICHLET_QUERIES.items():
        for shots in SHOTS:
            chosen.append(
                Cell(
                    f"{domain}-balanced-5w{shots}s",
                    domain,
                    "balanced",
                    WAYS,
                    shots,
                    episodes,
                    queries_per_class=15,
                )
            )
            for alpha in ALPHAS:
                name = f"{domain}-dirichlet{alpha:g}-5w{shots}s"
                chosen.append(
                    Cell(
                        name,
                        domain,
                        "dirichlet",
                        WAYS,
                        shots,
                        episodes,
                        total_queries=total,
                        alpha=alpha,
                    )
                )
    return chosen


def cell_logits(
    method: Method, features: ItemFeatures, specs: list[Any], shots: int, ways: int = WAYS
) -> CellLogits:
    """``method``'s query logits and fallback mask on every episode of ``specs``."""
    parts: list[tuple[torch.Tensor, ...]] = []
    for batch in plan_batches(specs):
        support, targets, query, query_targets = episode_tensors(
            features, [specs[i] for i in batch]
        )
        fitted = method.fit_features(support, targets, query, ways=ways)
        fallback = torch.zeros(len(batch), dtype=torch.bool)
        if fitted.fallback is not None:
            fallback = fitted.fallback
        queries = query.shape[1]
        episode = torch.tensor(batch).repeat_interleave(queries)
        parts.append(
            (
                fitted.query_logits.reshape(-1, ways),
                query_targets.reshape(-1),
                fallback.repeat_interleave(queries),
                episode,
            )
        )
    logits, targets, fallback, episode = (torch.cat(p) for p in zip(*parts, strict=True))
    return CellLogits(logits, targets, fallback, episode, shots)


def ece(logits: torch.Tensor, targets: torch.Tensor, tau: torch.Tensor | float = 1.0) -> float:
    """ECE (%) of the confidences of ``logits [N, K] / tau`` (``tau`` a float or ``[N]``)."""
    scale = torch.as_tensor(tau, dtype=torch.float64).reshape(-1, 1)
    confidence = (logits.double() / scale).softmax(-1).amax(-1)
    return 100 * calibration_bins(confidence, logits.argmax(-1) == targets).ece()


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> float:
    """The ``tau`` minimising the ``weights``-weighted NLL of ``softmax(logits / tau)``.

    ``logits [N, K]``, ``targets [N]``, ``weights [N]``. NLL is convex in ``beta = 1 / tau``:
    golden-section search on ``beta`` in ``[1e-3, 10]``.
    """
    z, w = logits.double(), weights.double() / weights.sum()

    def nll(beta: float) -> float:
        log_p = (beta * z).log_softmax(-1).gather(1, targets[:, None]).squeeze(1)
        return float(-(w * log_p).sum())

    low, high = 1e-3, 10.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(a) < nll(b):
            high = b
        else:
            low = a
    return 1.0 / ((low + high) / 2)


#: Candidate calibrations: name -> which group each query belongs to (one ``tau`` per group).
GROUPINGS: dict[str, Callable[[CellLogits], torch.Tensor]] = {
    "one temperature": lambda c: torch.zeros(len(c.targets), dtype=torch.long),
    "trained / fallback": lambda c: c.fallback.long(),
    "per shots": lambda c: torch.full((len(c.targets),), SHOTS.index(c.shots)),
}


def candidate(name: str, data: dict[str, CellLogits]) -> dict[str, Any]:
    """Fit grouping ``name`` on every cell of ``data`` (cells weighted equally); its ``tau`` per
    group and the ECE (%) per cell."""
    group_of = {cell: GROUPINGS[name](c) for cell, c in data.items()}
    logits = torch.cat([c.logits for c in data.values()])
    targets = torch.cat([c.targets for c in data.values()])
    weights = torch.cat([torch.full((len(c.targets),), 1 / len(c.targets)) for c in data.values()])
    groups = torch.cat(list(group_of.values()))
    taus = {
        int(g): fit_temperature(logits[groups == g], targets[groups == g], weights[groups == g])
        for g in groups.unique()
    }
    per_cell = {
        cell: ece(c.logits, c.targets, torch.tensor([taus[int(g)] for g in group_of[cell]]))
        for cell, c in data.items()
    }
    return {"tau": taus, "ece": per_cell, "max_ece": max(per_cell.values())}


#: Resamples of :func:`ece_interval`.
BOOTSTRAP = 2000


def ece_interval(data: CellLogits, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval (%) of a cell's pooled ECE, resampling its episodes
    with replacement (:data:`BOOTSTRAP` times): the spread a finite draw of episodes gives."""
    episodes = int(data.episode.max()) + 1
    members = [torch.nonzero(data.episode == e).squeeze(1) for e in range(episodes)]
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(BOOTSTRAP):
        drawn = torch.randint(episodes, (episodes,), generator=generator)
        rows = torch.cat([members[int(e)] for e in drawn])
        values.append(ece(data.logits[rows], data.targets[rows]))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def cell_row(data: CellLogits, shipped: CellLogits) -> dict[str, Any]:
    """Accuracy, fallback share and ECE before (uncalibrated) and after (shipped) of a cell."""
    if not torch.equal(data.logits.argmax(-1), shipped.logits.argmax(-1)):
        raise RuntimeError("the calibrated default predicts other classes than the uncalibrated")
    episodes = int(data.episode.max()) + 1
    fallen = torch.zeros(episodes, dtype=torch.bool).index_fill_(
        0, data.episode[data.fallback], True
    )
    return {
        "episodes": episodes,
        "queries": len(data.targets),
        "accuracy": data.accuracy(),
        "fallback_episodes": int(fallen.sum()),
        "ece_before": ece(data.logits, data.targets),
        "ece_after": ece(shipped.logits, shipped.targets),
        "ece_after_ci95": ece_interval(shipped),
        "ece_before_trained": ece(data.logits[~data.fallback], data.targets[~data.fallback])
        if bool((~data.fallback).any())
        else None,
        "ece_before_fallback": ece(data.logits[data.fallback], data.targets[data.fallback])
        if bool(data.fallback.any())
        else None,
    }


def markdown(rows: dict[str, dict[str, Any]], candidates: dict[str, Any]) -> str:
    """The per-cell table, and on val the candidates' ECE per cell."""
    lines = [
        "| cell | episodes | accuracy (%) | fallback episodes | ECE before (%) | ECE after (%) "
        "| ECE after, 95% bootstrap interval |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell, row in rows.items():
        acc, (low, high) = row["accuracy"], row["ece_after_ci95"]
        lines.append(
            f"| {cell} | {row['episodes']} | {acc['mean']:.1f} ± {acc['ci95']:.1f} | "
            f"{row['fallback_episodes']} | {row['ece_before']:.1f} | {row['ece_after']:.1f} "
            f"| {low:.1f}-{high:.1f} |"
        )
    if candidates:
        names = list(candidates)
        lines += ["", "| cell | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        taus = [", ".join(f"{t:.2f}" for t in candidates[n]["tau"].values()) for n in names]
        lines.append("| tau | " + " | ".join(taus) + " |")
        for cell in rows:
            values = [f"{candidates[n]['ece'][cell]:.1f}" for n in names]
            lines.append(f"| {cell} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def parse_args() -> Any:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT,
        episodes=300,
        seed=0,
        cache_dir=FEATURE_CACHE,
        threads=1,
        output=Path("benchmarks/results/calibration-val.json"),
        helps={"episodes": "episodes per cell (default 300)"},
        split="val",
    )
    parser.add_argument(
        "--cells", help="also these realistic_grid.py cells (comma-separated patterns)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, of {', '.join(METHODS)} (default: all)",
    )
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or not args.methods:
        given = ", ".join(unknown) or "none given"
        parser.error(f"--methods: {given}; choose from {', '.join(METHODS)}")
    return args


def collect(args: Any) -> dict[str, dict[str, tuple[CellLogits, CellLogits]]]:
    """Method -> cell -> the uncalibrated and the shipped method's query logits."""
    found: dict[str, dict[str, tuple[CellLogits, CellLogits]]] = {m: {} for m in args.methods}
    datasets = {n: dataset_split(args.data_root, d.dataset, args.split) for n, d in DOMAINS.items()}
    chosen = all_cells(args, {n: data.num_classes for n, data in datasets.items()})
    for name, domain in DOMAINS.items():
        data = datasets[name]
        mine = [c for c in chosen if c.domain == name]
        labels = np.asarray(data.labels)
        specs = {c.name: list(c.sampler(labels, c.seed(args.seed)).take(c.episodes)) for c in mine}
        cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
        every = [s for chosen in specs.values() for s in chosen]
        features = embed_episodes(cache, domain.network(), data, every).features
        for cell in mine:
            for method in args.methods:
                pair = METHODS[method]
                found[method][cell.name] = (
                    cell_logits(pair[0], features, specs[cell.name], cell.shots, cell.ways),
                    cell_logits(pair[1], features, specs[cell.name], cell.shots, cell.ways),
                )
            print(f"{cell.name} done", flush=True)
    return found


def all_cells(args: Any, all_ways: dict[str, int]) -> list[Cell]:
    """The 5-way cells, then those of ``--cells`` (realistic_grid.py's, of the split's ways)."""
    extra = select(grid(all_ways, args.episodes), args.cells) if args.cells else []
    return [*cells(args.episodes), *extra]


def main() -> None:
    args = parse_args()
    if args.cells and args.split != "test":
        raise SystemExit("--cells: with --split test only (the val fits pool 5-way logits)")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    found = collect(args)
    rows = {m: {c: cell_row(*pair) for c, pair in cells_.items()} for m, cells_ in found.items()}
    candidates: dict[str, dict[str, Any]] = {m: {} for m in args.methods}
    if args.split == "val":
        for method, cells_ in found.items():
            before = {cell: pair[0] for cell, pair in cells_.items()}
            names = GROUPINGS if method == "default" else ["one temperature"]
            candidates[method] = {n: candidate(n, before) for n in names}
    record = {
        "setting": {
            "split": args.split,
            "seed": args.seed,
            "episodes": args.episodes,
            "cells": [dataclasses.asdict(c) for c in cells(args.episodes)],
            "extra_cells": args.cells,
            "methods": {m: dataclasses.asdict(METHODS[m][1]) for m in args.methods},
            "ece": "15 equal-width bins of the max softmax probability, all queries pooled; "
            f"ece_after_ci95: percentile bootstrap over episodes, {BOOTSTRAP} resamples",
            "fit": "tau minimising the NLL, every cell weighted equally (fit_temperature)",
            "cache_dir": str(args.cache_dir),
            **environment("torch_threads", "OMP_NUM_THREADS", "torch", "machine", "python"),
            "seconds_total": time.perf_counter() - started,
        },
        "cells": rows,
        "candidates": candidates,
        "markdown": "\n\n".join(
            f"### {m}\n\n{markdown(rows[m], candidates[m])}" for m in args.methods
        ),
    }
    write_json(args.output, record)
    print(record["markdown"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
