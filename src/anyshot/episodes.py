"""Few-shot episodes: the immutable :class:`Episode` value and seeded samplers.

An episode is a support set (images with labels of any hashable type) and a query set (images,
labels optional). Labels are mapped to ``0..K-1`` in :attr:`Episode.classes` order (sorted when
the labels are orderable, else in order of first appearance) and back with :meth:`Episode.decode`.

Images are either a tensor ``[N, C, H, W]`` or any lazy sequence of ``[C, H, W]`` tensors with
``__len__`` and ``__getitem__`` (e.g. :class:`anyshot.data.dataset.LazyImages`), so an episode
with thousands of shots never needs all its pixels in memory.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from anyshot.errors import DatasetError, EmptyClassError, EpisodeError

if TYPE_CHECKING:
    from anyshot.data.dataset import ImageDataset
    from anyshot.data.images import Preprocessing

__all__ = [
    "OUTLIER",
    "Episode",
    "EpisodeSampler",
    "EpisodeSpec",
    "ImageSequence",
    "draw_episode",
    "image_batches",
    "image_shape",
    "make_episode",
    "spec_query_targets",
]

#: The query target of an outlier query: an image of none of the episode's classes (open-set
#: episodes, :class:`anyshot.protocols.OpenSetSampler`). Never a class index, never shown to a
#: method: only the evaluation reads it.
OUTLIER = -1


@runtime_checkable
class ImageSequence(Protocol):
    """A sized, indexable collection of ``[C, H, W]`` float tensors."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> torch.Tensor: ...


Images = torch.Tensor | ImageSequence


