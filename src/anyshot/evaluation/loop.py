"""Run a method over a stream of episodes, one record per episode (:mod:`.records`).

An open-set episode's outliers are scored by the product's outlier score
(:func:`anyshot.outliers.episode_outlier_score`) on the backbone's frozen embeddings. A method
that runs on frozen embeddings alone (support-init, ``scope="head"``:
:func:`~anyshot.evaluation.cached.supports_cached`) embeds the episode once and both use the
rows; any other method trains the network, and the score takes one more forward pass of the
episode's images, outside the method's timing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.evaluation.cached import supports_cached
from anyshot.evaluation.records import (
    EvaluationResult,
    environment_info,
    episode_record,
    running_accuracy,
)
from anyshot.methods.features import answer_of
from anyshot.methods.finetune import FineTuning
from anyshot.methods.frozen import frozen_forward, resolve_device
from anyshot.outliers import episode_outlier_score
from anyshot.progress import progress_bar

__all__ = ["evaluate"]


def evaluate(
    method: Callable[[nn.Module, Episode], torch.Tensor],
    backbone: nn.Module,
    episodes: Iterable[Episode],
    *,
    total: int | None = None,
    config: dict[str, Any] | None = None,
    show_progress: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    hardness: Callable[[int, Episode], float] | None = None,
    targets: Callable[[int, Episode], torch.Tensor] | None = None,
    progress_desc: str = "episodes",
) -> EvaluationResult:
    """Run ``method(backbone, episode)`` on every episode and record its accuracy.

    Args:
        method: any few-shot method (see :mod:`anyshot.methods`).
        backbone: the network; never modified.
        episodes: episodes with query labels (a generator is fine: it is consumed lazily).
        total: number of episodes, for the progress bar.
        config: free-form description stored in the result.
        show_progress: draw a progress bar with the running mean accuracy.
        on_record: called with each record as soon as it exists (e.g. to stream to disk).
        hardness: ``hardness(index, episode) -> Omega`` (see :mod:`anyshot.hardness`), stored
            as each record's ``hardness``; ``index`` is the episode's position in the stream.
        targets: ``targets(index, episode) -> [Q]`` query targets, for episodes whose queries
            have no labels (open-set episodes: outliers are
            :data:`~anyshot.episodes.OUTLIER`); default the episodes' query labels.
        progress_desc: the progress bar's label.

    Raises:
        ValueError: an episode without query labels (and no ``targets``) or with no query
            images.
    """
    result = EvaluationResult(config={**(config or {}), "environment": environment_info()})
    bar = progress_bar(total=total, desc=progress_desc, enabled=show_progress, unit="episode")
    try:
        for index, episode in enumerate(_checked(episodes, labelled=targets is None)):
            truth = episode.query_targets if targets is None else targets(index, episode)
            assert truth is not None
            open_set = bool((truth < 0).any())
            logits, answer, seconds, rows = _timed(method, backbone, episode, open_set)
            record = episode_record(
                index,
                logits,
                truth,
                ways=episode.ways,
                shots=episode.shots,
                seconds=seconds,
                hardness=None if hardness is None else hardness(index, episode),
                answer=answer,
                outlier_scores=None if rows is None else _outlier_scores(episode, *rows),
            )
            result.records.append(record)
            if on_record is not None:
                on_record(record)
            bar.set_postfix(accuracy=running_accuracy(result.records), refresh=False)
            bar.update(1)
    finally:
        bar.close()
    if not result.records:
        raise ValueError("no episodes were given")
    return result


def _run(
    method: Callable[[nn.Module, Episode], torch.Tensor], backbone: nn.Module, episode: Episode
) -> tuple[torch.Tensor, str | None]:
    """``(query logits [Q, K], which head answered or None)``: a method with ``fit`` (fine-
    tuning) runs it, the same computation as calling it, to learn which head answered."""
    fit = getattr(method, "fit", None)
    if not callable(fit):
        return method(backbone, episode), None
    fitted = fit(backbone, episode)
    return fitted.query_logits, getattr(fitted, "answer", None)


def _timed(
    method: Callable[[nn.Module, Episode], torch.Tensor],
    backbone: nn.Module,
    episode: Episode,
    open_set: bool,
) -> tuple[torch.Tensor, str | None, float, tuple[torch.Tensor, torch.Tensor] | None]:
    """``(query logits [Q, K], which head answered, the method's seconds, frozen embeddings)``;
    the embeddings (support, query) only for an open-set episode: those the method embedded
    when it runs on frozen embeddings, else a forward pass outside the timing."""
    start = time.perf_counter()
    if open_set and supports_cached(method):
        logits, answer, rows = _run_embedded(method, backbone, episode)
        return logits, answer, time.perf_counter() - start, rows
    logits, answer = _run(method, backbone, episode)
    seconds = time.perf_counter() - start
    return logits, answer, seconds, _frozen_rows(method, backbone, episode) if open_set else None


def _run_embedded(
    method: Any, backbone: nn.Module, episode: Episode
) -> tuple[torch.Tensor, str | None, tuple[torch.Tensor, torch.Tensor]]:
    """``(query logits [Q, K], which head answered, (support, query) frozen rows)`` of a method
    that runs on frozen embeddings (:func:`~anyshot.evaluation.cached.supports_cached`): the
    episode embedded once, as calling the method embeds it, then the method's
    ``fit_features`` on the rows (head fine-tuning on the backbone's device, as
    :meth:`~anyshot.methods.FineTuning.fit`; support-init on its own ``device``, as its call)."""
    if isinstance(method, FineTuning):
        method = dataclasses.replace(method, device=str(resolve_device(backbone, method.device)))
    support, query = _frozen_rows(method, backbone, episode)
    fitted = method.fit_features(support, episode.support_targets, query, ways=episode.ways)
    return fitted.query_logits[0], answer_of(fitted), (support, query)


def _frozen_rows(
    method: object, backbone: nn.Module, episode: Episode
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(support, query)`` frozen embeddings of the episode's images, as the backbone gives
    them (the method's ``batch_size`` and ``device`` when it has them)."""
    batch_size: int = getattr(method, "batch_size", 128)
    device = getattr(method, "device", None)
    support = frozen_forward(backbone, episode.support, batch_size=batch_size, device=device)
    query = frozen_forward(backbone, episode.query, batch_size=batch_size, device=device)
    return support, query


def _outlier_scores(episode: Episode, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``[Q]`` the product's outlier scores of the episode's queries from its frozen support
    and query embeddings (flattened to ``[S, D]`` and ``[Q, D]`` rows)."""
    support, query = support.flatten(1)[None], query.flatten(1)[None]
    return episode_outlier_score(support, episode.support_targets[None], query, episode.ways)[0]


def _checked(episodes: Iterable[Episode], *, labelled: bool = True) -> Iterator[Episode]:
    for episode in episodes:
        if (labelled and episode.query_labels is None) or len(episode.query) == 0:
            raise ValueError("evaluation needs episodes with query images and query labels")
        yield episode
