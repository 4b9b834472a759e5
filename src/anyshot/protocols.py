"""Evaluation protocols: seeded samplers of fixed, variable, imbalanced-query and many-way episodes.

Every sampler has ``sample(index) -> EpisodeSpec`` and ``take(count)``. Episode ``index`` depends
only on ``(seed, index)``: its random draws come from ``numpy.random.Generator(PCG64([seed,
index]))``, so the same seed gives the same episodes on any machine, in any order, in any process.

* ``"fixed"``: N-way K-shot Q-query, :class:`anyshot.episodes.EpisodeSampler` (per-way shot
  lists too), re-exported here as :data:`FixedSampler`.
* ``"variable"``: Meta-Dataset's variable-way variable-shot episodes (Triantafillou et al.,
  ICLR 2020), :class:`VariableSampler`.
* ``"imbalanced"``: fixed supports, queries split across classes by a Dirichlet draw (as in
  Veilleux et al., NeurIPS 2021, "Realistic evaluation of transductive few-shot learning"),
  :class:`ImbalancedQuerySampler`.
* ``"many-way"``: N up to every class of the split, :class:`ManyWaySampler`.
* ``"present-classes"``: a support of K classes (up to every class of the split), queries from
  only ``present`` of them (the PADDLE protocol: Martin et al., NeurIPS 2022, "Towards
  practical few-shot query sets: transductive minimum description length inference"),
  :class:`PresentClassesSampler`.
* ``"open-set"``: N-way K-shot episodes whose queries also hold outliers, images of other
  classes of the split (none of the support's), as in the few-shot open-set recognition
  protocol (Liu et al., CVPR 2020 "Few-shot open-set recognition using meta-learning"; Boudiaf
  et al., CVPR 2023 "Open-set likelihood maximization for few-shot learning"),
  :class:`OpenSetSampler`.

:func:`build_sampler` builds any of them by protocol name.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from anyshot.episodes import EpisodeSampler, EpisodeSpec, draw_episode
from anyshot.errors import ConfigurationError, DatasetError

__all__ = [
    "PROTOCOLS",
    "FixedSampler",
    "ImbalancedQuerySampler",
    "ManyWaySampler",
    "OpenSetSampler",
    "PresentClassesSampler",
    "Sampler",
    "VariableSampler",
    "apportion",
    "build_sampler",
    "capped",
    "episode_rng",
    "sampler_config",
    "shot_counts",
]

#: Protocol names accepted by :func:`build_sampler` (and ``anyshot evaluate --protocol``).
PROTOCOLS = ("fixed", "variable", "imbalanced", "many-way", "present-classes", "open-set")

#: The fixed N-way K-shot sampler (per-way shot lists allowed): the existing episode sampler.
FixedSampler = EpisodeSampler


@runtime_checkable
class Sampler(Protocol):
    """What every sampler is: a seeded, indexable stream of :class:`EpisodeSpec`."""

    seed: int

    def sample(self, index: int) -> EpisodeSpec: ...

    def take(self, count: int) -> Iterator[EpisodeSpec]: ...


def apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` ``[N]`` (largest remainder).

    ``floor(total * w / sum(w))`` each, then one more to the largest fractional parts (ties to
    the lower index) until the parts sum to ``total``.
    """
    shares = total * np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    counts = np.floor(shares).astype(np.int64)
    left = int(total - counts.sum())
    if left > 0:
        order = np.argsort(-(shares - counts), kind="stable")
        counts[order[:left]] += 1
    return counts