def image_shape(images: Images) -> tuple[int, int, int] | None:
    """``(C, H, W)`` of a collection of images, or ``None`` when it is empty and shapeless."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise EpisodeError(
                f"images must be a 4-D tensor [N, C, H, W], got shape {tuple(images.shape)}"
            )
        return (int(images.shape[1]), int(images.shape[2]), int(images.shape[3]))
    shape = getattr(images, "image_shape", None)
    if shape is not None:
        return (int(shape[0]), int(shape[1]), int(shape[2]))
    if len(images) == 0:
        return None
    first = images[0]
    if not isinstance(first, torch.Tensor) or first.dim() != 3:
        raise EpisodeError("each image of a sequence must be a 3-D tensor [C, H, W]")
    return (int(first.shape[0]), int(first.shape[1]), int(first.shape[2]))


def image_batches(
    images: Images, batch_size: int, order: Sequence[int] | torch.Tensor | None = None
) -> Iterator[torch.Tensor]:
    """Yield ``[b, C, H, W]`` batches of ``images`` (in ``order`` if given), ``b <= batch_size``."""
    n = len(images)
    indices = list(range(n)) if order is None else [int(i) for i in order]
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        if isinstance(images, torch.Tensor):
            if order is None:
                yield images[chunk[0] : chunk[-1] + 1]
            else:
                yield images[torch.as_tensor(chunk, dtype=torch.long)]
        else:
            loader = getattr(images, "load_batch", None)
            if order is None and loader is not None:
                yield loader(chunk[0], chunk[-1] + 1)
            else:
                yield torch.stack([images[i] for i in chunk])


def _as_label_tuple(labels: Any, what: str) -> tuple[Hashable, ...]:
    """Labels of any container (list, tuple, tensor, numpy array) -> a tuple of Python values."""
    if isinstance(labels, torch.Tensor | np.ndarray):
        if labels.ndim != 1:
            raise EpisodeError(f"{what} must be one-dimensional, got shape {tuple(labels.shape)}")
        labels = labels.tolist()
    if isinstance(labels, str | bytes):
        raise EpisodeError(f"{what} must be a sequence of labels, not a single string")
    values = tuple(labels)
    for value in values:
        if not isinstance(value, Hashable):
            raise EpisodeError(f"{what} must be hashable values, got {type(value).__name__}")
        if isinstance(value, float) and math.isnan(value):
            raise EpisodeError(f"{what} contain NaN, which cannot identify a class")
    return values


def _check_one_label_type(labels: Iterable[Hashable]) -> None:
    types = {type(label) for label in labels}
    if len(types) > 1:
        names = sorted(t.__name__ for t in types)
        raise EpisodeError(
            f"labels mix types {names}; use one type for every label "
            "(e.g. all str or all int) so that 1 and '1' are not silently different classes"
        )


def _class_order(labels: Sequence[Hashable]) -> tuple[Hashable, ...]:
    unique = list(dict.fromkeys(labels))
    try:
        return tuple(sorted(unique))  # type: ignore[type-var]
    except TypeError:
        return tuple(unique)


@dataclass(frozen=True, eq=False)
class Episode:
    """One few-shot task. Immutable: methods read it and never write to its tensors.

    Args:
        support: support images, ``[S, C, H, W]`` float tensor or a lazy image sequence.
        support_labels: ``S`` labels of any hashable type (all the same type).
        query: query images, ``[Q, C, H, W]`` (``Q`` may be 0) or a lazy sequence.
        query_labels: ``Q`` labels (for evaluation), or ``None``.
        classes: the classes in output order; default: the support labels, sorted when
            orderable. Giving it explicitly lets an episode say which class has no images
            (which raises :class:`EmptyClassError`).

    Raises:
        EpisodeError: wrong dimensions, differing image shapes, label count mismatch, mixed
            label types, or a query label with no support image.
        EmptyClassError: a class with no support images.
    """

    support: Images
    support_labels: Sequence[Hashable]
    query: Images
    query_labels: Sequence[Hashable] | None = None
    classes: Sequence[Hashable] | None = None
    _index: dict[Hashable, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        support_labels = _as_label_tuple(self.support_labels, "support labels")
        object.__setattr__(self, "support_labels", support_labels)
        if len(support_labels) == 0:
            raise EmptyClassError("the support set is empty: give at least one labelled image")
        if len(self.support) != len(support_labels):
            raise EpisodeError(
                f"{len(self.support)} support images but {len(support_labels)} support labels"
            )
        _check_one_label_type(support_labels)
        if self.classes is None:
            classes = _class_order(support_labels)
        else:
            classes = _as_label_tuple(self.classes, "classes")
            if len(set(classes)) != len(classes):
                raise EpisodeError(f"classes contain duplicates: {list(classes)}")
            _check_one_label_type(classes + support_labels)
            counts = Counter(support_labels)
            empty = [c for c in classes if counts[c] == 0]
            if empty:
                raise EmptyClassError(
                    f"class(es) {empty} have no support images; give at least one image per "
                    "class or leave them out of `classes`"
                )
            unknown = [label for label in counts if label not in set(classes)]
            if unknown:
                raise EpisodeError(f"support labels {unknown} are not in classes {list(classes)}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "_index", {label: k for k, label in enumerate(classes)})

        support_shape = image_shape(self.support)
        query_shape = image_shape(self.query)
        if query_shape is not None and query_shape != support_shape:
            raise EpisodeError(
                f"query images are {query_shape} (C, H, W) but support images are "
                f"{support_shape}; preprocess both the same way"
            )
        for name, images in (("support", self.support), ("query", self.query)):
            if isinstance(images, torch.Tensor) and not images.is_floating_point():
                raise EpisodeError(
                    f"{name} images must be a float tensor in model space, got {images.dtype}"
                )

        if self.query_labels is not None:
            query_labels = _as_label_tuple(self.query_labels, "query labels")
            if len(query_labels) != len(self.query):
                raise EpisodeError(
                    f"{len(self.query)} query images but {len(query_labels)} query labels"
                )
            _check_one_label_type(query_labels + support_labels)
            missing = sorted({str(q) for q in query_labels if q not in self._index})
            if missing:
                raise EpisodeError(
                    f"query labels {missing[:5]} have no support images; every query class "
                    "needs at least one support image"
                )
            object.__setattr__(self, "query_labels", query_labels)

    # --- sizes --------------------------------------------------------------------------
    @property
    def ways(self) -> int:
        """Number of classes ``K``."""
        return len(self._index)

    @property
    def shots(self) -> tuple[int, ...]:
        """Support images per class, in :attr:`classes` order."""
        counts = Counter(self.support_labels)
        return tuple(counts[label] for label in self._index)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        shape = image_shape(self.support)
        assert shape is not None  # the support is never empty
        return shape

    # --- label mapping ------------------------------------------------------------------
    def encode(self, labels: Sequence[Hashable]) -> torch.Tensor:
        """Labels -> class indices ``[N]`` (long) in ``0..K-1``.

        Raises:
            EpisodeError: a label that is not one of :attr:`classes`.
        """
        values = _as_label_tuple(labels, "labels")
        try:
            return torch.tensor([self._index[v] for v in values], dtype=torch.long)
        except KeyError as error:
            raise EpisodeError(
                f"label {error.args[0]!r} is not a class of this episode ({list(self._index)})"
            ) from None

    def decode(self, indices: torch.Tensor | Sequence[int]) -> list[Hashable]:
        """Class indices ``[N]`` -> the original labels."""
        classes = list(self._index)
        values = indices.tolist() if isinstance(indices, torch.Tensor) else list(indices)
        return [classes[int(i)] for i in values]

    @property
    def support_targets(self) -> torch.Tensor:
        """Support class indices ``[S]`` (long)."""
        return self.encode(self.support_labels)

    @property
    def query_targets(self) -> torch.Tensor | None:
        """Query class indices ``[Q]`` (long), or ``None`` without query labels."""
        return None if self.query_labels is None else self.encode(self.query_labels)


# --- sampling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeSpec:
    """Which dataset items form an episode: serialisable, independent of pixels.

    Attributes:
        classes: dataset class indices, one per way.
        support: per way, the dataset item indices of its support images.
        query: per way, the dataset item indices of its query images.
        outliers: dataset item indices of query images of none of ``classes`` (open-set
            episodes); they follow the ways' queries in query order, with target
            :data:`OUTLIER`. Empty for closed-set episodes.
    """

    classes: tuple[int, ...]
    support: tuple[tuple[int, ...], ...]
    query: tuple[tuple[int, ...], ...]
    outliers: tuple[int, ...] = ()

    @property
    def shots(self) -> tuple[int, ...]:
        """Support images per way."""
        return tuple(len(s) for s in self.support)

    @property
    def query_items(self) -> list[int]:
        """Every query item in query order: the ways' queries in way order, then the outliers."""
        return [int(i) for items in self.query for i in items] + [int(i) for i in self.outliers]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``outliers`` only when there are some)."""
        entry: dict[str, Any] = {
            "classes": list(self.classes),
            "support": [list(s) for s in self.support],
            "query": [list(q) for q in self.query],
        }
        if self.outliers:
            entry["outliers"] = list(self.outliers)
        return entry


def spec_query_targets(spec: EpisodeSpec) -> torch.Tensor:
    """Query targets ``[Q]`` (long) of ``spec`` in :attr:`EpisodeSpec.query_items` order: way
    ``k``'s queries get ``k`` (as :func:`make_episode` encodes them), outliers :data:`OUTLIER`."""
    sizes = torch.tensor([len(q) for q in spec.query], dtype=torch.long)
    inliers = torch.repeat_interleave(torch.arange(len(spec.query)), sizes)
    return torch.cat([inliers, torch.full((len(spec.outliers),), OUTLIER, dtype=torch.long)])


