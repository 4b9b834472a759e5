"""Evaluate head-scope methods on cached embeddings, many episodes at once.

:class:`~anyshot.methods.SupportBasedInit` and :class:`~anyshot.methods.FineTuning` /
:class:`~anyshot.methods.TransductiveFineTuning` with ``scope="head"`` never change the
backbone: they only need each image's embedding. So every dataset item the episodes use is
embedded once (:func:`embed_items`, through a :class:`~anyshot.feature_cache.FeatureCache`), and
the methods run on the cached rows (:func:`evaluate_cached`):

* episodes are grouped by shape ``(ways, support size, query count)`` and each group runs
  through the method's ``fit_features``, ``episodes_per_chunk`` episodes per call; an episode
  whose shape no other episode shares (e.g. variable-way episodes) is a batch of one. The
  episodes of a batch are independent, so the grouping changes the speed, never a result.

Labels follow :func:`~anyshot.episodes.make_episode`: way ``k`` of an
:class:`~anyshot.episodes.EpisodeSpec` is class index ``k`` (the ``classes`` order of the
episode it makes), support and query rows are in way order. Records are those of
:func:`anyshot.evaluation.evaluate` (:func:`~anyshot.evaluation.records.episode_record`);
``seconds`` of a batched episode is the wall time of its
batch call divided by the batch's episode count (embedding excluded), which the result's
``config["timing"]`` states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.episodes import EpisodeSpec, spec_query_targets
from anyshot.evaluation.records import (
    EvaluationResult,
    environment_info,
    episode_record,
    running_accuracy,
)
from anyshot.feature_cache import FeatureCache
from anyshot.methods.features import answer_of
from anyshot.methods.finetune import FineTuning
from anyshot.methods.presets import Method
from anyshot.methods.support_init import SupportBasedInit
from anyshot.outliers import episode_outlier_score
from anyshot.progress import progress_bar

__all__ = [
    "TIMING",
    "ItemFeatures",
    "embed_items",
    "episode_items",
    "episode_tensors",
    "evaluate_cached",
    "plan_batches",
    "shard_episodes",
    "supports_cached",
]

#: What ``seconds`` means in records of :func:`evaluate_cached` (stored as ``config["timing"]``).
TIMING = (
    "batched: an episode's seconds is the wall time of the batched method call that ran it "
    "divided by the number of episodes in that call; cached embeddings, embedding time excluded"
)


def supports_cached(method: object) -> bool:
    """Whether ``method`` only needs frozen embeddings (so it can run on cached features).

    True for :class:`SupportBasedInit` and for :class:`FineTuning` (or
    :class:`TransductiveFineTuning`) with ``scope == "head"``.
    """
    if isinstance(method, SupportBasedInit):
        return True
    return isinstance(method, FineTuning) and method.scope == "head"


def episode_items(specs: Iterable[EpisodeSpec]) -> list[int]:
    """Every dataset item the episodes use, each once, in order of first use."""
    items: dict[int, None] = {}
    for spec in specs:
        for group in (*spec.support, *spec.query, spec.outliers):
            for item in group:
                items.setdefault(int(item), None)
    return list(items)


@dataclass(frozen=True)
class ItemFeatures:
    """Embeddings of dataset items: ``features[i]`` is the row of dataset item ``items[i]``."""

    items: Sequence[int]
    features: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.items) != len(self.features):
            raise ValueError(f"{len(self.items)} items but {len(self.features)} feature rows")
        object.__setattr__(self, "_row", {int(item): r for r, item in enumerate(self.items)})

    def rows(self, items: Iterable[int]) -> torch.Tensor:
        """``[N, D]`` rows of dataset ``items``, in that order.

        Raises:
            KeyError: an item that was not embedded.
        """
        row: dict[int, int] = self._row  # type: ignore[attr-defined]
        index = torch.tensor([row[int(i)] for i in items], dtype=torch.long)
        return self.features.index_select(0, index)


def embed_items(
    cache: FeatureCache,
    backbone: nn.Module,
    dataset: ImageDataset,
    items: Sequence[int],
    *,
    batch_size: int = 64,
    show_progress: bool = False,
    preprocessing: Preprocessing | None = None,
) -> ItemFeatures:
    """Embeddings of dataset ``items`` via ``cache`` (rows on disk are read, others computed)."""
    features = cache.features(
        backbone,
        dataset,
        list(items),
        batch_size=batch_size,
        show_progress=show_progress,
        preprocessing=preprocessing,
    )
    return ItemFeatures(list(items), features)


def _shape(spec: EpisodeSpec) -> tuple[int, int, int]:
    """``(ways, support size, query count)``: what a batch of episodes must share."""
    return (len(spec.classes), sum(len(s) for s in spec.support), len(spec.query_items))


def plan_batches(
    specs: Sequence[EpisodeSpec],
    indices: Sequence[int] | None = None,
    *,
    episodes_per_chunk: int = 64,
) -> list[list[int]]:
    """Which episodes run together: lists of episode indices, in order of their first index.

    Episodes ``indices`` (default all) are grouped by ``(ways, support size, query count)``
    and each group split into chunks of at most ``episodes_per_chunk``. An episode whose shape
    is unique among *all* ``specs`` forms a list of its own (judged over all ``specs``, so a
    shard of the episodes groups every episode as the whole run does).
    """
    if episodes_per_chunk < 1:
        raise ValueError(f"episodes_per_chunk must be at least 1, got {episodes_per_chunk}")
    chosen = range(len(specs)) if indices is None else indices
    counts: dict[tuple[int, int, int], int] = {}
    for spec in specs:
        counts[_shape(spec)] = counts.get(_shape(spec), 0) + 1
    groups: dict[tuple[int, int, int], list[int]] = {}
    batches: list[list[int]] = []
    for index in chosen:
        shape = _shape(specs[index])
        if counts[shape] < 2:
            batches.append([index])
        else:
            groups.setdefault(shape, []).append(index)
    for members in groups.values():
        for start in range(0, len(members), episodes_per_chunk):
            batches.append(members[start : start + episodes_per_chunk])
    batches.sort(key=lambda batch: batch[0])
    return batches


def shard_episodes(
    specs: Sequence[EpisodeSpec], rank: int, world_size: int, *, episodes_per_chunk: int = 64
) -> list[int]:
    """Episode indices of rank ``rank``: whole batches of :func:`plan_batches`, round robin.

    Every batch is computed by one rank exactly as a single process computes it (same
    episodes, same order, same tensor shapes), so a sharded run reproduces the single-process
    logits bit for bit, not only up to float rounding.
    """
    batches = plan_batches(specs, episodes_per_chunk=episodes_per_chunk)
    return sorted(i for batch in batches[rank::world_size] for i in batch)


def _targets(parts: Sequence[Sequence[int]]) -> torch.Tensor:
    """Class index of every row when way ``k`` contributes ``len(parts[k])`` rows in way order."""
    sizes = torch.tensor([len(p) for p in parts], dtype=torch.long)
    return torch.repeat_interleave(torch.arange(len(parts)), sizes)


def _flat(parts: Sequence[Sequence[int]]) -> list[int]:
    return [int(item) for part in parts for item in part]


def episode_tensors(
    features: ItemFeatures, specs: Sequence[EpisodeSpec]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed-shape episodes as stacked embedding rows, ready for the batched methods.

    Args:
        features: embeddings of every item the episodes use.
        specs: ``E`` episodes sharing ``(ways, support size, query count)``.

    Returns:
        ``support [E, S, D]``, ``support targets [E, S]``, ``query [E, Q, D]``,
        ``query targets [E, Q]``; targets are way indices (way ``k`` of a spec is class ``k``,
        as in :func:`~anyshot.episodes.make_episode`), rows in way order; an open-set
        episode's outliers follow its ways' queries, with target
        :data:`~anyshot.episodes.OUTLIER`.

    Raises:
        ValueError: no episodes, or episodes of different shapes.
        KeyError: an item that was not embedded.
    """
    if not specs:
        raise ValueError("no episodes were given")
    shapes = sorted({_shape(spec) for spec in specs})
    if len(shapes) > 1:
        raise ValueError(
            f"episodes of different (ways, support size, query count) {shapes} cannot be "
            "stacked; group them first (plan_batches) or run them one at a time"
        )
    return (
        torch.stack([features.rows(_flat(spec.support)) for spec in specs]),
        torch.stack([_targets(spec.support) for spec in specs]),
        torch.stack([features.rows(spec.query_items) for spec in specs]),
        torch.stack([spec_query_targets(spec) for spec in specs]),
    )


