"""Outlier scores of query images, and how well they separate outliers from inliers.

An outlier score is one number per query, higher = more likely an image of none of the
episode's classes (:data:`anyshot.episodes.OUTLIER`). The evaluation's default is
:func:`msp_score`; the product's later ``outlier_score`` belongs here too.

* :func:`msp_score` -- one minus the maximum softmax probability of the query logits (MSP,
  Hendrycks & Gimpel, ICLR 2017), from any method's logits;
* :func:`nearest_mean_distance` -- minus the largest cosine between a query and the support
  class means (distance to the nearest class mean), from the embeddings;
* :func:`auroc` and :func:`average_precision` -- the area under the ROC curve and the average
  precision of a score, outliers as positives; they equal scikit-learn's ``roc_auc_score``
  and ``average_precision_score`` (ties included) without depending on it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["OUTLIER_SCORES", "auroc", "average_precision", "msp_score", "nearest_mean_distance"]

#: Outlier scores the evaluation can compute from query logits alone, by name.
OUTLIER_SCORES = ("msp",)


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """``1 - max_k softmax(logits)_k``: ``[..., Q, K]`` logits -> ``[..., Q]`` scores in
    ``[0, 1 - 1/K]`` (e.g. ``[E, Q, K] -> [E, Q]``)."""
    return 1.0 - torch.softmax(logits.float(), dim=-1).amax(dim=-1)


def nearest_mean_distance(
    support: torch.Tensor,
    targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
) -> torch.Tensor:
    """Minus the largest cosine between each query and the support class means.

    Rows are rectified (``relu``, as support-init does) and L2-normalised; a class mean is the
    mean of its unit support rows.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..ways-1`` (every class present).
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.

    Returns:
        ``[E, Q]`` scores in ``[-1, 1]``, higher = farther from every class mean.
    """
    if support.dim() != 3 or query.dim() != 3 or targets.shape != support.shape[:2]:
        raise ValueError(
            f"need support [E, S, D], targets [E, S], query [E, Q, D]; got "
            f"{tuple(support.shape)}, {tuple(targets.shape)}, {tuple(query.shape)}"
        )
    rows, queries = support.float(), query.float()
    if relu:
        rows, queries = rows.clamp_min(0), queries.clamp_min(0)
    one_hot = F.one_hot(targets.long(), ways).float()  # [E, S, K]
    means = one_hot.transpose(1, 2) @ F.normalize(rows, dim=-1) / one_hot.sum(1).unsqueeze(-1)
    cosine = F.normalize(queries, dim=-1) @ F.normalize(means, dim=-1).transpose(1, 2)
    return -cosine.amax(dim=-1)


def _checked(
    scores: np.ndarray | torch.Tensor, is_outlier: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Both as 1-D numpy arrays (float scores, bool labels), with both classes present."""
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(is_outlier, dtype=bool).reshape(-1)
    if values.shape != positive.shape:
        raise ValueError(f"{values.size} scores but {positive.size} outlier flags")
    if not positive.any() or positive.all():
        raise ValueError("AUROC and AUPR need at least one outlier and one inlier")
    if not np.isfinite(values).all():
        raise ValueError("outlier scores must be finite")
    return values, positive


def auroc(scores: np.ndarray | torch.Tensor, is_outlier: np.ndarray | torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` ``[N]`` for ``is_outlier`` ``[N]`` (positives).

    The probability that a random outlier scores above a random inlier, ties counting one half
    (the Mann-Whitney U statistic over ``P x N``, from average ranks).

    Raises:
        ValueError: no outlier or no inlier, mismatched lengths, or a non-finite score.
    """
    values, positive = _checked(scores, is_outlier)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]  # average rank of each tie group
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(
    scores: np.ndarray | torch.Tensor, is_outlier: np.ndarray | torch.Tensor
) -> float:
    """Average precision (area under the precision-recall curve, outliers as positives).

    ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order, as
    scikit-learn's ``average_precision_score`` (no interpolation). ``scores`` and
    ``is_outlier`` are ``[N]``.

    Raises:
        ValueError: no outlier or no inlier, mismatched lengths, or a non-finite score.
    """
    values, positive = _checked(scores, is_outlier)
    order = np.argsort(-values, kind="stable")
    values, positive = values[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(values)), values.size - 1]  # end of each tie group
    true_pos = np.cumsum(positive)[last]
    precision = true_pos / (last + 1.0)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))
