"""Per-episode records and honest statistics: the one record builder, the summary, the result.

The summary reports the mean accuracy, the standard deviation *across episodes* (the spread a
user will meet on one task) and the 95% confidence interval of the mean, ``1.96 std / sqrt(n)``.
Accuracies are fractions in ``[0, 1]``.

Every record also holds its queries' calibration bins (:mod:`anyshot.calibration`; confidence
= the maximum softmax probability of the method's query logits), and the summary the expected
calibration error of all the run's query predictions pooled (``ece``; an outlier's prediction,
a class it is not of, counts as wrong). Open-set episodes (query
targets :data:`~anyshot.episodes.OUTLIER` for outliers) record the accuracy on the inlier
queries as ``accuracy``, the AUROC and AUPR of the outlier score (outliers as positives:
the product's, :func:`anyshot.outliers.episode_outlier_score`, when the caller gives it, else
the method's maximum softmax probability; :data:`OUTLIER_SCORES`), the AUROC of the MSP
(``msp_auroc``), and their summary adds ``auroc_*``, ``aupr_*``, ``msp_auroc_*`` and
``inlier_ece``.
"""

from __future__ import annotations

import math
import os
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anyshot import __version__
from anyshot.calibration import CalibrationBins, calibration_bins
from anyshot.io import write_json
from anyshot.outliers import auroc, average_precision, msp_score

__all__ = [
    "OUTLIER_SCORES",
    "EvaluationResult",
    "calibration_summary",
    "environment_info",
    "episode_record",
    "open_set_summary",
    "pooled_bins",
    "running_accuracy",
    "summarize",
]


#: The outlier scores an open-set record's ``auroc`` / ``aupr`` can be of (its
#: ``outlier_score``), and what each is.
OUTLIER_SCORES = {
    "nearest-mean": "cosine distance to the nearest support class mean of the frozen "
    "embeddings, averaged with the centred one where the queries cover the classes (the "
    "product's outlier_score)",
    "msp": "1 - max softmax probability of the method's query logits",
}


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
    answer: str | None = None,
    outlier_scores: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The record of one episode (see :class:`EvaluationResult`).

    Args:
        index: the episode's position in the run.
        logits: query logits ``[Q, K]``.
        targets: query class indices ``[Q]``; :data:`~anyshot.episodes.OUTLIER` (``-1``) marks
            an outlier query (open-set episodes).
        ways: ``K``.
        shots: support images per class.
        seconds: the method's time on this episode.
        hardness: the episode's hardness, stored when given.
        answer: which head of the method answered (``"first"``, ``"tsallis"``, ``"gate"``,
            ``"guard"``: :func:`anyshot.methods.features.answer_of`), stored when given.
        outlier_scores: ``[Q]`` the product's outlier scores of the queries
            (:func:`anyshot.outliers.episode_outlier_score`) for an open-set episode's
            ``auroc`` / ``aupr``; ``None``: those of the method's MSP.

    Raises:
        ValueError: no inlier query.
    """
    inlier = targets >= 0
    if not bool(inlier.any()):
        raise ValueError("an episode needs at least one query of its classes")
    predictions = logits.argmax(dim=1)
    log_p = torch.log_softmax(logits.float(), dim=1)
    confidence = log_p.exp().amax(dim=1)
    correct = predictions == targets  # an outlier is never right
    record: dict[str, Any] = {
        "index": index,
        "accuracy": float(correct[inlier].float().mean()),
        "ways": ways,
        "shots": list(shots),
        "queries": len(targets),
        "seconds": seconds,
        "entropy": float(-(log_p.exp() * log_p).sum(dim=1).mean()),
        "calibration": calibration_bins(confidence, correct).to_dict(),
    }
    if not bool(inlier.all()):
        record.update(_open_set_fields(logits, inlier, confidence, correct, outlier_scores))
    if hardness is not None:
        record["hardness"] = float(hardness)
    if answer is not None:
        record["answer"] = answer
    return record


def _open_set_fields(
    logits: torch.Tensor,
    inlier: torch.Tensor,
    confidence: torch.Tensor,
    correct: torch.Tensor,
    outlier_scores: torch.Tensor | None,
) -> dict[str, Any]:
    """An open-set episode's extra record fields, from its logits ``[Q, K]``, inlier mask,
    confidences, correctness and outlier scores (or ``None``) ``[Q]``: outlier count, AUROC
    and AUPR of the outlier score (outliers as positives), the MSP's AUROC, and the
    calibration bins of the inlier queries alone."""
    msp = msp_score(logits)
    scores = msp if outlier_scores is None else outlier_scores.float().cpu()
    if scores.shape != msp.shape:
        raise ValueError(f"need {msp.shape[0]} outlier scores, got {tuple(scores.shape)}")
    outlier = ~inlier
    return {
        "outliers": int(outlier.sum()),
        "outlier_score": "msp" if outlier_scores is None else "nearest-mean",
        "auroc": auroc(scores, outlier),
        "aupr": average_precision(scores, outlier),
        "msp_auroc": auroc(msp, outlier),
        "inlier_calibration": calibration_bins(confidence[inlier], correct[inlier]).to_dict(),
    }


def _spread(name: str, values: Sequence[float]) -> dict[str, float]:
    """``NAME_mean``, ``NAME_std`` (ddof 1; 0 for one value) and ``NAME_ci95`` of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {
        f"{name}_mean": float(array.mean()),
        f"{name}_std": std,
        f"{name}_ci95": 1.96 * std / math.sqrt(array.size),
    }


