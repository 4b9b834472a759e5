"""Run a method over a stream of episodes; keep one record per episode and honest statistics.

The summary reports the mean accuracy, the standard deviation *across episodes* (the spread a
user will meet on one task) and the 95% confidence interval of the mean, ``1.96 std / sqrt(n)``.
Accuracies are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anyshot import __version__
from anyshot.episodes import Episode
from anyshot.io import write_json
from anyshot.progress import progress_bar

__all__ = ["EvaluationResult", "evaluate", "summarize"]


def summarize(accuracies: Iterable[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (ddof 1) and 95% CI half-width of per-episode accuracies.

    With one episode the standard deviation and interval are 0 (nothing to estimate them from).
    """
    values = np.asarray(list(accuracies), dtype=np.float64)
    n = int(values.size)
    if n == 0:
        raise ValueError("no episodes to summarise")
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    return {
        "episodes": n,
        "accuracy_mean": float(values.mean()),
        "accuracy_std": std,
        "accuracy_ci95": 1.96 * std / math.sqrt(n),
        "accuracy_median": float(np.median(values)),
        "accuracy_min": float(values.min()),
        "accuracy_max": float(values.max()),
    }


@dataclass
class EvaluationResult:
    """Per-episode records plus their summary.

    Attributes:
        records: one dict per episode: ``index``, ``accuracy``, ``ways``, ``shots`` (per class),
            ``queries``, ``seconds`` (the method alone), ``entropy`` (mean query prediction
            entropy, nats), and ``hardness`` when :func:`evaluate` was given a hardness hook.
        config: what was run (method, backbone, dataset, ...), stored beside the summary.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """Statistics over :attr:`records` (see :func:`summarize`) and timing."""
        stats: dict[str, Any] = summarize(r["accuracy"] for r in self.records)
        seconds = [r["seconds"] for r in self.records]
        stats["seconds_per_episode_mean"] = float(np.mean(seconds))
        stats["seconds_per_episode_median"] = float(np.median(seconds))
        return stats

    def to_dict(self) -> dict[str, Any]:
        """``{"summary": ..., "config": ..., "episodes": [...]}``."""
        return {"summary": self.summary, "config": self.config, "episodes": self.records}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return write_json(path, self.to_dict())


def _environment() -> dict[str, Any]:
    return {
        "anyshot_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }


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

    Raises:
        ValueError: an episode without query labels or with no query images.
    """
    result = EvaluationResult(config={**(config or {}), "environment": _environment()})
    bar = progress_bar(total=total, desc="episodes", enabled=show_progress, unit="episode")
    try:
        for index, episode in enumerate(_checked(episodes)):
            start = time.perf_counter()
            logits = method(backbone, episode)
            seconds = time.perf_counter() - start
            targets = episode.query_targets
            assert targets is not None
            predictions = logits.argmax(dim=1)
            log_p = torch.log_softmax(logits.float(), dim=1)
            record = {
                "index": index,
                "accuracy": float((predictions == targets).float().mean()),
                "ways": episode.ways,
                "shots": list(episode.shots),
                "queries": len(episode.query),
                "seconds": seconds,
                "entropy": float(-(log_p.exp() * log_p).sum(dim=1).mean()),
            }
            if hardness is not None:
                record["hardness"] = float(hardness(index, episode))
            result.records.append(record)
            if on_record is not None:
                on_record(record)
            running = np.mean([r["accuracy"] for r in result.records])
            bar.set_postfix(accuracy=f"{100 * running:.2f}%", refresh=False)
            bar.update(1)
    finally:
        bar.close()
    if not result.records:
        raise ValueError("no episodes were given")
    return result


def _checked(episodes: Iterable[Episode]) -> Iterator[Episode]:
    for episode in episodes:
        if episode.query_labels is None or len(episode.query) == 0:
            raise ValueError("evaluation needs episodes with query images and query labels")
        yield episode
