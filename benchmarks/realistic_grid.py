"""The realistic grid: does a transductive method ever do worse than support-init?

Every method runs on the same seeded episodes of each cell, on cached frozen-backbone features,
and is compared with support-based initialisation (``support-init``, the inductive baseline any
transductive method must never fall below). Two domains, one split (``--split val|test``):

* ``mini``: mini-ImageNet through the offline ImageNet EfficientNet-Lite0, pooled 1280-d
  features of 224 px bilinear resizes (as ``mini_imagenet_table.py``; **ImageNet contains every
  mini-ImageNet class: absolute accuracies are optimistic**);
* ``omni``: Omniglot (Vinyals split) seen through the same ImageNet network at 84 px
  (channels-first rows, as ``honest_evaluation.py`` and ``many_way_probe.py``).

Cells (name ``<domain>-<kind>-<ways>w<shots>s[-k<present>|-q<queries>]``):

* ``present``: the PADDLE protocol (Martin et al., NeurIPS 2022;
  :class:`anyshot.protocols.PresentClassesSampler`): a support of K classes, queries from only
  K_eff = 1, 3, 5 of them (``-k1``, ``-k3``, ``-k5``), split evenly. mini: K = every class of
  the split (16 val, 20 test), 75 queries; omni: K = 20, 50, 100 and 15 queries per present
  class (15, 45, 75: all a 5-shot Omniglot class has left of its 20 images). Shots 1, 5, 20;
  20 shots are skipped on Omniglot (no image is left for a query), as the output says.
* ``balanced``: 5-way, 15 queries per class (the standard protocol); ``dirichlet0.5`` and
  ``dirichlet2``: 5-way, queries split by Dirichlet(alpha) proportions
  (:class:`anyshot.protocols.ImbalancedQuerySampler`), 75 queries on mini, 25 on omni (a
  5-shot Omniglot class has only 15 images left: 75 queries over 5 classes would be capped
  back to 15 each, i.e. balanced). 1 and 5 shots.
* ``manyway``: balanced queries with many ways: omni 20, 50, 160 ways, 5 queries per class;
  mini every class of the split (16 val, 20 test), 15 per class. 1 and 5 shots.
* ``unbalanced``: labelled images per class unequal (``-5w1-20x4s``: one class of 1 image,
  four of 20), balanced queries (mini 15 per class, omni 10: all a 10-shot Omniglot class has
  left). 5 ways: mini 1-20x4, 1x2-5x3, 1-2-5-10-20; omni 1-10x4, 1x2-5x3, 1-2-3-5-10; many
  ways, half the classes 1 image and half 5: mini every class of the split, omni 20. And
  unequal supports with imbalanced queries: 5 ways at 1x2-5x3 with Dirichlet(0.5) and (2)
  queries (``-d0.5``, ``-d2``; 75 on mini, 25 on omni), the many-way 1 / 5 supports with
  queries of 1 or 3 present classes (``-k1``, ``-k3``; 75 on mini, 15 per class on omni), and
  the 1-20x4 (omni 1-10x4), 1x2-5x3 and many-way supports with 5 or 20 queries drawn as the
  ``tiny`` cells draw them (``-q5``, ``-q20``).
* ``tiny``: 1, 5, 20 and 40 query images (``-q1`` ... ``-q40``), each of a class drawn
  uniformly with replacement from the K support classes (:class:`IidQuerySampler`), at 5 and
  20 ways (mini val has 16 classes: 16 ways there). 1 and 5 shots.

Methods (``--methods``, names resolved when the script runs): ``support-init``
(:data:`anyshot.methods.presets.SUPPORT_INIT`, always run: the baseline), ``recommended``
(:data:`~anyshot.methods.presets.RECOMMENDED`), any other head-scope key of
:data:`anyshot.methods.presets.PRESETS` (a preset added there appears without editing this
script; ``preset:field=value`` changes settings of it, e.g.
``recommended:outlier_rate=0.2``), and the peers of ``benchmarks/peers.py`` when that module
exists: it exports ``PEERS: dict[str, Callable[[Tensor, Tensor, Tensor, int], Tensor]]``,
name -> function ``(support [E, S, D], support targets [E, S], query [E, Q, D], ways) ->
query logits [E, Q, K]`` on the raw cached feature rows (no module: no peers; an error inside it is
raised, not hidden). Default: support-init, recommended, ``unguarded`` when PRESETS has it, and
every peer. All methods see the same episodes in the same batches: episodes of one shape
(ways, support size, query count), at most ``--chunk`` at a time; ms/episode = a batch's wall
time / its episodes (cached features, embedding excluded).

Output (``--output``, JSON, rewritten after every cell): ``{"setting": ..., "cells": [...],
"results": {cell: {method: summary}}, "markdown": ...}``; a summary holds accuracy mean, std
and 95% CI half-width (percent), episodes, ms/episode, the margin to support-init in units of
support-init's CI half-width (``(mean - mean_SI) / ci_SI``; below -1 = "below support-init
minus its CI"), the paired difference to support-init with its 95% CI, and every episode's
accuracy (fractions, in episode order: paired differences of any two methods can be computed
later). ``setting["below_support_init"]`` counts, per method, the cells where its mean lies
below support-init's mean minus support-init's CI half-width.

Episodes: cell ``c``'s episode ``i`` is drawn from ``PCG64([seed_c, i])`` with ``seed_c`` a hash
of ``--seed`` and the cell's name, so a cell's episodes do not depend on which other cells run.
``--episodes-dir DIR`` saves each cell's list to ``DIR/<split>/<cell>.jsonl``
(:mod:`anyshot.episode_files`) and re-uses the file when present (extending it when more
episodes are asked for), so every method and every later run see the same episodes.

Default episodes per cell (``--episodes`` sets one count for all): 400 for the cells of a few
i.i.d. queries (``tiny`` and ``-q``: a 1-query episode scores 0 or 1), 200 for the other 5-way
cells, 150 up to 20 ways, 60 at 50 ways, 40 at 100 ways, 20 at 160 ways. Measured on a busy
2-core x86 CPU with one thread (``--threads 1``, the default: two threads were slower there),
before the ``-q`` cells: on val, recommended takes about 12.5 minutes of method time and
support-init seconds, so support-init, recommended and the ``unguarded`` preset of the same
cost take about 25 minutes, leaving the rest of an hour to the peers (every cell's ms/episode
of every method is in the output); test takes about 8% more (its mini cells have 20 ways, not
16). The episodes use every image of both splits; images the
feature cache lacks are embedded first, once (about 13 images/s at 224 px and 60 at 84 px:
mini val 9,600 images about 12 minutes, mini test 12,000 about 15, Omniglot val 13,760 about 4,
Omniglot test 33,840 about 10).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/realistic_grid.py --split val \\
        --episodes-dir benchmarks/results/realistic-grid-episodes \\
        --output benchmarks/results/realistic-grid-val.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/realistic_grid.py --split val --list-cells
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/realistic_grid.py --split val --episodes 3 \\
        --cells 'omni-present-20w*,mini-tiny' --methods support-init,recommended \\
        --output /tmp/grid.json
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anyshot.backbones import build_backbone
from anyshot.data import ImageDataset
from anyshot.episode_files import load_episodes, read_episode_header, save_episodes
from anyshot.episodes import EpisodeSpec, draw_episode
from anyshot.errors import DatasetError
from anyshot.evaluation import summarize
from anyshot.evaluation.cached import ItemFeatures, episode_tensors, plan_batches, supports_cached
from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import PRESETS, Method
from anyshot.protocols import Sampler, build_sampler, capped, episode_rng, sampler_config
from harness.cli import DATA_ROOT, FEATURE_CACHE, add_shared_arguments, script_parser
from harness.episodes import dataset_split, embed_episodes
from harness.output import cell_table, environment, write_json

try:  # peer methods, written separately; absent until someone adds benchmarks/peers.py
    from peers import PEERS
except ModuleNotFoundError as missing:
    if missing.name != "peers":  # peers.py exists but imports something missing: say so
        raise
    PEERS = {}

#: ``(support [E, S, D], support targets [E, S], query [E, Q, D], ways) -> logits [E, Q, K]``
EpisodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]

BASELINE = "support-init"


@dataclass(frozen=True)
class Domain:
    """A dataset seen through one backbone setting (see the module docstring)."""

    dataset: str
    image_size: int
    channels_last: bool
    backbone: str

    def network(self) -> nn.Module:
        """The frozen ImageNet EfficientNet-Lite0 at this domain's input size."""
        return build_backbone("efficientnet-lite0", image_size=self.image_size)