def draw_episode(
    rng: np.random.Generator,
    members: dict[int, np.ndarray],
    classes: Sequence[int] | np.ndarray,
    shots: Sequence[int] | np.ndarray,
    queries: Sequence[int] | np.ndarray,
) -> EpisodeSpec:
    """Draw each class's support and query items, without replacement, in class order.

    Args:
        rng: the episode's generator (one ``choice`` call per class, in order).
        members: item indices of every class, by class index.
        classes: the episode's classes, one per way.
        shots: support images per way.
        queries: query images per way.
    """
    support: list[tuple[int, ...]] = []
    query: list[tuple[int, ...]] = []
    for cls, k, q in zip(classes, shots, queries, strict=True):
        picked = rng.choice(members[int(cls)], size=int(k) + int(q), replace=False)
        support.append(tuple(int(i) for i in picked[: int(k)]))
        query.append(tuple(int(i) for i in picked[int(k) :]))
    return EpisodeSpec(tuple(int(c) for c in classes), tuple(support), tuple(query))


class EpisodeSampler:
    """Seeded sampler of N-way K-shot Q-query episodes over a labelled collection.

    Episode ``i`` depends only on ``(seed, i)`` (numpy PCG64 seeded with ``[seed, i]``), so the
    same seed gives the same episodes on any machine, in any order, in any process.

    Args:
        labels: class index of every item, ``[N]`` ints.
        ways: classes per episode.
        shots: support images per class: one int, or one int per way (unbalanced supports;
            way ``j`` of every episode gets ``shots[j]``).
        queries: query images per class (0 for none).
        seed: the seed.

    Raises:
        DatasetError: fewer than ``ways`` classes have ``max(shots) + queries`` items.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        *,
        ways: int,
        shots: int | Sequence[int],
        queries: int,
        seed: int = 0,
    ) -> None:
        label_array = np.asarray(labels, dtype=np.int64)
        if label_array.ndim != 1:
            raise ValueError("labels must be one-dimensional")
        shot_list = [int(shots)] * int(ways) if isinstance(shots, int) else [int(s) for s in shots]
        if ways < 1:
            raise ValueError(f"ways must be at least 1, got {ways}")
        if len(shot_list) != ways:
            raise ValueError(f"got {len(shot_list)} shot counts for {ways} ways")
        if min(shot_list) < 1:
            raise ValueError(f"every class needs at least 1 shot, got {shot_list}")
        if queries < 0:
            raise ValueError(f"queries must be >= 0, got {queries}")
        self.ways = int(ways)
        self.shots = tuple(shot_list)
        self.queries = int(queries)
        self.seed = int(seed)
        classes, counts = np.unique(label_array, return_counts=True)
        need = max(shot_list) + queries
        self._candidates = classes[counts >= need]
        if len(self._candidates) < ways:
            raise DatasetError(
                f"{ways}-way episodes with up to {max(shot_list)} shots and {queries} queries "
                f"need {ways} classes with at least {need} images each; only "
                f"{len(self._candidates)} of {len(classes)} classes have that many"
            )
        order = np.argsort(label_array, kind="stable")
        sorted_labels = label_array[order]
        self._members = {
            int(c): order[
                np.searchsorted(sorted_labels, c) : np.searchsorted(sorted_labels, c, "right")
            ]
            for c in self._candidates
        }

    def sample(self, index: int) -> EpisodeSpec:
        """The ``index``-th episode of this sampler's stream."""
        rng = np.random.Generator(np.random.PCG64([self.seed, int(index)]))
        chosen = rng.choice(self._candidates, size=self.ways, replace=False)
        return draw_episode(rng, self._members, chosen, self.shots, [self.queries] * self.ways)

    def take(self, count: int) -> Iterator[EpisodeSpec]:
        """The first ``count`` episodes."""
        for index in range(count):
            yield self.sample(index)


