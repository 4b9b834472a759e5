"""Calibration of predicted confidences: reliability bins and the expected calibration error.

A prediction's confidence is its maximum softmax probability; it is calibrated when, among the
predictions made with confidence ``c``, a fraction ``c`` is right. The expected calibration
error (ECE, Naeini et al. AAAI 2015; Guo et al. ICML 2017) bins the confidences into ``B``
equal-width bins ``(b/B, (b+1)/B]`` (a confidence of 0 goes to the first) and averages
``|accuracy_b - mean confidence_b|`` weighted by each bin's share of the predictions.

The bins are kept as sums (:class:`CalibrationBins`), so bins of many episodes add up to the
bins of all their predictions pooled: an evaluation records each episode's bins and reports
the ECE of the whole run from their sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["BINS", "CalibrationBins", "calibration_bins", "expected_calibration_error"]

#: Equal-width confidence bins of the ECE (15, as Guo et al. 2017).
BINS = 15


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin sums of predictions: ``count [B]`` (ints), ``confidence [B]`` (sum of the
    confidences) and ``correct [B]`` (number right). Add them with ``+``."""

    count: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray

    def __add__(self, other: CalibrationBins) -> CalibrationBins:
        if len(self.count) != len(other.count):
            raise ValueError(f"cannot add {len(self.count)} bins to {len(other.count)}")
        return CalibrationBins(
            self.count + other.count,
            self.confidence + other.confidence,
            self.correct + other.correct,
        )

    @property
    def total(self) -> int:
        """Predictions in all bins."""
        return int(self.count.sum())

    def ece(self) -> float:
        """``sum_b |correct_b - confidence_b| / N``: the ECE of the binned predictions.

        Raises:
            ValueError: no predictions.
        """
        if self.total == 0:
            raise ValueError("no predictions to compute a calibration error from")
        return float(np.abs(self.correct - self.confidence).sum() / self.total)

    def to_dict(self) -> dict[str, list[Any]]:
        """``{"count": [...], "confidence": [...], "correct": [...]}`` (JSON-ready)."""
        return {
            "count": [int(c) for c in self.count],
            "confidence": [float(c) for c in self.confidence],
            "correct": [int(c) for c in self.correct],
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> CalibrationBins:
        """The inverse of :meth:`to_dict`."""
        return cls(
            np.asarray(entry["count"], dtype=np.int64),
            np.asarray(entry["confidence"], dtype=np.float64),
            np.asarray(entry["correct"], dtype=np.int64),
        )


def calibration_bins(
    confidence: np.ndarray | torch.Tensor,
    correct: np.ndarray | torch.Tensor,
    bins: int = BINS,
) -> CalibrationBins:
    """Sums of ``confidence`` ``[N]`` (in ``[0, 1]``) and ``correct`` ``[N]`` (bools) per bin.

    Raises:
        ValueError: mismatched lengths, a confidence outside ``[0, 1]``, or ``bins < 1``.
    """
    values = np.asarray(confidence, dtype=np.float64).reshape(-1)
    right = np.asarray(correct, dtype=bool).reshape(-1)
    if bins < 1:
        raise ValueError(f"need at least one bin, got {bins}")
    if values.shape != right.shape:
        raise ValueError(f"{values.size} confidences but {right.size} correctness flags")
    if values.size and not (values.min() >= 0.0 and values.max() <= 1.0):
        raise ValueError("confidences must lie in [0, 1]")
    index = np.clip(np.ceil(values * bins).astype(np.int64) - 1, 0, bins - 1)
    return CalibrationBins(
        np.bincount(index, minlength=bins).astype(np.int64),
        np.bincount(index, weights=values, minlength=bins),
        np.bincount(index, weights=right, minlength=bins).round().astype(np.int64),
    )


def expected_calibration_error(
    confidence: np.ndarray | torch.Tensor,
    correct: np.ndarray | torch.Tensor,
    bins: int = BINS,
) -> float:
    """The ECE of predictions with ``confidence`` ``[N]`` and ``correct`` ``[N]``, over
    ``bins`` equal-width bins (see the module docstring).

    Raises:
        ValueError: no predictions, or the errors of :func:`calibration_bins`.
    """
    return calibration_bins(confidence, correct, bins).ece()