DOMAINS = {
    "mini": Domain(
        "mini-imagenet",
        224,
        True,
        "efficientnet-lite0 (ImageNet weights, which contain every mini-ImageNet class), "
        "pooled features of 224 px resizes, FeatureCache channels-last rows",
    ),
    "omni": Domain(
        "omniglot",
        84,
        False,
        "efficientnet-lite0 (ImageNet weights) at 84 px, FeatureCache channels-first rows",
    ),
}


class IidQuerySampler:
    """K-way episodes whose ``total_queries`` queries each come from a class drawn uniformly
    with replacement among the K (a small query batch that arrives as it comes: 5 queries at 5
    ways usually repeat a class and miss another). A class drawn more often than it has images
    left gives the excess to the others (:func:`anyshot.protocols.capped`; never with 1 or 5
    queries). ``shots``: labelled images of every way, or one count per way (way ``j`` gets
    ``shots[j]``: a support of unequal classes). Conventions of :mod:`anyshot.protocols`."""

    protocol = "iid-queries"

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        ways: int,
        shots: int | Sequence[int],
        total_queries: int,
        seed: int,
    ) -> None:
        label_array = np.asarray(labels, dtype=np.int64)
        self.shot_list = [int(shots)] * ways if isinstance(shots, int) else [int(s) for s in shots]
        if len(self.shot_list) != ways:
            raise ValueError(f"{len(self.shot_list)} shot counts for {ways} ways")
        most = max(self.shot_list)
        need = most + min(total_queries, 5)  # 1 or 5 queries: one class may receive them all
        classes, counts = np.unique(label_array, return_counts=True)
        self._candidates = classes[counts >= need]
        left = np.sort(counts[counts >= need] - most)[:ways]  # the fewest images left over
        if len(self._candidates) < ways or left.sum() < total_queries:
            raise DatasetError(
                f"{ways}-way {shots}-shot episodes with {total_queries} i.i.d. queries need "
                f"{ways} classes with {need} images and room for the queries; only "
                f"{len(self._candidates)} classes have them"
            )
        self._members = {int(c): np.flatnonzero(label_array == c) for c in self._candidates}
        self.ways, self.total_queries, self.seed = ways, total_queries, seed

    def sample(self, index: int) -> EpisodeSpec:
        """The ``index``-th episode of this sampler's stream."""
        rng = episode_rng(self.seed, index)
        chosen = rng.choice(self._candidates, size=self.ways, replace=False)
        counts = np.bincount(
            rng.integers(0, self.ways, size=self.total_queries), minlength=self.ways
        )
        room = np.array(
            [len(self._members[int(c)]) - k for c, k in zip(chosen, self.shot_list, strict=True)]
        )
        counts = capped(counts, room, np.ones(self.ways))
        return draw_episode(rng, self._members, chosen, self.shot_list, counts)

    def take(self, count: int) -> Iterator[EpisodeSpec]:
        """The first ``count`` episodes."""
        for index in range(count):
            yield self.sample(index)

    def config(self) -> dict[str, Any]:
        """The protocol's parameters (stored in episode files)."""
        return {
            "protocol": self.protocol,
            "ways": self.ways,
            "shots": self.shot_list,
            "total_queries": self.total_queries,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Cell:
    """One cell of the grid: a domain, a protocol and its parameters, an episode count."""

    name: str
    domain: str
    kind: str  # present | balanced | dirichlet | manyway | tiny
    ways: int
    shots: int
    episodes: int
    present: int | None = None
    total_queries: int | None = None
    queries_per_class: int | None = None
    alpha: float | None = None
    shot_list: tuple[int, ...] | None = None  # unbalanced supports: way j gets shot_list[j]
    note: str = ""

    def seed(self, base: int) -> int:
        """The cell's stream seed: a hash of ``base`` (``--seed``) and the cell's name, so it
        does not depend on the other cells."""
        digest = hashlib.sha256(f"{int(base)}/{self.name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    @property
    def iid_queries(self) -> bool:
        """Whether the queries are a few drawn class by class at random (:class:`IidQuerySampler`):
        the ``tiny`` cells, and the unequal supports with ``-q`` query counts."""
        unequal_few = self.kind == "unbalanced" and self.total_queries is not None
        return self.kind == "tiny" or (unequal_few and self.alpha is None and self.present is None)

    def sampler(self, labels: np.ndarray, seed: int) -> Sampler:
        """The seeded sampler of this cell (raises DatasetError when the split is too small)."""
        if self.iid_queries:
            assert self.total_queries is not None
            return IidQuerySampler(
                labels,
                ways=self.ways,
                shots=list(self.shot_list) if self.shot_list else self.shots,
                total_queries=self.total_queries,
                seed=seed,
            )
        protocol = {
            "present": "present-classes",
            "balanced": "fixed",
            "dirichlet": "imbalanced",
            "manyway": "many-way",
            "unbalanced": "fixed",
        }[self.kind]
        if self.kind == "unbalanced" and self.alpha is not None:
            protocol = "imbalanced"
        elif self.kind == "unbalanced" and self.present is not None:
            protocol = "present-classes"
        return build_sampler(
            protocol,
            labels,
            ways=self.ways,
            shots=list(self.shot_list) if self.shot_list else self.shots,
            queries=self.queries_per_class or 15,
            total_queries=self.total_queries or 75,
            dirichlet_alpha=self.alpha or 2.0,
            present_classes=self.present,
            seed=seed,
        )


def default_episodes(cell: Cell) -> int:
    """Episodes per cell by default (see the module docstring)."""
    ways = cell.ways
    if cell.iid_queries:
        return 400
    if ways <= 5:
        return 200
    if ways <= 20:
        return 150
    return 60 if ways <= 50 else 40 if ways <= 100 else 20


def shots_words(shot_list: Sequence[int]) -> str:
    """Sorted shots run-length encoded for a cell name: (1, 20, 20, 20, 20) -> ``1-20x4``."""
    runs: list[list[int]] = []
    for shots in shot_list:
        if runs and runs[-1][0] == shots:
            runs[-1][1] += 1
        else:
            runs.append([shots, 1])
    return "-".join(f"{s}x{n}" if n > 1 else str(s) for s, n in runs)


def grid(all_ways: dict[str, int], episodes: int | None) -> list[Cell]:
    """Every cell of the grid; ``all_ways``: the split's class count per domain."""
    cells: list[Cell] = []

    def add(domain: str, kind: str, ways: int, shots: int, tail: str = "", **options: Any) -> None:
        alpha = options.get("alpha")
        label = f"{kind}{alpha:g}" if kind == "dirichlet" else kind
        counts = shots_words(options["shot_list"]) if options.get("shot_list") else shots
        name = f"{domain}-{label}-{ways}w{counts}s{tail}"
        cell = Cell(name, domain, kind, ways, shots, 0, **options)
        count = episodes if episodes is not None else default_episodes(cell)
        cells.append(dataclasses.replace(cell, episodes=count))

    mini = all_ways["mini"]
    every = f"every class of the split ({mini})"
    for shots in (1, 5, 20):
        for k in (1, 3, 5):
            add("mini", "present", mini, shots, f"-k{k}", present=k, total_queries=75, note=every)
    for ways in (20, 50, 100):
        for shots in (1, 5, 20):
            for k in (1, 3, 5):
                add("omni", "present", ways, shots, f"-k{k}", present=k, total_queries=15 * k)
    for domain, total in (("mini", 75), ("omni", 25)):
        for shots in (1, 5):
            add(domain, "balanced", 5, shots, queries_per_class=15)
            for alpha in (0.5, 2.0):
                add(domain, "dirichlet", 5, shots, total_queries=total, alpha=alpha)
    for shots in (1, 5):
        add("mini", "manyway", mini, shots, queries_per_class=15, note=every)
        for ways in (20, 50, 160):
            add("omni", "manyway", ways, shots, queries_per_class=5)
    unbalanced = {
        "mini": [(1, 20, 20, 20, 20), (1, 1, 5, 5, 5), (1, 2, 5, 10, 20), (1, 5) * (mini // 2)],
        "omni": [(1, 10, 10, 10, 10), (1, 1, 5, 5, 5), (1, 2, 3, 5, 10), (1, 5) * 10],
    }
    for domain, shot_lists in unbalanced.items():
        for shot_list in shot_lists:
            add(
                domain,
                "unbalanced",
                len(shot_list),
                max(shot_list),
                queries_per_class=15 if domain == "mini" else 10,
                shot_list=tuple(sorted(shot_list)),
            )
    # unequal supports with imbalanced queries: Dirichlet(alpha) (-d), or a few present (-k)
    unequal_queries = {
        "mini": ((1, 1, 5, 5, 5), 75, (1, 5) * (mini // 2)),
        "omni": ((1, 1, 5, 5, 5), 25, (1, 5) * 10),
    }
    for domain, (few, total, many) in unequal_queries.items():
        for alpha in (0.5, 2.0):
            spread = dict(total_queries=total, alpha=alpha, shot_list=few)
            add(domain, "unbalanced", len(few), 5, f"-d{alpha:g}", **spread)
        for k in (1, 3):
            present = dict(present=k, total_queries=75 if domain == "mini" else 15 * k)
            add(domain, "unbalanced", len(many), 5, f"-k{k}", shot_list=tuple(sorted(many)),
                **present)  # fmt: skip
    # unequal supports with a few i.i.d. queries (-q5, -q20)
    for domain, shot_lists in unbalanced.items():
        for shot_list in (shot_lists[0], shot_lists[1], shot_lists[3]):
            for q in (5, 20):
                add(domain, "unbalanced", len(shot_list), max(shot_list), f"-q{q}",
                    total_queries=q, shot_list=tuple(sorted(shot_list)))  # fmt: skip
    for domain in ("mini", "omni"):
        large = min(20, all_ways[domain])
        note = "" if large == 20 else f"the split has {large} classes: {large} ways, not 20"
        for ways in (5, large):
            for shots in (1, 5):
                for q in (1, 5, 20, 40):
                    add(
                        domain,
                        "tiny",
                        ways,
                        shots,
                        f"-q{q}",
                        total_queries=q,
                        note=note if ways == large else "",
                    )
    return cells


def matches(name: str, pattern: str) -> bool:
    """A glob (``*``, ``?``, ``[``) matches the whole name; a plain word any part of it."""
    if any(mark in pattern for mark in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def select(cells: list[Cell], patterns: str | None) -> list[Cell]:
    """The cells ``--cells`` names (comma-separated patterns; none = every cell)."""
    wanted = [p.strip() for p in (patterns or "").split(",") if p.strip()]
    if not wanted:
        return cells
    for pattern in wanted:
        if not any(matches(cell.name, pattern) for cell in cells):
            raise SystemExit(f"--cells: {pattern!r} matches no cell (--list-cells shows them)")
    return [cell for cell in cells if any(matches(cell.name, p) for p in wanted)]


# --- methods ----------------------------------------------------------------------------------


def preset_fn(method: Method) -> EpisodeFn:
    """A head-scope preset as an :data:`EpisodeFn`: its batched ``fit_features`` on the whole
    batch at once (:func:`run_cell` sizes the batches)."""

    def run(
        support: torch.Tensor, targets: torch.Tensor, query: torch.Tensor, ways: int
    ) -> torch.Tensor:
        chunk = max(1, int(support.shape[0]))
        fitted = method.fit_features(support, targets, query, ways=ways, episodes_per_chunk=chunk)
        return fitted.query_logits

    return run


def default_methods() -> list[str]:
    """support-init, recommended, ``unguarded`` when PRESETS has it, then every peer."""
    names = [BASELINE, "recommended", *(["unguarded"] if "unguarded" in PRESETS else []), *PEERS]
    return list(dict.fromkeys(names))


def with_overrides(method: Method, name: str) -> Method:
    """``method`` with the settings of ``name``'s ``:field=value`` parts (values as Python
    literals), e.g. ``recommended:outlier_rate=0.2`` (a variant to study without a preset)."""
    parts = name.split(":")[1:]
    try:
        settings = {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in parts)}
        return dataclasses.replace(method, **settings)
    except (ValueError, SyntaxError, TypeError) as error:
        raise SystemExit(f"--methods: cannot apply {parts}: {error}") from None


def resolve_methods(names: Sequence[str]) -> tuple[dict[str, EpisodeFn], dict[str, Any]]:
    """Name -> episode function (support-init first, always) and name -> description."""
    ordered = list(dict.fromkeys([BASELINE, *names]))
    functions: dict[str, EpisodeFn] = {}
    described: dict[str, Any] = {}
    for name in ordered:
        if name.split(":")[0] in PRESETS and name in PEERS:
            raise SystemExit(f"--methods: {name!r} is both a preset and a peer of peers.py")
        preset = name.split(":")[0]
        if preset in PRESETS:
            method = with_overrides(PRESETS[preset], name)
            if not supports_cached(method):
                raise SystemExit(
                    f"--methods: preset {name!r} trains the backbone (scope "
                    f"{getattr(method, 'scope', None)!r}); the grid runs on cached features, "
                    "so only support-init and head-scope presets can run"
                )
            functions[name] = preset_fn(method)
            described[name] = {
                "preset": name,
                "class": type(method).__name__,
                "options": dataclasses.asdict(method),
            }
        elif name in PEERS:
            fn = PEERS[name]
            functions[name] = fn
            described[name] = {
                "peer": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}",
                "doc": (getattr(fn, "__doc__", None) or "").strip().split("\n")[0],
            }
        else:
            heads = sorted(n for n, m in PRESETS.items() if supports_cached(m))
            peers = sorted(PEERS) if PEERS else "none (benchmarks/peers.py is absent)"
            raise SystemExit(
                f"--methods: unknown {name!r}; head-scope presets: {heads}; peers: {peers}"
            )
    return functions, described


# --- episodes ---------------------------------------------------------------------------------


def cell_episodes(
    cell: Cell, dataset: ImageDataset, seed: int, folder: Path | None, split: str
) -> tuple[list[EpisodeSpec], dict[str, Any], Path | None]:
    """The cell's episodes (sampled, or read from and extended in ``folder``), its sampler's
    config and the episode file. Raises DatasetError when the split cannot hold the cell."""
    sampler = cell.sampler(np.asarray(dataset.labels), cell.seed(seed))
    config = sampler_config(sampler)
    if folder is None:
        return list(sampler.take(cell.episodes)), config, None
    path = folder / split / f"{cell.name}.jsonl"
    header = {**config, "cell": cell.name, "dataset": DOMAINS[cell.domain].dataset, "split": split}
    specs: list[EpisodeSpec] = []
    if path.exists():
        saved = read_episode_header(path).get("header")
        if saved != header:
            saved = saved if isinstance(saved, dict) else {}
            differ = {
                key: (saved.get(key), header.get(key))
                for key in sorted(set(saved) | set(header))
                if saved.get(key) != header.get(key)
            }
            raise SystemExit(
                f"{path} holds other episodes than this run's {cell.name} (file, run: {differ}); "
                "use another --episodes-dir, or the --seed the file was written with"
            )
        specs = load_episodes(path, dataset)
    if len(specs) < cell.episodes:
        specs += [sampler.sample(i) for i in range(len(specs), cell.episodes)]
        save_episodes(path, dataset, specs, header=header)
    return specs[: cell.episodes], config, path


def shape(spec: EpisodeSpec) -> tuple[int, int]:
    """Support and query size of an episode."""
    return sum(map(len, spec.support)), sum(map(len, spec.query))


# --- running and summarising ------------------------------------------------------------------


def run_cell(
    functions: dict[str, EpisodeFn],
    features: ItemFeatures,
    specs: Sequence[EpisodeSpec],
    chunk: int,
    warmed: set[str],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Method name -> per-episode accuracies and seconds, every method on the same batches.
    A method's first call in the process (``warmed`` says which ran already) is preceded by an
    untimed call on one episode, so one-off set-up costs do not land on the first cell."""
    batches = plan_batches(specs, episodes_per_chunk=chunk)
    tensors = [episode_tensors(features, [specs[i] for i in batch]) for batch in batches]
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, fn in functions.items():
        if name not in warmed:
            support, targets, query, _ = tensors[0]
            fn(support[:1], targets[:1], query[:1], len(specs[0].classes))
            warmed.add(name)
        accuracies = np.zeros(len(specs))
        seconds = np.zeros(len(specs))
        for batch, (support, targets, query, query_targets) in zip(batches, tensors, strict=True):
            ways = len(specs[batch[0]].classes)
            start = time.perf_counter()
            logits = fn(support, targets, query, ways)
            elapsed = time.perf_counter() - start
            expected = (len(batch), int(query.shape[1]), ways)
            if tuple(logits.shape) != expected:
                raise RuntimeError(f"{name} returned logits {tuple(logits.shape)}, not {expected}")
            correct = (logits.argmax(-1) == query_targets).double().mean(-1)
            accuracies[batch] = correct.numpy()
            seconds[batch] = elapsed / len(batch)
        results[name] = (accuracies, seconds)
    return results


def summaries(runs: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Per method: accuracy statistics (percent), timing, margin and paired difference to
    support-init, per-episode accuracies."""
    base, _ = runs[BASELINE]
    base_stats = summarize(base)
    base_mean, base_ci = 100 * base_stats["accuracy_mean"], 100 * base_stats["accuracy_ci95"]
    out: dict[str, dict[str, Any]] = {}
    for name, (accuracies, seconds) in runs.items():
        stats = summarize(accuracies)
        mean, ci = 100 * stats["accuracy_mean"], 100 * stats["accuracy_ci95"]
        paired = summarize(accuracies - base)
        delta = mean - base_mean
        out[name] = {
            "accuracy": mean,
            "ci95": ci,
            "std": 100 * stats["accuracy_std"],
            "episodes": stats["episodes"],
            "ms_per_episode": 1000 * float(np.mean(seconds)),
            "seconds_total": float(np.sum(seconds)),
            "margin_ci_units": (delta / base_ci) if base_ci > 0 else (0.0 if delta == 0 else None),
            "below_support_init": bool(mean < base_mean - base_ci),
            "paired_difference": 100 * paired["accuracy_mean"],
            "paired_difference_ci95": 100 * paired["accuracy_ci95"],
            "same_accuracy_episodes": int(np.sum(accuracies == base)),
            "accuracies": [round(float(a), 6) for a in accuracies],
        }
    return out


def below_counts(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method: cells run, cells below support-init minus its CI, those cells, worst margin."""
    counts: dict[str, dict[str, Any]] = {}
    for cell, row in results.items():
        for name, summary in row.items():
            entry = counts.setdefault(
                name, {"cells": 0, "below": 0, "below_cells": [], "worst_margin": None}
            )
            entry["cells"] += 1
            if summary["below_support_init"]:
                entry["below"] += 1
                entry["below_cells"].append(cell)
            margin = summary["margin_ci_units"]
            worst = entry["worst_margin"]
            if margin is not None and (worst is None or margin < worst[0]):
                entry["worst_margin"] = [margin, cell]
    return counts


def markdown(record: dict[str, Any]) -> str:
    """The results table (cells x methods) and the per-method count of cells below
    support-init; notes on skipped and adapted cells."""
    results: dict[str, dict[str, dict[str, Any]]] = record["results"]
    names = list(dict.fromkeys(n for row in results.values() for n in row))

    def entry(name: str, s: dict[str, Any]) -> str:
        text = f"{s['accuracy']:.1f} ± {s['ci95']:.1f}"
        if name != BASELINE:
            margin = s["margin_ci_units"]
            text += f" ({'n/a' if margin is None else f'{margin:+.1f}'})"
            text += " ✗" if s["below_support_init"] else ""
        ms = s["ms_per_episode"]
        return f"{text} · {ms:.0f} ms" if ms >= 10 else f"{text} · {ms:.1f} ms"

    note = (
        "mean ± 95% CI (accuracy %), margin to support-init in its CI half-widths, ms/episode; "
        "✗ = below support-init minus its CI"
    )
    lines = cell_table(results, note, entry)
    counts = below_counts(results)
    lines += [
        "",
        "| method | cells | below support-init - CI | worst margin (cell) |",
        "|---|---|---|---|",
    ]
    for name in names:
        c = counts[name]
        worst = (
            "-"
            if c["worst_margin"] is None or name == BASELINE
            else f"{c['worst_margin'][0]:+.2f} ({c['worst_margin'][1]})"
        )
        lines.append(f"| {name} | {c['cells']} | {c['below']} | {worst} |")
    skipped = record["setting"]["skipped_cells"]
    notes: dict[str, list[str]] = {}
    for cell in record["cells"]:
        if cell.get("note"):
            notes.setdefault(cell["note"], []).append(cell["name"])
    if skipped or notes:
        lines.append("")
    lines += [f"- skipped {s['name']}: {s['reason']}" for s in skipped]
    lines += [f"- {note}: {', '.join(cells)}" for note, cells in notes.items()]
    return "\n".join(lines)


# --- the script -------------------------------------------------------------------------------

QUERY_RULES = {
    "present": "mini: 75 queries per episode; omni: 15 per present class (15, 45, 75), all a "
    "5-shot Omniglot class has left; split evenly between the present classes",
    "balanced": "15 queries per class",
    "dirichlet": "mini: 75 queries per episode, omni: 25 (5-shot Omniglot classes have 15 "
    "images left: 75 queries would be capped back to a balanced 15 each); counts = rounded "
    "Dirichlet(alpha) proportions, capped by what a class has left",
    "manyway": "mini: 15 queries per class, omni: 5",
    "tiny": "1 to 40 queries, each of a class drawn uniformly with replacement from the ways",
}


def parse_args() -> Any:
    parser = script_parser(__doc__)
    add_shared_arguments(
        parser,
        data_root=DATA_ROOT,
        seed=0,
        cache_dir=FEATURE_CACHE,
        threads=1,
        output=Path("benchmarks/results/realistic-grid.json"),
        helps={"data_root": "folder holding mini-imagenet/ and omniglot/ (or either one)"},
        split="val",
    )
    parser.add_argument(
        "--episodes", type=int, help="episodes of every cell (default: per cell, see above)"
    )
    parser.add_argument(
        "--cells",
        help="comma-separated cell names: globs (omni-present-*) or parts of names (tiny,mini-)",
    )
    parser.add_argument(
        "--methods",
        help="comma-separated method names (presets of anyshot.methods.presets.PRESETS or peers "
        f"of benchmarks/peers.py); default: {','.join(default_methods())}",
    )
    parser.add_argument(
        "--episodes-dir",
        type=Path,
        help="save each cell's episodes to DIR/<split>/<cell>.jsonl, or re-use them from there",
    )
    parser.add_argument(
        "--chunk", type=int, default=64, help="most episodes per method call (default 64)"
    )
    parser.add_argument("--list-cells", action="store_true", help="print the cells and exit")
    return parser.parse_args()


def plan(
    args: Any, datasets: dict[str, ImageDataset]
) -> tuple[list[tuple[Cell, Any]], list[dict[str, str]]]:
    """(cell, (episodes, sampler config, episode file)) of every runnable selected cell, and the
    skipped ones with the reason."""
    all_ways = {name: data.num_classes for name, data in datasets.items()}
    cells = select(grid(all_ways, args.episodes), args.cells)
    runnable: list[tuple[Cell, Any]] = []
    skipped: list[dict[str, str]] = []
    for cell in cells:
        try:
            drawn = cell_episodes(
                cell, datasets[cell.domain], args.seed, args.episodes_dir, args.split
            )
        except DatasetError as error:
            skipped.append({"name": cell.name, "reason": str(error)})
            continue
        runnable.append((cell, drawn))
    return runnable, skipped


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    names = default_methods() if args.methods is None else args.methods.split(",")
    functions, described = resolve_methods([n.strip() for n in names if n.strip()])
    datasets = {
        name: dataset_split(args.data_root, domain.dataset, args.split)
        for name, domain in DOMAINS.items()
    }
    runnable, skipped = plan(args, datasets)
    if args.list_cells:
        for cell, (specs, _, _) in runnable:
            support, query = shape(specs[0])
            print(f"{cell.name:28s} {len(specs):4d} episodes, support {support}, queries {query}")
        for entry in skipped:
            print(f"{entry['name']:28s} skipped: {entry['reason']}")
        return
    started = time.perf_counter()
    record: dict[str, Any] = {
        "setting": {
            "split": args.split,
            "data_root": str(args.data_root),
            "seed": args.seed,
            "domains": {name: dataclasses.asdict(d) for name, d in DOMAINS.items()},
            "queries": QUERY_RULES,
            "methods": described,
            "peers_module": "benchmarks/peers.py" if PEERS else None,
            "baseline": BASELINE,
            "below_rule": "mean < support-init mean - support-init 95% CI half-width",
            "timing": "ms/episode = a batch's wall time / its episodes (cached features, "
            "embedding excluded); batches of one shape, at most --chunk episodes",
            "cache_dir": str(args.cache_dir),
            "episodes_dir": None if args.episodes_dir is None else str(args.episodes_dir),
            "skipped_cells": skipped,
            **environment("torch_threads", "OMP_NUM_THREADS", "torch", "machine", "python"),
            "embedding_seconds": {},
        },
        "cells": [],
        "results": {},
    }
    for entry in skipped:
        print(f"skipped {entry['name']}: {entry['reason']}", flush=True)
    warmed: set[str] = set()
    for domain_name, domain in DOMAINS.items():
        mine = [(cell, drawn) for cell, drawn in runnable if cell.domain == domain_name]
        if not mine:
            continue
        cache = FeatureCache(args.cache_dir, channels_last=domain.channels_last)
        embedded = embed_episodes(
            cache,
            domain.network(),
            datasets[domain_name],
            (spec for _, (specs, _, _) in mine for spec in specs),
        )
        record["setting"]["embedding_seconds"][domain_name] = {
            "seconds": embedded.seconds,
            "rows_computed": embedded.computed,
            "rows": len(embedded.features.items),
        }
        for cell, (specs, config, path) in mine:
            support, query = shape(specs[0])
            chunk = max(1, min(args.chunk, 20000 // (support + query)))
            runs = run_cell(functions, embedded.features, specs, chunk, warmed)
            record["results"][cell.name] = summaries(runs)
            record["cells"].append(
                {
                    **{k: v for k, v in dataclasses.asdict(cell).items() if v not in (None, "")},
                    "dataset": domain.dataset,
                    "sampler": config,
                    "support_size": support,
                    "queries_per_episode": query,
                    "chunk": chunk,
                    "episodes_file": None if path is None else str(path),
                }
            )
            row = record["results"][cell.name]
            print(
                f"{cell.name:28s} "
                + "  ".join(f"{n} {s['accuracy']:5.1f}±{s['ci95']:.1f}" for n, s in row.items()),
                flush=True,
            )
            record["setting"]["below_support_init"] = below_counts(record["results"])
            write_json(args.output, record)  # what is finished survives an interruption
    record["setting"]["seconds_total"] = time.perf_counter() - started
    record["markdown"] = markdown(record)
    write_json(args.output, record)
    print(record["markdown"])
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