def make_episode(
    dataset: ImageDataset,
    spec: EpisodeSpec,
    preprocessing: Preprocessing,
    *,
    lazy: bool = False,
) -> Episode:
    """Materialise an :class:`EpisodeSpec` of ``dataset`` into an :class:`Episode`.

    Labels are the dataset's class names. With ``lazy=True`` images are decoded on access
    (for very large supports); otherwise they are loaded now as ``[N, C, H, W]`` tensors.

    An open-set spec's outliers follow the ways' queries; such an episode has no query labels
    (an outlier's class is none of the episode's): its targets are
    :func:`spec_query_targets`.
    """
    names = dataset.class_names
    support_items = [i for items in spec.support for i in items]
    query_items = spec.query_items
    support_labels = [
        names[c] for c, items in zip(spec.classes, spec.support, strict=True) for _ in items
    ]
    query_labels = [
        names[c] for c, items in zip(spec.classes, spec.query, strict=True) for _ in items
    ]
    support: Images
    query: Images
    if lazy:
        support = dataset.images(support_items, preprocessing)
        query = dataset.images(query_items, preprocessing)
    else:
        support = dataset.load_batch(support_items, preprocessing)
        query = (
            dataset.load_batch(query_items, preprocessing)
            if query_items
            else torch.empty((0, *support.shape[1:]))
        )
    return Episode(
        support,
        support_labels,
        query,
        None if spec.outliers else query_labels,
        classes=[names[c] for c in spec.classes],
    )