def open_set_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """AUROC and AUPR (mean, std, 95% CI over the records that have them), the score they
    are of, and the pooled ECE of the inlier queries; empty without open-set records."""
    scored = [r for r in records if "auroc" in r]
    if not scored:
        return {}
    names = sorted({str(r.get("outlier_score", "msp")) for r in scored})
    summary: dict[str, Any] = {
        "outlier_score": " / ".join(f"{n}: {OUTLIER_SCORES.get(n, n)}" for n in names),
        "open_set_episodes": len(scored),
    }
    summary.update(_spread("auroc", [float(r["auroc"]) for r in scored]))
    summary.update(_spread("aupr", [float(r["aupr"]) for r in scored]))
    msp = [float(r["msp_auroc"]) for r in scored if "msp_auroc" in r]
    if msp:  # absent from results written before the product's score
        summary.update(_spread("msp_auroc", msp))
    summary.update(calibration_summary(scored, key="inlier_calibration", name="inlier_ece"))
    return summary


def calibration_summary(
    records: Sequence[dict[str, Any]], *, key: str = "calibration", name: str = "ece"
) -> dict[str, Any]:
    """``{name: ECE, name + "_predictions": N}`` of every record's ``key`` bins pooled (empty
    when no record has them, e.g. results written before records held calibration bins)."""
    bins = pooled_bins(records, key)
    if bins is None or bins.total == 0:
        return {}
    return {name: bins.ece(), f"{name}_predictions": bins.total}


def pooled_bins(
    records: Sequence[dict[str, Any]], key: str = "calibration"
) -> CalibrationBins | None:
    """The sum of the records' ``key`` calibration bins, or ``None`` when none has them."""
    parts = [CalibrationBins.from_dict(r[key]) for r in records if isinstance(r.get(key), dict)]
    if not parts:
        return None
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


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
            ``entropy`` (mean query prediction entropy, nats), ``calibration`` (the queries'
            confidence bins, :class:`~anyshot.calibration.CalibrationBins`), ``hardness``
            when the evaluation was given a hardness hook, and ``answer`` (which head of a
            fine-tuning method at scope ``head`` answered; the summary's ``answers`` counts
            them). Open-set episodes: ``accuracy`` is
            the inlier queries' accuracy, plus ``outliers``, ``outlier_score`` (which score
            ``auroc`` and ``aupr`` are of: :data:`OUTLIER_SCORES`), ``auroc``, ``aupr``,
            ``msp_auroc`` and ``inlier_calibration``.
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
        stats.update(calibration_summary(self.records))
        stats.update(open_set_summary(self.records))
        answers = Counter(r["answer"] for r in self.records if "answer" in r)
        if answers:  # which head answered how many episodes
            stats["answers"] = dict(sorted(answers.items()))
        return stats

    def to_dict(self) -> dict[str, Any]:
        """``{"summary": ..., "config": ..., "episodes": [...]}``."""
        return {"summary": self.summary, "config": self.config, "episodes": self.records}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as JSON, atomically."""
        return write_json(path, self.to_dict())
