"""Outlier scores of query images, and how well they separate outliers from inliers.

An outlier score is one number per query, higher = more likely an image of none of the
episode's classes (:data:`anyshot.episodes.OUTLIER`). The product's (``FewShotClassifier.
outlier_score``, the ``outlier_score`` column of ``classify`` / ``predict``, and the one
``anyshot evaluate --protocol open-set`` scores) is :func:`episode_outlier_score`: the
:func:`outlier_distance` (the cosine distance to the nearest class mean, centred and not, where
:func:`covering_centre` centres), with the threshold of :func:`unknown_threshold`.

* :func:`msp_score` -- one minus the maximum softmax probability of the query logits (MSP,
  Hendrycks & Gimpel, ICLR 2017), from any method's logits;
* :func:`nearest_mean_distance` -- the cosine distance from a query to the nearest support
  class mean (:func:`class_means`), from the embeddings; with a ``centre``
  (:func:`outlier_centre`: the mean of the episode's unit rows, labelled and unlabelled) every
  row is centred on it and normalised again before the cosines. The product centres only
  where the unlabelled rows cover the classes (:func:`covers_classes`): a centre leaning
  towards the few classes a query folder holds would push their own images away;
* :func:`outlier_distance` -- the product's score: with a centre, the mean of the centred and
  the uncentred :func:`nearest_mean_distance`. Centring separates images of other classes
  better, but it keeps only the direction of a row's offset from the centre: a blank or
  near-blank frame, far from every class, then looks like an unusual image of one of them
  (``studies/blank-frames/``); the uncentred distance keeps it far;
* :func:`unknown_threshold` -- the score above which an image is called "none of these", set
  from the labelled images alone for a target false-alarm rate (no outlier examples);
* :func:`auroc` and :func:`average_precision` -- the area under the ROC curve and the average
  precision of a score, outliers as positives; they equal scikit-learn's ``roc_auc_score``
  and ``average_precision_score`` (ties included) without depending on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CENTRED_ONE_SHOT_QUANTILE",
    "COVERING_SHARE",
    "ONE_SHOT_QUANTILE",
    "UnknownReference",
    "auroc",
    "average_precision",
    "class_means",
    "covering",
    "covering_centre",
    "covers_classes",
    "effective_classes",
    "episode_outlier_score",
    "leave_one_out_distances",
    "mean_distance",
    "mean_outlier_distance",
    "msp_score",
    "nearest_mean_distance",
    "other_class_distances",
    "outlier_centre",
    "outlier_distance",
    "unknown_reference",
    "unknown_threshold",
]

#: With one labelled image per class, the threshold at a 5% target is this quantile of the
#: distances between images of different classes (at rate ``r``: the quantile ``0.3 * 0.05 /
#: r``, capped at 1: more flags at a higher rate). On validation classes
#: (``studies/unknown-threshold``) it gave 5.5 / 5.0% false alarms (mini-ImageNet 5 / 8 ways)
#: and 6.1 / 1.0% (Omniglot 5 / 20 ways) at a 5% target: with one image per class the
#: false-alarm rate is approximated, not controlled.
ONE_SHOT_QUANTILE = 0.3

#: :data:`ONE_SHOT_QUANTILE` for the score of centred rows (:func:`outlier_distance`: the mean
#: of the centred and uncentred distances), whose between-class distances are spread wider
#: relative to the clean ones. On validation classes (``studies/blank-frames``, 5 ways, 15 / 25
#: / 5 clean queries among 30, 300 episodes a cell) quantile 0.25 gave 3.9-4.9% false alarms
#: (mini-ImageNet) and 4.9-5.7% (Omniglot) at a 5% target; 0.22: 4.3-6.4%, 0.3: 3.0-4.8%.
CENTRED_ONE_SHOT_QUANTILE = 0.25


def msp_score(logits: torch.Tensor) -> torch.Tensor:
    """``1 - max_k softmax(logits)_k``: ``[..., Q, K]`` logits -> ``[..., Q]`` scores in
    ``[0, 1 - 1/K]`` (e.g. ``[E, Q, K] -> [E, Q]``)."""
    return 1.0 - torch.softmax(logits.float(), dim=-1).amax(dim=-1)


def _unit(rows: torch.Tensor, relu: bool, centre: torch.Tensor | None = None) -> torch.Tensor:
    """``[..., N, D]`` rows rectified (``relu``, as support-init does) and L2-normalised, in
    float32; with a ``centre`` ``[..., D]`` (:func:`outlier_centre`) then centred on it and
    normalised again."""
    rows = rows.float()
    unit = F.normalize(rows.clamp_min(0) if relu else rows, dim=-1)
    if centre is None:
        return unit
    return F.normalize(unit - centre.float().unsqueeze(-2), dim=-1)


def outlier_centre(
    support: torch.Tensor, unlabeled: torch.Tensor, *, relu: bool = True
) -> torch.Tensor:
    """The centre of an episode's rows: the mean of its unit (rectified) labelled and
    unlabelled rows together (the transductive centre of OSTIM / TIM).

    Centred on it, the cosine to the nearest class mean separates images of none of the
    classes better than on the raw rows (``studies/open-set-score``: val AUROC +2 to +6
    points on mini-ImageNet and Omniglot, 1 and 5 shots). Labelled and unlabelled rows enter
    alike, so a left-out labelled row stays exchangeable with a new image of its class (the
    threshold's premise).

    Args:
        support: ``[..., S, D]`` labelled rows.
        unlabeled: ``[..., U, D]`` the episode's other rows (queries, unlabelled images);
            ``U = 0`` allowed.

    Returns:
        ``[..., D]``.
    """
    rows = torch.cat([support.float(), unlabeled.float().to(support.device)], dim=-2)
    return _unit(rows, relu).mean(dim=-2)


#: :func:`covers_classes`: the unlabelled rows cover the classes when their nearest class means
#: spread over at least this share of the ``K`` classes (effective number,
#: :func:`effective_classes`). On validation classes (``studies/open-set-score``, README "The
#: centre where the queries cover the classes") it centred 58-100% of the open-set episodes of
#: 5 classes (38% of mini-ImageNet's with 5 inliers among 30 queries at one shot) and none of
#: the query sets that hold 1, 3 or 5 of 16 mini-ImageNet classes. The guard of
#: :func:`anyshot.methods.head.safeguarded` uses the same share (:func:`covering`) on
#: support-init's predictions (``studies/guard-scope``).
COVERING_SHARE = 0.75


def effective_classes(
    predictions: torch.Tensor, ways: int, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """``[E, Q]`` predicted class indices -> ``[E]`` float: the effective number of classes
    among them, ``exp`` of the entropy of their frequencies (``n`` classes predicted equally
    often give ``n``; a few stray predictions add little, unlike a count of distinct classes;
    ``1`` without predictions). ``keep``: ``[E, Q]`` bool, the predictions to count (all)."""
    hits = F.one_hot(predictions.long(), ways)  # [E, Q, K]
    if keep is not None:
        hits = hits * keep.to(hits.device).unsqueeze(-1)
    counts = hits.sum(1).float()  # [E, K]
    freq = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)
    return torch.exp(-(freq * freq.clamp_min(1e-12).log()).sum(-1))


def covering(predictions: torch.Tensor, ways: int) -> torch.Tensor:
    """``[E, Q]`` predicted class indices -> ``[E]`` bool (CPU): whether they spread over at
    least :data:`COVERING_SHARE` of the ``ways`` classes (:func:`effective_classes`); the rule
    of :func:`covers_classes`, for callers that hold their own predictions (the guard: those of
    support-init, whose class means average the raw rows, where :func:`covers_classes` averages
    unit rows; the same at one shot). Fewer than ``COVERING_SHARE * ways`` predictions never
    cover."""
    return (effective_classes(predictions, ways) >= COVERING_SHARE * ways).cpu()


def covers_classes(
    support: torch.Tensor,
    targets: torch.Tensor,
    unlabeled: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
) -> torch.Tensor:
    """Whether an episode's unlabelled rows cover its classes, so that :func:`outlier_centre`
    is a neutral origin: their nearest (uncentred) class means spread over at least
    :data:`COVERING_SHARE` of the ``K`` classes (:func:`effective_classes`).

    Queries of a few of many classes (a folder of 2 of 10 kinds) fail it: centred on a mean that
    leans towards those classes, their own images move away from their class means and are
    flagged (``studies/outlier-alarm/present_far.py``: 40-71% of the inliers of query sets of
    one of 16 mini-ImageNet classes at a 5% target).

    Args:
        support: ``[E, S, D]`` labelled rows; ``targets`` ``[E, S]``; ``unlabeled`` ``[E, U, D]``
            (``U = 0``: never covers).

    Returns:
        ``[E]`` bool.
    """
    if unlabeled.shape[-2] == 0:
        return torch.zeros(support.shape[0], dtype=torch.bool)
    means = class_means(support, targets, ways, relu=relu)
    unit = _unit(unlabeled.to(means.device), relu)
    return covering((unit @ means.transpose(1, 2)).argmax(-1), ways)  # argmax: [E, U]


def covering_centre(
    support: torch.Tensor,
    targets: torch.Tensor,
    unlabeled: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The product's centre of each episode: :func:`outlier_centre` where the unlabelled rows
    cover the classes (:func:`covers_classes`), zero (no centring: rows normalised again are
    the same rows) elsewhere.

    Args: as :func:`covers_classes` (``[E, S, D]``, ``[E, S]``, ``[E, U, D]``).

    Returns:
        ``(centre [E, D], covered [E] bool)``; pass ``centre[e]`` to :func:`unknown_threshold`
        only where ``covered[e]`` (``None`` elsewhere: the uncentred one-shot quantile).
    """
    covered = covers_classes(support, targets, unlabeled, ways, relu=relu)
    centre = outlier_centre(support, unlabeled, relu=relu)
    return centre * covered.to(centre.device).unsqueeze(-1), covered


def class_means(
    support: torch.Tensor,
    targets: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> torch.Tensor:
    """Unit class means: the mean of each class's unit (rectified, centred) support rows,
    normalised.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..ways-1`` (every class present).
        ways: ``K``.
        centre: ``[E, D]`` (:func:`outlier_centre`) or ``None`` (rows not centred).

    Returns:
        ``[E, K, D]`` unit rows.
    """
    if support.dim() != 3 or targets.shape != support.shape[:2]:
        raise ValueError(
            f"need support [E, S, D] and targets [E, S]; got {tuple(support.shape)}, "
            f"{tuple(targets.shape)}"
        )
    one_hot = F.one_hot(targets.long(), ways).float()  # [E, S, K]
    if (one_hot.sum(1) == 0).any():
        raise ValueError(f"every one of the {ways} classes needs a support row")
    return F.normalize(one_hot.transpose(1, 2) @ _unit(support, relu, centre), dim=-1)


def mean_distance(
    means: torch.Tensor,
    query: torch.Tensor,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> torch.Tensor:
    """``1 - max_k cos(query, means_k)``: ``[E, K, D]`` unit means (:func:`class_means`, with
    the same ``centre``), ``[E, Q, D]`` queries and ``centre`` ``[E, D]`` or ``None`` ->
    ``[E, Q]`` cosine distances to the nearest mean, in ``[0, 2]``. Each query's distance
    depends on that query, the means and the centre alone.

    Raises:
        ValueError: ``query`` is not ``[E, Q, D]``.
    """
    if query.dim() != 3:
        raise ValueError(f"need query [E, Q, D], got {tuple(query.shape)}")
    unit = _unit(query, relu, centre)
    return 1.0 - (unit @ means.float().transpose(1, 2)).amax(dim=-1)


def nearest_mean_distance(
    support: torch.Tensor,
    targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> torch.Tensor:
    """The cosine distance from each query to the nearest support class mean.

    Args:
        support: ``[E, S, D]`` support embeddings.
        targets: ``[E, S]`` class indices ``0..ways-1`` (every class present).
        query: ``[E, Q, D]`` query embeddings.
        ways: ``K``.
        centre: ``[E, D]``: support and query rows centred on it (the product's:
            ``outlier_centre(support, query)``); ``None``: not centred.

    Returns:
        ``[E, Q]`` scores in ``[0, 2]``, higher = farther from every class mean.
    """
    means = class_means(support, targets, ways, relu=relu, centre=centre)
    return mean_distance(means, query, relu=relu, centre=centre)


def outlier_distance(
    support: torch.Tensor,
    targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> torch.Tensor:
    """The product's outlier score: with a ``centre``, the mean of the centred and the uncentred
    :func:`nearest_mean_distance`; without, the uncentred one alone. An episode whose centre row
    is zero (:func:`covering_centre` where the queries do not cover the classes) gets its
    uncentred distance (the two are the same rows).

    Why both: centred on the episode's mean, images of other classes lie farther from the
    class means (val AUROC +2 to +6, ``studies/open-set-score``), but the second normalisation
    keeps only the direction of a row's offset from the centre. A blank frame, far from every
    class, then reads as an unusual image of one of them: on val, 14-65% of flat and near-flat
    frames were flagged on mini-ImageNet with centred rows, 77-96% with the mean of both
    distances (``studies/blank-frames/``).

    Args: as :func:`nearest_mean_distance` (``[E, S, D]``, ``[E, S]``, ``[E, Q, D]``,
        ``centre`` ``[E, D]`` or ``None``).

    Returns:
        ``[E, Q]`` scores in ``[0, 2]``, higher = more likely none of the classes.
    """
    raw_means = class_means(support, targets, ways, relu=relu)
    if centre is None:
        return mean_distance(raw_means, query, relu=relu)
    means = class_means(support, targets, ways, relu=relu, centre=centre)
    return mean_outlier_distance(means, query, relu=relu, centre=centre, raw_means=raw_means)


def mean_outlier_distance(
    means: torch.Tensor,
    query: torch.Tensor,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
    raw_means: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`outlier_distance` from class means already made: ``[E, K, D]`` ``means``
    (centred on ``centre`` ``[E, D]``, or uncentred when ``centre`` is ``None``), ``[E, Q, D]``
    queries and the uncentred ``raw_means`` ``[E, K, D]`` -> ``[E, Q]``. Without a centre, or
    without ``raw_means`` (a model file written before them), the distance to ``means`` alone;
    an episode whose centre row is zero gets its uncentred distance."""
    distance = mean_distance(means, query, relu=relu, centre=centre)
    if centre is None or raw_means is None:
        return distance
    raw = mean_distance(raw_means, query, relu=relu)
    covered = centre.abs().amax(-1, keepdim=True) > 0  # [E, 1]
    return torch.where(covered.to(raw.device), (distance + raw) / 2, raw)


def episode_outlier_score(
    support: torch.Tensor,
    targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
) -> torch.Tensor:
    """The product's outlier score of an episode's queries, as ``FewShotClassifier.classify``
    gives it when the queries are its unlabelled images: :func:`outlier_distance`, centred on
    :func:`outlier_centre` where the queries cover the classes (:func:`covering_centre`).

    Args: as :func:`nearest_mean_distance` (``[E, S, D]``, ``[E, S]``, ``[E, Q, D]``).

    Returns:
        ``[E, Q]`` scores in ``[0, 2]``, higher = more likely none of the classes.
    """
    centre, _ = covering_centre(support, targets, query, ways, relu=relu)
    return outlier_distance(support, targets, query, ways, relu=relu, centre=centre)


def leave_one_out_distances(
    support: torch.Tensor,
    targets: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances of labelled rows left out, as a new image of their class would score.

    A row of a class with ``n >= 2`` images: its distance to the nearest class mean when it is
    left out of its own class's mean (``n`` values for the class). A class with one image has
    nothing to leave out; its new images are scored against a single image, so it borrows the
    distances of single images of the other classes: every ordered pair ``(i, j)`` of rows of a
    class with 2+ images, ``1 - max(cos(i, j), cos(i, other classes' means))``. Each class
    weighs the same in total (its new images are as many as another's, whatever its support).

    Args:
        support: ``[S, D]`` embeddings of one episode's labelled images.
        targets: ``[S]`` class indices ``0..ways-1``.
        ways: ``K``.
        centre: ``[D]`` the episode's centre (:func:`outlier_centre`; it stays the episode's
            when a row is left out) or ``None``.

    Returns:
        ``(distances [M], weights [M])``, weights summing to the number of classes the
        distances stand for; ``M = 0`` when every class has a single image.
    """
    rows, labels = _unit(support, relu, centre), targets.long()  # [S, D], [S]
    one_hot = F.one_hot(labels, ways).float()  # [S, K]
    sums, counts = one_hot.T @ rows, one_hot.sum(0)  # [K, D], [K]
    cosine = rows @ F.normalize(sums, dim=-1).T  # [S, K]: to every full mean
    keep = counts[labels] >= 2
    left = sums[labels] - rows  # [S, D]: own class's sum without the row
    own = (F.normalize(left, dim=-1) * rows).sum(-1)  # [S]
    others = cosine.scatter(1, labels.view(-1, 1), -2.0).amax(-1)  # [S]: nearest other mean
    distances = [1.0 - torch.maximum(own, others)[keep]]
    weights = [1.0 / counts[labels][keep]]
    singletons = int((counts == 1).sum())
    if singletons and keep.any():
        pair = rows @ rows.T  # [S, S]
        same = (labels.view(-1, 1) == labels.view(1, -1)) & keep.view(-1, 1)
        same.fill_diagonal_(False)
        first, second = same.nonzero(as_tuple=True)
        paired = 1.0 - torch.maximum(pair[first, second], others[first])
        distances.append(paired)
        weights.append(torch.full_like(paired, singletons / len(paired)))
    return torch.cat(distances), torch.cat(weights)


def other_class_distances(
    support: torch.Tensor,
    targets: torch.Tensor,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[S, D]`` rows, ``[S]`` targets (``centre`` ``[D]`` or ``None``, as
    :func:`leave_one_out_distances`) -> ``[P]`` cosine distances of every pair of rows of
    different classes (each pair once)."""
    rows = _unit(support, relu, centre)
    first, second = torch.triu_indices(len(rows), len(rows), offset=1)
    differ = targets[first] != targets[second]
    return 1.0 - (rows[first[differ]] * rows[second[differ]]).sum(-1)


@dataclass(frozen=True)
class UnknownReference:
    """What the labelled images say about the distances of new images of their classes.

    Attributes:
        distances: ``[M]`` distances to the nearest class mean, as the score measures them
            (:func:`outlier_distance`: centred and uncentred averaged where centred).
        weights: ``[M]`` their weights (``conformal``) or ones.
        conformal: ``True``: ``distances`` are left-out distances
            (:func:`leave_one_out_distances`); ``False``: every class had a single image and
            they are :func:`other_class_distances`.
        one_shot_quantile: the quantile of ``distances`` at a 5% rate when not ``conformal``
            (:data:`ONE_SHOT_QUANTILE`, or :data:`CENTRED_ONE_SHOT_QUANTILE` for centred rows).
    """

    distances: torch.Tensor
    weights: torch.Tensor
    conformal: bool
    one_shot_quantile: float = ONE_SHOT_QUANTILE

    def lowest_rate(self) -> float | None:
        """About the smallest false-alarm rate the left-out distances can set:
        ``1 / (n + 1)``, ``n = (sum w)^2 / sum w^2`` their effective number (``M`` when the
        weights are equal). Below it the threshold is the largest distance or near it (the
        largest exactly below ``1 / (M + 1)``), and a new image of a class lies above it with
        about that probability or more (val, 5 labelled images a
        class, target 5%: 2 classes 8.6 / 7.4% on mini-ImageNet / Omniglot, 1/11 = 9.1%; 3
        classes 5.6 / 5.5%, 1/16 = 6.3%). ``None`` when not ``conformal`` (no rate is set)."""
        if not self.conformal:
            return None
        weights = self.weights.double()
        effective = float(weights.sum() ** 2 / (weights**2).sum())
        return 1.0 / (effective + 1.0)

    def threshold(self, false_alarm_rate: float) -> float:
        """The distance above which an image is called none of the classes.

        ``conformal``: the weighted split-conformal quantile of the left-out distances, level
        ``(1 - rate)(M + 1) / M`` of their weighted distribution (the largest distance when
        that exceeds 1), so that a new image of a class lies above it with probability about
        ``rate``. Otherwise (one image per class, nothing to leave out) a quantile of the
        distances between images of different classes: ``one_shot_quantile`` at a 5% rate,
        ``one_shot_quantile * 0.05 / rate`` (capped at 1) at others -- a higher rate flags
        more, but the rate is not controlled.

        Raises:
            ValueError: a rate outside ``(0, 1)``.
        """
        if not 0.0 < false_alarm_rate < 1.0:
            raise ValueError(f"false_alarm_rate must lie in (0, 1), got {false_alarm_rate}")
        distances = self.distances.double()
        if not self.conformal:
            level = min(1.0, self.one_shot_quantile * 0.05 / false_alarm_rate)
            return float(torch.quantile(distances, level))
        level = (1.0 - false_alarm_rate) * (len(distances) + 1) / len(distances)
        if level >= 1.0:
            return float(distances.max())
        order = torch.argsort(distances)
        cumulative = torch.cumsum(self.weights.double()[order], 0)
        position = int(torch.searchsorted(cumulative / cumulative[-1], level))
        return float(distances[order[min(position, len(order) - 1)]])


def unknown_reference(
    support: torch.Tensor,
    targets: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> UnknownReference:
    """The :class:`UnknownReference` of one episode's labelled images, for the distance
    :func:`outlier_distance` gives with the same ``centre``: with a centre, each left-out (or
    between-class) distance is the mean of the centred and the uncentred one, row by row.

    Args:
        support: ``[S, D]`` labelled embeddings; ``targets``: ``[S]`` class indices.
        ways: ``K`` (at least 2).
        centre: ``[D]`` the episode's :func:`outlier_centre`, or ``None`` or zeros (rows not
            centred).

    Raises:
        ValueError: fewer than 2 classes.
    """
    if ways < 2:
        raise ValueError(f"an unknown threshold needs at least 2 classes, got {ways}")
    if centre is not None and not bool(centre.abs().amax() > 0):
        centre = None  # a zero centre: not centred, as :func:`outlier_distance` reads it
    centres = [None] if centre is None else [None, centre]
    left_out = [
        leave_one_out_distances(support, targets, ways, relu=relu, centre=c) for c in centres
    ]
    distances = torch.stack([d for d, _ in left_out]).mean(0)  # the same rows in each space
    level = ONE_SHOT_QUANTILE if centre is None else CENTRED_ONE_SHOT_QUANTILE
    if len(distances):
        return UnknownReference(distances.float(), left_out[0][1].float(), True, level)
    between = torch.stack(
        [other_class_distances(support, targets, relu=relu, centre=c) for c in centres]
    ).mean(0)
    return UnknownReference(between.float(), torch.ones_like(between).float(), False, level)


def unknown_threshold(
    support: torch.Tensor,
    targets: torch.Tensor,
    ways: int,
    false_alarm_rate: float,
    *,
    relu: bool = True,
    centre: torch.Tensor | None = None,
) -> float:
    """The :func:`outlier_distance` (same ``centre``) above which an image is none of
    the ``ways`` classes,
    set from the labelled images alone (no outlier examples) for a target rate of false
    alarms: :meth:`UnknownReference.threshold` of :func:`unknown_reference`.

    Args:
        support: ``[S, D]`` labelled embeddings; ``targets``: ``[S]`` class indices.
        ways: ``K`` (at least 2).
        false_alarm_rate: in ``(0, 1)``.
        centre: ``[D]`` the episode's :func:`outlier_centre`, or ``None``.

    Raises:
        ValueError: a rate outside ``(0, 1)`` or fewer than 2 classes.
    """
    reference = unknown_reference(support, targets, ways, relu=relu, centre=centre)
    return reference.threshold(false_alarm_rate)


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
