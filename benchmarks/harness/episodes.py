"""Episodes on cached embeddings: datasets, embedding, stacked episodes, head methods run on them.

Support-init and head-scope fine-tuning only need each image's embedding, so the scripts embed
every item their episodes use once (:func:`embed_episodes`, through a
:class:`~anyshot.feature_cache.FeatureCache`) and run the methods' ``fit_features`` on the rows:
fixed-shape episodes stacked as an :class:`EpisodeBatch` (:func:`run_method`), or any episodes
through :func:`anyshot.evaluation.cached.evaluate_cached` (:func:`compare_methods`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anyshot.data import ImageDataset, load_dataset
from anyshot.episodes import EpisodeSpec
from anyshot.evaluation import summarize
from anyshot.evaluation.cached import (
    ItemFeatures,
    embed_items,
    episode_items,
    episode_tensors,
    evaluate_cached,
)
from anyshot.feature_cache import FeatureCache
from anyshot.methods.presets import Method
from anyshot.progress import progress_bar

__all__ = [
    "Embedded",
    "EpisodeBatch",
    "MethodRun",
    "compare_methods",
    "dataset_root",
    "dataset_split",
    "embed_episodes",
    "run_method",
    "timing",
]


def dataset_root(data_root: Path, name: str) -> Path:
    """The folder of dataset ``name``: ``data_root`` itself or, when it holds a folder
    ``name``, that one (``../shared/data/omniglot`` or ``../shared/data`` both work)."""
    folder = data_root / name
    return folder if folder.is_dir() else data_root


def dataset_split(data_root: Path, name: str, split: str) -> ImageDataset:
    """Split ``split`` of dataset ``name`` under ``data_root`` (see :func:`dataset_root`)."""
    return load_dataset(name, dataset_root(data_root, name), split)


@dataclass(frozen=True)
class Embedded:
    """Embeddings of the items some episodes use.

    Attributes:
        features: the rows, by dataset item.
        seconds: wall time of reading and computing them.
        computed: rows computed now (the rest were read from the cache).
    """

    features: ItemFeatures
    seconds: float
    computed: int


def embed_episodes(
    cache: FeatureCache,
    backbone: nn.Module,
    dataset: ImageDataset,
    specs: Iterable[EpisodeSpec],
    *,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Embedded:
    """Every item the episodes use, in sorted order (the forward batches of every earlier run,
    so the same rows), read from or added to ``cache``."""
    items = sorted(episode_items(specs))
    before = cache.computed
    start = time.perf_counter()
    features = embed_items(
        cache, backbone, dataset, items, batch_size=batch_size, show_progress=show_progress
    )
    return Embedded(features, time.perf_counter() - start, cache.computed - before)


@dataclass(frozen=True)
class EpisodeBatch:
    """``E`` fixed-shape episodes as stacked embedding rows (targets are way indices).

    Attributes:
        support: ``[E, S, D]``.
        targets: ``[E, S]`` support targets.
        query: ``[E, Q, D]``.
        query_targets: ``[E, Q]``.
        ways: ``K``.
    """

    support: torch.Tensor
    targets: torch.Tensor
    query: torch.Tensor
    query_targets: torch.Tensor
    ways: int

    @classmethod
    def of(cls, features: ItemFeatures, specs: Sequence[EpisodeSpec]) -> EpisodeBatch:
        """The episodes ``specs`` (one shape) from embedded items; way ``k`` is class ``k`` of
        each spec, as in :func:`~anyshot.episodes.make_episode`."""
        support, targets, query, query_targets = episode_tensors(features, specs)
        return cls(support, targets, query, query_targets, len(specs[0].classes))

    def __len__(self) -> int:
        return int(self.support.shape[0])

    def first(self, count: int) -> EpisodeBatch:
        """The first ``count`` episodes."""
        return EpisodeBatch(
            self.support[:count],
            self.targets[:count],
            self.query[:count],
            self.query_targets[:count],
            self.ways,
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """The episodes file of ``easyfsl_methods.py``: ``support``, ``support_labels``,
        ``query``, ``query_labels`` (contiguous)."""
        return {
            "support": self.support.contiguous(),
            "support_labels": self.targets.contiguous(),
            "query": self.query.contiguous(),
            "query_labels": self.query_targets.contiguous(),
        }


@dataclass(frozen=True)
class MethodRun:
    """A method's results on an :class:`EpisodeBatch`.

    Attributes:
        logits: ``[E, Q, K]`` query logits.
        accuracies: per episode.
        seconds: per episode: its own call's wall time one at a time; batched, the batch's
            wall time divided by ``E``.
    """

    logits: torch.Tensor
    accuracies: list[float]
    seconds: list[float]

    @property
    def seconds_total(self) -> float:
        return float(sum(self.seconds))

    def summary(self) -> dict[str, Any]:
        """Accuracy statistics (:func:`~anyshot.evaluation.summarize`: mean, std, 95% CI,
        episodes, ...) and :func:`timing`."""
        return {**summarize(self.accuracies), **timing(self.seconds)}


def timing(seconds: Sequence[float]) -> dict[str, float]:
    """Total, mean and median of per-episode ``seconds``, and episodes per second."""
    values = np.asarray(seconds, dtype=np.float64)
    total = float(values.sum())
    return {
        "seconds_total": total,
        "seconds_per_episode_mean": float(values.mean()),
        "seconds_per_episode_median": float(np.median(values)),
        "episodes_per_s": float(len(values) / total) if total > 0 else float("inf"),
    }


def run_method(
    method: Method,
    batch: EpisodeBatch,
    *,
    one_at_a_time: bool = False,
    episodes_per_chunk: int = 64,
    show_progress: bool = False,
) -> MethodRun:
    """Run a head-scope method (or support-init) on every episode of ``batch`` via
    ``fit_features``: one call on all ``E`` episodes, or (``one_at_a_time``) ``E`` calls of one
    episode each. Episodes are independent, so both give the same logits (up to float
    rounding); only the time differs."""
    if one_at_a_time:
        parts: list[torch.Tensor] = []
        seconds: list[float] = []
        bar = progress_bar(total=len(batch), desc="episodes", enabled=show_progress, unit="episode")
        for e in range(len(batch)):
            start = time.perf_counter()
            fitted = method.fit_features(
                batch.support[e], batch.targets[e], batch.query[e], ways=batch.ways
            )
            seconds.append(time.perf_counter() - start)
            parts.append(fitted.query_logits)
            bar.update(1)
        bar.close()
        logits = torch.cat(parts)
    else:
        start = time.perf_counter()
        logits = method.fit_features(
            batch.support,
            batch.targets,
            batch.query,
            ways=batch.ways,
            episodes_per_chunk=episodes_per_chunk,
        ).query_logits
        seconds = [(time.perf_counter() - start) / len(batch)] * len(batch)
    correct = logits.argmax(-1) == batch.query_targets
    return MethodRun(logits, correct.float().mean(-1).tolist(), seconds)


def compare_methods(
    methods: Mapping[str, Method],
    features: ItemFeatures,
    specs: Sequence[EpisodeSpec],
    *,
    cell: str,
) -> dict[str, float]:
    """Mean accuracy (%) of each method on the same episodes (any shapes: they are grouped and
    batched by :func:`~anyshot.evaluation.cached.evaluate_cached`); prints a line per method."""
    accuracies: dict[str, float] = {}
    for label, method in methods.items():
        records = evaluate_cached(method, features, specs).records
        accuracies[label] = 100 * float(np.mean([r["accuracy"] for r in records]))
        print(f"{cell:50s} {label:40s} {accuracies[label]:7.3f}", flush=True)
    return accuracies
