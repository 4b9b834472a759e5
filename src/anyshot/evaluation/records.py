"""Per-episode records and honest statistics: the one record builder, the summary, the result.

The summary reports the mean accuracy, the standard deviation *across episodes* (the spread a
user will meet on one task) and the 95% confidence interval of the mean, ``1.96 std / sqrt(n)``.
Accuracies are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyshot import __version__
from anyshot.io import write_json

__all__ = [
    "EvaluationResult",
    "environment_info",
    "episode_record",
    "running_accuracy",
    "summarize",
]


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


def episode_record(
    index: int,
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    ways: int,
    shots: Sequence[int],
    seconds: float,
    hardness: float | None = None,
) -> dict[str, Any]:
    """The record of one episode (see :class:`EvaluationResult`).

    Args:
        index: the episode's position in the run.
        logits: query logits ``[Q, K]``.
        targets: query class indices ``[Q]``.
        ways: ``K``.
        shots: support images per class.
        seconds: the method's time on this episode.
        hardness: the episode's hardness, stored when given.
    """
    predictions = logits.argmax(dim=1)
    log_p = torch.log_softmax(logits.float(), dim=1)
    record: dict[str, Any] = {
        "index": index,
        "accuracy": float((predictions == targets).float().mean()),
        "ways": ways,
        "shots": list(shots),
        "queries": len(targets),
        "seconds": seconds,
        "entropy": float(-(log_p.exp() * log_p).sum(dim=1).mean()),
    }
    if hardness is not None:
        record["hardness"] = float(hardness)
    return record


def running_accuracy(records: Sequence[dict[str, Any]]) -> str:
    """The mean accuracy of ``records`` so far, for a progress bar (``"87.50%"``)."""
    return f"{100 * np.mean([r['accuracy'] for r in records]):.2f}%"


def environment_info() -> dict[str, Any]:
    """Versions and machine facts stored with every result (``config["environment"]``)."""
    return {
        "anyshot_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }


@dataclass
class EvaluationResult:
    """Per-episode records plus their summary.

    Attributes:
        records: one dict per episode (:func:`episode_record`): ``index``, ``accuracy``,
            ``ways``, ``shots`` (per class), ``queries``, ``seconds`` (the method alone),
            ``entropy`` (mean query prediction entropy, nats), and ``hardness`` when the
            evaluation was given a hardness hook.
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