def capped(counts: np.ndarray, capacity: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``counts`` ``[N]`` cut to ``capacity`` ``[N]``, what is cut off handed on to the entries
    with room in proportion to ``weights`` (:func:`apportion`; evenly among those with room when
    none of them has weight), until nothing exceeds its capacity.

    The total is kept whenever ``capacity.sum() >= counts.sum()``; the caller checks that.
    """
    counts = np.asarray(counts, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if int(capacity.sum()) < int(counts.sum()):
        raise ValueError(f"{int(counts.sum())} do not fit in capacities {capacity.tolist()}")
    while True:
        excess = int(np.maximum(counts - capacity, 0).sum())
        counts = np.minimum(counts, capacity)
        if excess == 0:
            return counts
        room = capacity > counts
        share = np.where(room, weights, 0.0)
        counts = counts + apportion(excess, share if share.sum() > 0 else room * 1.0)


def shot_counts(ways: int, shots: int | Sequence[int]) -> list[int]:
    """Support images per class of a ``ways``-way episode: ``shots`` repeated, or one count per
    way. Raises ``ValueError`` for a wrong number of counts or a count below 1."""
    shot_list = [int(shots)] * ways if isinstance(shots, int) else [int(s) for s in shots]
    if len(shot_list) != ways:
        raise ValueError(f"got {len(shot_list)} shot counts for {ways} ways")
    if min(shot_list) < 1:
        raise ValueError(f"every class needs at least 1 shot, got {shot_list}")
    return shot_list


def episode_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of episode ``index`` of the stream ``seed``: PCG64 seeded with both."""
    return np.random.Generator(np.random.PCG64([int(seed), int(index)]))


def _members_by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Class index -> item indices of that class (ascending), for every class present."""
    order = np.argsort(labels, kind="stable")
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    return {
        int(c): order[s : s + n].astype(np.int64)
        for c, s, n in zip(classes, starts, counts, strict=True)
    }


def _as_labels(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    array = np.asarray(labels, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError("labels must be one-dimensional")
    return array


class _SeededSampler:
    """Shared ``take``: the first ``count`` episodes of the stream."""

    seed: int

    def sample(self, index: int) -> EpisodeSpec:  # pragma: no cover - overridden
        raise NotImplementedError

    def take(self, count: int) -> Iterator[EpisodeSpec]:
        """The first ``count`` episodes (indices ``0..count-1``)."""
        for index in range(count):
            yield self.sample(index)


class VariableSampler(_SeededSampler):
    """Meta-Dataset's variable-way, variable-shot episodes (Triantafillou et al., 2020).

    For episode ``i`` (all draws from :func:`episode_rng`):

    1. ways ``N`` uniform in ``[min_ways, min(max_ways, C)]`` (``C`` = classes with at least 2
       images); ``N`` classes uniformly without replacement.
    2. queries per class ``q = min(max_queries, floor(min_c n_c / 2))`` (same for every class).
    3. support size ``S = min(max_support, sum_c floor(beta * min(max_contribution, n_c - q) + 1))``
       with ``beta ~ U(0, 1)`` (Meta-Dataset's form: the ``+ 1`` is inside the floor, per class,
       so ``S >= N``).
    4. shots ``k_c = min(n_c - q, floor(r_c * (S - N)) + 1)`` with ``r_c`` proportional to
       ``n_c * exp(u_c)``, ``u_c ~ U[log 0.5, log 2]``: at least one shot per class, never more
       than the images left after the queries.
    5. per class, ``k_c + q`` distinct images, the first ``k_c`` the support.

    Args:
        labels: class index of every item, ``[N_items]`` ints.
        min_ways: smallest way count (Meta-Dataset: 5).
        max_ways: largest way count (Meta-Dataset: 50).
        max_queries: cap on queries per class (10).
        max_support: cap on the support size (500).
        max_contribution: cap on one class's contribution to the support size (100).
        seed: the seed of the stream.

    Raises:
        DatasetError: fewer than ``min_ways`` classes have 2 or more images.
        ValueError: inconsistent bounds.
    """

    protocol = "variable"

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        min_ways: int = 5,
        max_ways: int = 50,
        max_queries: int = 10,
        max_support: int = 500,
        max_contribution: int = 100,
        min_log_weight: float = math.log(0.5),
        max_log_weight: float = math.log(2.0),
        seed: int = 0,
    ) -> None:
        if not 1 <= min_ways <= max_ways:
            raise ValueError(f"need 1 <= min_ways <= max_ways, got {min_ways} and {max_ways}")
        if max_queries < 1 or max_contribution < 1:
            raise ValueError("max_queries and max_contribution must be at least 1")
        if max_support < max_ways:
            raise ValueError(
                f"max_support ({max_support}) must be >= max_ways ({max_ways}): every class "
                "needs one support image"
            )
        if min_log_weight > max_log_weight:
            raise ValueError("min_log_weight must not exceed max_log_weight")
        label_array = _as_labels(labels)
        members = _members_by_class(label_array)
        self._members = {c: m for c, m in members.items() if len(m) >= 2}
        self._candidates = np.array(sorted(self._members), dtype=np.int64)
        if len(self._candidates) < min_ways:
            raise DatasetError(
                f"variable-way episodes need at least {min_ways} classes with 2 or more images "
                f"(one query and one shot); only {len(self._candidates)} of {len(members)} "
                "classes have that many"
            )
        self.min_ways = int(min_ways)
        self.max_ways = int(min(max_ways, len(self._candidates)))
        self.max_queries = int(max_queries)
        self.max_support = int(max_support)
        self.max_contribution = int(max_contribution)
        self.min_log_weight = float(min_log_weight)
        self.max_log_weight = float(max_log_weight)
        self.seed = int(seed)

    def sample(self, index: int) -> EpisodeSpec:
        """The ``index``-th episode of this sampler's stream."""
        rng = episode_rng(self.seed, index)
        ways = int(rng.integers(self.min_ways, self.max_ways + 1))
        chosen = rng.choice(self._candidates, size=ways, replace=False)
        sizes = np.array([len(self._members[int(c)]) for c in chosen], dtype=np.int64)
        queries = int(min(self.max_queries, sizes.min() // 2))
        remaining = sizes - queries
        contributions = np.minimum(self.max_contribution, remaining)
        beta = rng.uniform()
        support_size = int(
            min(self.max_support, np.floor(beta * contributions + 1).astype(np.int64).sum())
        )
        log_weights = rng.uniform(self.min_log_weight, self.max_log_weight, size=ways)
        proportions = sizes * np.exp(log_weights)
        proportions = proportions / proportions.sum()
        desired = np.floor(proportions * (support_size - ways)).astype(np.int64) + 1
        shots = np.minimum(desired, remaining)
        return draw_episode(rng, self._members, chosen, shots, [queries] * len(chosen))

    def config(self) -> dict[str, Any]:
        """The protocol's parameters (stored beside results and in episode files)."""
        return {
            "protocol": self.protocol,
            "min_ways": self.min_ways,
            "max_ways": self.max_ways,
            "max_queries": self.max_queries,
            "max_support": self.max_support,
            "max_contribution": self.max_contribution,
            "min_log_weight": self.min_log_weight,
            "max_log_weight": self.max_log_weight,
            "seed": self.seed,
        }


class ImbalancedQuerySampler(_SeededSampler):
    """Fixed N-way K-shot supports with class-imbalanced queries drawn from a Dirichlet.

    Episode ``i``: ``N`` classes uniformly without replacement; proportions
    ``p ~ Dirichlet(alpha * 1_N)``; query counts ``m_c = min_queries + round(p_c * (T - N *
    min_queries))``, rounded by largest remainder (:func:`apportion`) so they sum to ``T``, then
    capped by the images a class has left after its shots, what a cap cuts off going to the
    classes with room in proportion to their ``p_c``. As in Veilleux et al. (2021) the counts
    are the rounded proportions, not a multinomial draw from them: a multinomial would add a
    binomial spread (about +-3.5 queries per class at 5 ways, 75 queries) even as
    ``alpha -> inf``, so ``alpha`` alone would no longer set the imbalance. A class may get 0
    queries by default (``min_queries=0``), as in Veilleux et al.: a realistic query batch need
    not contain every support class.

    Args:
        labels: class index of every item, ``[N_items]`` ints.
        ways: classes per episode ``N``.
        shots: support images per class: one int, or one per way.
        total_queries: queries per episode ``T`` (default 75 = 5 ways x 15).
        alpha: Dirichlet concentration (default 2; large = nearly balanced, small = skewed).
        min_queries: queries every class gets before the Dirichlet split (default 0).
        seed: the seed of the stream.

    Raises:
        DatasetError: fewer than ``ways`` classes have ``max(shots) + min_queries`` images, or
            the ``ways`` smallest such classes cannot hold ``T`` queries between them.
        ValueError: bad arguments.
    """

    protocol = "imbalanced"

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        ways: int,
        shots: int | Sequence[int],
        total_queries: int = 75,
        alpha: float = 2.0,
        min_queries: int = 0,
        seed: int = 0,
    ) -> None:
        if ways < 1:
            raise ValueError(f"ways must be at least 1, got {ways}")
        shot_list = shot_counts(ways, shots)
        if not alpha > 0 or not math.isfinite(alpha):
            raise ValueError(f"the Dirichlet alpha must be a positive number, got {alpha}")
        if min_queries < 0 or total_queries < ways * min_queries or total_queries < 1:
            raise ValueError(
                f"total_queries ({total_queries}) must be >= 1 and >= ways x min_queries "
                f"({ways} x {min_queries})"
            )
        label_array = _as_labels(labels)
        members = _members_by_class(label_array)
        need = max(shot_list) + min_queries
        self._members = {c: m for c, m in members.items() if len(m) >= need}
        self._candidates = np.array(sorted(self._members), dtype=np.int64)
        if len(self._candidates) < ways:
            raise DatasetError(
                f"{ways}-way episodes with up to {max(shot_list)} shots and at least "
                f"{min_queries} queries per class need {ways} classes with at least {need} "
                f"images; only {len(self._candidates)} of {len(members)} classes have that many"
            )
        smallest = np.sort([len(m) for m in self._members.values()])[:ways]
        if int((smallest - max(shot_list)).sum()) < total_queries:
            raise DatasetError(
                f"{total_queries} queries do not fit: the {ways} smallest eligible classes have "
                f"only {int((smallest - max(shot_list)).sum())} images left after "
                f"{max(shot_list)} shots; lower --total-queries or the shots"
            )
        self.ways = int(ways)
        self.shots = tuple(shot_list)
        self.total_queries = int(total_queries)
        self.alpha = float(alpha)
        self.min_queries = int(min_queries)
        self.seed = int(seed)

    def query_counts(self, rng: np.random.Generator, capacity: np.ndarray) -> np.ndarray:
        """Per-way query counts ``[N]`` summing to ``T``, each within ``capacity`` ``[N]``."""
        proportions = rng.dirichlet(np.full(self.ways, self.alpha))
        counts = self.min_queries + apportion(
            self.total_queries - self.ways * self.min_queries, proportions
        )
        return capped(counts, capacity, proportions)

    def sample(self, index: int) -> EpisodeSpec:
        """The ``index``-th episode of this sampler's stream."""
        rng = episode_rng(self.seed, index)
        chosen = rng.choice(self._candidates, size=self.ways, replace=False)
        capacity = np.array(
            [len(self._members[int(c)]) - k for c, k in zip(chosen, self.shots, strict=True)]
        )
        counts = self.query_counts(rng, capacity)
        return draw_episode(rng, self._members, chosen, self.shots, counts)

    def config(self) -> dict[str, Any]:
        """The protocol's parameters (stored beside results and in episode files)."""
        return {
            "protocol": self.protocol,
            "ways": self.ways,
            "shots": list(self.shots),
            "total_queries": self.total_queries,
            "dirichlet_alpha": self.alpha,
            "min_queries": self.min_queries,
            "seed": self.seed,
        }


class ManyWaySampler(EpisodeSampler):
    """N-way K-shot Q-query episodes with N up to every class of the split.

    The fixed sampler with one addition: ``ways=None`` means every class that has
    ``shots + queries`` images (each episode then holds all of them, in a seeded order).

    Args:
        labels: class index of every item, ``[N_items]`` ints.
        ways: classes per episode, or ``None`` for all eligible classes.
        shots: support images per class (one int; a per-way list needs an explicit ``ways``).
        queries: query images per class.
        seed: the seed of the stream.

    Raises:
        DatasetError: fewer than ``ways`` classes have ``shots + queries`` images.
    """

    protocol = "many-way"

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        ways: int | None,
        shots: int | Sequence[int],
        queries: int,
        seed: int = 0,
    ) -> None:
        if ways is None:
            if not isinstance(shots, int):
                raise ValueError("a per-way shot list needs an explicit number of ways")
            counts = np.bincount(_as_labels(labels)) if len(labels) else np.zeros(0)
            ways = int((counts >= shots + queries).sum())
            if ways == 0:
                raise DatasetError(
                    f"no class has the {shots + queries} images that {shots} shots and "
                    f"{queries} queries need"
                )
        super().__init__(labels, ways=ways, shots=shots, queries=queries, seed=seed)


class PresentClassesSampler(_SeededSampler):
    """A support of K classes, queries from only ``present`` of them (Martin et al., 2022).

    The PADDLE / UNEM protocol ("Towards practical few-shot query sets", NeurIPS 2022): the
    support describes every class the task may contain (``K = ways``, up to every class of the
    split), while the query batch holds images of only a few of them (``K_eff = present``), which
    a method that assumes balanced queries from all K classes gets wrong.

    Episode ``i`` (all draws from :func:`episode_rng`):

    1. ``K`` classes uniformly without replacement among the classes with at least
       ``max(shots) + 1`` images (every support class could be a present one); ``ways=None``
       takes all of them, in a seeded order;
    2. ``present`` of the K ways uniformly without replacement (in draw order);
    3. ``total_queries`` split evenly between the present ways, the remainder one each to the
       first drawn (:func:`apportion` with equal weights: 75 over 2 -> 38, 37);
    4. a present class that cannot supply its share (it has fewer images left after its shots)
       gives what it has, and the shortfall goes evenly to the present classes with room (in
       draw order again, :func:`capped`), so every episode holds exactly ``total_queries``
       queries; the constructor refuses (``DatasetError``) a request the ``present`` smallest
       eligible classes cannot hold between them;
    5. per way, its shots and (present ways only) its queries as distinct images
       (:func:`~anyshot.episodes.draw_episode`); the other ways get no query.

    Args:
        labels: class index of every item, ``[N_items]`` ints.
        ways: support classes ``K`` per episode, or ``None`` for every eligible class.
        shots: support images per class: one int, or one per way (needs an explicit ``ways``).
        present: classes the queries come from, ``1 <= present <= ways``.
        total_queries: queries per episode (default 75), at least ``present``.
        seed: the seed of the stream.

    Raises:
        DatasetError: fewer than ``ways`` (or than ``present``) classes have ``max(shots) + 1``
            images, or the ``present`` smallest of them cannot hold ``total_queries`` queries.
        ValueError: bad arguments (``present`` outside ``1..ways``, fewer queries than present
            classes, ...).
    """

    protocol = "present-classes"

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        ways: int | None,
        shots: int | Sequence[int],
        present: int,
        total_queries: int = 75,
        seed: int = 0,
    ) -> None:
        if ways is not None and ways < 1:
            raise ValueError(f"ways must be at least 1, got {ways}")
        if ways is None and not isinstance(shots, int):
            raise ValueError("a per-way shot list needs an explicit number of ways")
        if present < 1 or (ways is not None and present > ways):
            raise ValueError(
                f"present classes must be between 1 and the {ways} ways, got {present}"
            )
        if total_queries < present:
            raise ValueError(
                f"total_queries ({total_queries}) must be at least the {present} present "
                "classes: each present class gets at least one query"
            )
        label_array = _as_labels(labels)
        members = _members_by_class(label_array)
        most = int(shots) if isinstance(shots, int) else max((int(s) for s in shots), default=0)
        need = most + 1
        self._members = {c: m for c, m in members.items() if len(m) >= need}
        self._candidates = np.array(sorted(self._members), dtype=np.int64)
        eligible = len(self._candidates)
        if ways is None:
            ways = eligible
            if ways < present:
                raise DatasetError(
                    f"{present} present classes with {most} shots need {present} classes with "
                    f"at least {need} images (the shots and a query); only {eligible} of "
                    f"{len(members)} classes have that many"
                )
        shot_list = shot_counts(ways, shots)
        if eligible < ways:
            raise DatasetError(
                f"{ways}-way episodes with up to {most} shots need {ways} classes with at least "
                f"{need} images (the shots and a query, as any support class may be a present "
                f"one); only {eligible} of {len(members)} classes have that many"
            )
        smallest = np.sort([len(m) for m in self._members.values()])[:present]
        room = int((smallest - most).sum())
        if room < total_queries:
            raise DatasetError(
                f"{total_queries} queries from {present} present classes do not fit: the "
                f"{present} smallest eligible classes have only {room} images left after "
                f"{most} shot{'' if most == 1 else 's'}; lower --total-queries (at most {room}) "
                "or the shots, or raise --present-classes"
            )
        self.ways = int(ways)
        self.shots = tuple(shot_list)
        self.present = int(present)
        self.total_queries = int(total_queries)
        self.seed = int(seed)

    def sample(self, index: int) -> EpisodeSpec:
        """The ``index``-th episode of this sampler's stream."""
        rng = episode_rng(self.seed, index)
        chosen = rng.choice(self._candidates, size=self.ways, replace=False)
        present = rng.choice(self.ways, size=self.present, replace=False)  # ways, draw order
        capacity = np.array(
            [len(self._members[int(chosen[j])]) - self.shots[j] for j in present], dtype=np.int64
        )
        even = np.ones(self.present)
        shares = capped(apportion(self.total_queries, even), capacity, even)
        counts = np.zeros(self.ways, dtype=np.int64)
        counts[present] = shares
        return draw_episode(rng, self._members, chosen, self.shots, counts)

    def config(self) -> dict[str, Any]:
        """The protocol's parameters (stored beside results and in episode files)."""
        return {
            "protocol": self.protocol,
            "ways": self.ways,
            "shots": list(self.shots),
            "present_classes": self.present,
            "total_queries": self.total_queries,
            "seed": self.seed,
        }