def _run_batch(
    method: Method,
    features: ItemFeatures,
    specs: Sequence[EpisodeSpec],
    batch: Sequence[int],
    episodes_per_chunk: int,
) -> tuple[torch.Tensor, list[str | None], torch.Tensor | None, float]:
    """Query logits ``[E, Q, K]`` of the episodes ``batch`` (all of one shape), which head
    answered each (:func:`~anyshot.methods.features.answer_of`), the product's outlier scores
    ``[E, Q]`` (:func:`~anyshot.outliers.episode_outlier_score`) when the episodes have outlier
    queries, else ``None``, and the method's seconds per episode (the scores left out)."""
    start = time.perf_counter()
    chosen = [specs[i] for i in batch]
    support, targets, query, query_targets = episode_tensors(features, chosen)
    ways = len(chosen[0].classes)
    fitted = method.fit_features(
        support, targets, query, ways=ways, episodes_per_chunk=episodes_per_chunk
    )
    answers = [answer_of(fitted, e) for e in range(len(chosen))]
    seconds = (time.perf_counter() - start) / len(batch)
    if not bool((query_targets < 0).any()):
        return fitted.query_logits, answers, None, seconds
    scores = episode_outlier_score(support.float(), targets, query.float(), ways)
    return fitted.query_logits, answers, scores, seconds


def evaluate_cached(
    method: Method,
    features: ItemFeatures,
    specs: Sequence[EpisodeSpec],
    *,
    indices: Sequence[int] | None = None,
    episodes_per_chunk: int = 64,
    config: dict[str, Any] | None = None,
    show_progress: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    hardness: Callable[[int], float] | None = None,
    progress_desc: str = "episodes",
) -> EvaluationResult:
    """Run a head-scope ``method`` on the episodes ``specs`` (or those at ``indices``).

    Args:
        method: see :func:`supports_cached`.
        features: embeddings of every item the chosen episodes use (see :func:`embed_items`).
        specs: all the episodes (the record ``index`` is the position in ``specs``).
        indices: the episodes to run (e.g. one shard); default all.
        episodes_per_chunk: most episodes per batched call.
        config: free-form description stored in the result (``timing`` is added).
        show_progress: draw a progress bar with the running mean accuracy.
        on_record: called with each record as soon as it exists (batch by batch).
        hardness: ``hardness(index) -> Omega`` stored as each record's ``hardness``.
        progress_desc: the progress bar's label.

    Returns:
        The records of :func:`anyshot.evaluation.evaluate`, sorted by ``index``.

    Raises:
        ValueError: a method that needs images (see :func:`supports_cached`), an episode
            without queries, or no episodes.
    """
    if not supports_cached(method):
        raise ValueError(
            f"{type(method).__name__} with scope {getattr(method, 'scope', None)!r} trains the "
            "backbone, so it cannot run on cached embeddings; use scope 'head' or support-init"
        )
    chosen = list(range(len(specs)) if indices is None else indices)
    for index in chosen:
        if not any(specs[index].query):
            raise ValueError("evaluation needs episodes with query images and query labels")
    batches = plan_batches(specs, chosen, episodes_per_chunk=episodes_per_chunk)
    result = EvaluationResult(
        config={**(config or {}), "timing": TIMING, "environment": environment_info()}
    )
    bar = progress_bar(total=len(chosen), desc=progress_desc, enabled=show_progress, unit="episode")
    try:
        for batch in batches:
            logits, answers, scores, seconds = _run_batch(
                method, features, specs, batch, episodes_per_chunk
            )
            for position, (index, episode_logits) in enumerate(zip(batch, logits, strict=True)):
                spec = specs[index]
                record = episode_record(
                    index,
                    episode_logits,
                    spec_query_targets(spec),
                    ways=len(spec.classes),
                    shots=spec.shots,
                    seconds=seconds,
                    hardness=None if hardness is None else hardness(index),
                    answer=answers[position],
                    outlier_scores=None if scores is None else scores[position],
                )
                result.records.append(record)
                if on_record is not None:
                    on_record(record)
            bar.set_postfix(accuracy=running_accuracy(result.records), refresh=False)
            bar.update(len(batch))
    finally:
        bar.close()
    if not result.records:
        raise ValueError("no episodes were given")
    result.records.sort(key=lambda r: r["index"])
    return result