class OpenSetSampler(_SeededSampler):
    """N-way K-shot episodes whose query set also holds outliers: images of none of the N
    classes, from other classes of the same split.

    Episode ``i`` (all draws from :func:`episode_rng`):

    1. ``N`` classes uniformly without replacement among the classes with at least
       ``max(shots) + ceil(inlier_queries / N)`` images;
    2. ``inlier_queries`` split evenly over the ways (the remainder one each to the first ways,
       :func:`apportion`); per way its shots and queries as distinct images
       (:func:`~anyshot.episodes.draw_episode`) -- steps 1-2 draw exactly what they draw
       without outliers, so the same seed gives the same inlier episode at any
       ``outlier_queries``;
    3. ``outlier_classes`` classes uniformly without replacement among the other classes with
       at least ``ceil(outlier_queries / outlier_classes)`` images (never a support class);
    4. ``outlier_queries`` split evenly over them the same way, each class's share drawn
       without replacement; they form :attr:`~anyshot.episodes.EpisodeSpec.outliers`, whose
       target is :data:`~anyshot.episodes.OUTLIER` (the method sees them as queries like any
       other, never their target).

    Args:
        labels: class index of every item, ``[N_items]`` ints.
        ways: support classes ``N`` per episode.
        shots: support images per class: one int, or one per way.
        inlier_queries: queries of the N classes per episode (default 15), at least 1.
        outlier_queries: outlier queries per episode (default 15); 0 gives closed-set episodes.
        outlier_classes: classes the outliers come from per episode (default 5); at most
            ``outlier_queries`` of them are used (every one gives at least one image).
        seed: the seed of the stream.

    Raises:
        DatasetError: fewer than ``ways`` classes can hold shots and queries, or too few
            other classes to draw the outliers from.
        ValueError: bad arguments.
    """

    protocol = "open-set"

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        ways: int,
        shots: int | Sequence[int],
        inlier_queries: int = 15,
        outlier_queries: int = 15,
        outlier_classes: int = 5,
        seed: int = 0,
    ) -> None:
        if ways < 1:
            raise ValueError(f"ways must be at least 1, got {ways}")
        shot_list = shot_counts(ways, shots)
        if inlier_queries < 1 or outlier_queries < 0 or outlier_classes < 1:
            raise ValueError(
                "need inlier_queries >= 1, outlier_queries >= 0 and outlier_classes >= 1; got "
                f"{inlier_queries}, {outlier_queries} and {outlier_classes}"
            )
        self.ways, self.shots, self.seed = int(ways), tuple(shot_list), int(seed)
        self.inlier_queries, self.outlier_queries = int(inlier_queries), int(outlier_queries)
        self.outlier_classes = int(min(outlier_classes, max(outlier_queries, 1)))
        members = _members_by_class(_as_labels(labels))
        per_way = -(-self.inlier_queries // self.ways)
        self._members = members
        self._inliers = self._eligible(max(shot_list) + per_way)
        if len(self._inliers) < ways:
            raise DatasetError(
                f"{ways}-way episodes with up to {max(shot_list)} shots and {per_way} queries per "
                f"class need {ways} classes with at least {max(shot_list) + per_way} images; "
                f"only {len(self._inliers)} of {len(members)} classes have that many"
            )
        self._outliers = self._eligible(-(-self.outlier_queries // self.outlier_classes))
        if self.outlier_queries and len(self._outliers) < ways + self.outlier_classes:
            raise DatasetError(
                f"{self.outlier_queries} outlier queries from {self.outlier_classes} classes "
                f"other than the {ways} support classes need {ways + self.outlier_classes} "
                f"classes with at least {-(-self.outlier_queries // self.outlier_classes)} "
                f"images; only {len(self._outliers)} of {len(members)} classes have that many: "
                "lower --outlier-classes, --outlier-queries or --ways"
            )

    def _eligible(self, need: int) -> np.ndarray:
        """Sorted class indices with at least ``need`` images."""
        return np.array(sorted(c for c, m in self._members.items() if len(m) >= need), np.int64)

    def sample(self, index: int) -> EpisodeSpec:
        """The ``index``-th episode of this sampler's stream."""
        rng = episode_rng(self.seed, index)
        chosen = rng.choice(self._inliers, size=self.ways, replace=False)
        counts = apportion(self.inlier_queries, np.ones(self.ways))
        inliers = draw_episode(rng, self._members, chosen, self.shots, counts)
        if self.outlier_queries == 0:
            return inliers
        others = self._outliers[~np.isin(self._outliers, chosen)]
        sources = rng.choice(others, size=self.outlier_classes, replace=False)
        shares = apportion(self.outlier_queries, np.ones(self.outlier_classes))
        outliers = [
            int(item)
            for cls, share in zip(sources, shares, strict=True)
            for item in rng.choice(self._members[int(cls)], size=int(share), replace=False)
        ]
        return EpisodeSpec(inliers.classes, inliers.support, inliers.query, tuple(outliers))

    def config(self) -> dict[str, Any]:
        """The protocol's parameters (stored beside results and in episode files)."""
        return {
            "protocol": self.protocol,
            "ways": self.ways,
            "shots": list(self.shots),
            "inlier_queries": self.inlier_queries,
            "outlier_queries": self.outlier_queries,
            "outlier_classes": self.outlier_classes,
            "seed": self.seed,
        }


def sampler_config(sampler: Sampler) -> dict[str, Any]:
    """The protocol name and parameters of any sampler of this module, as a JSON-able dict."""
    config = getattr(sampler, "config", None)
    if callable(config):
        return dict(config())
    if isinstance(sampler, EpisodeSampler):
        return {
            "protocol": getattr(sampler, "protocol", "fixed"),
            "ways": sampler.ways,
            "shots": list(sampler.shots),
            "queries": sampler.queries,
            "seed": sampler.seed,
        }
    raise TypeError(f"unknown sampler type {type(sampler).__name__}")


def build_sampler(
    protocol: str,
    labels: Sequence[int] | np.ndarray,
    *,
    ways: int | None = 5,
    shots: int | Sequence[int] = 1,
    queries: int = 15,
    total_queries: int = 75,
    dirichlet_alpha: float = 2.0,
    present_classes: int | None = None,
    inlier_queries: int = 15,
    outlier_queries: int = 15,
    outlier_classes: int = 5,
    seed: int = 0,
) -> Sampler:
    """A sampler of the named protocol (see the module docstring).

    ``ways``, ``shots`` and ``queries`` are ignored by ``"variable"``; ``"imbalanced"`` uses
    ``total_queries`` and ``dirichlet_alpha`` instead of ``queries``; ``"present-classes"`` uses
    ``total_queries`` and ``present_classes`` (required) instead of ``queries``; ``ways=None``
    (every class) is valid for ``"many-way"`` and ``"present-classes"``; ``"open-set"`` uses
    ``inlier_queries``, ``outlier_queries`` and ``outlier_classes`` instead of ``queries``.

    Raises:
        ConfigurationError: unknown protocol, ``ways=None`` with a protocol that needs a number,
            ``present_classes`` missing for (or given to a protocol other than)
            ``"present-classes"``, or outside ``1..ways``.
        DatasetError: the dataset is too small for the request.
    """
    if protocol not in PROTOCOLS:
        raise ConfigurationError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    if ways is None and protocol in ("fixed", "imbalanced", "open-set"):
        raise ConfigurationError(
            f"ways='all' needs protocol 'many-way' or 'present-classes', not {protocol!r}"
        )
    if (protocol == "present-classes") != (present_classes is not None):
        raise ConfigurationError(
            "protocol 'present-classes' needs present_classes (--present-classes), and only "
            f"it takes them; got protocol {protocol!r} with present_classes={present_classes}"
        )
    if protocol == "variable":
        return VariableSampler(labels, seed=seed)
    if protocol == "many-way":
        return ManyWaySampler(labels, ways=ways, shots=shots, queries=queries, seed=seed)
    if protocol == "present-classes":
        assert present_classes is not None
        if present_classes < 1 or (ways is not None and present_classes > ways):
            raise ConfigurationError(
                f"--present-classes must be between 1 and --ways ({ways}), got {present_classes}"
            )
        return PresentClassesSampler(
            labels,
            ways=ways,
            shots=shots,
            present=present_classes,
            total_queries=total_queries,
            seed=seed,
        )
    assert ways is not None
    if protocol == "open-set":
        return OpenSetSampler(
            labels,
            ways=ways,
            shots=shots,
            inlier_queries=inlier_queries,
            outlier_queries=outlier_queries,
            outlier_classes=outlier_classes,
            seed=seed,
        )
    if protocol == "imbalanced":
        return ImbalancedQuerySampler(
            labels,
            ways=ways,
            shots=shots,
            total_queries=total_queries,
            alpha=dirichlet_alpha,
            seed=seed,
        )
    return FixedSampler(labels, ways=ways, shots=shots, queries=queries, seed=seed)
