"""The :class:`ImageDataset` contract: an indexable, labelled image collection decoded lazily.

Every dataset loader in :mod:`anyshot.data` (class-per-folder trees, Omniglot zips, mini-ImageNet
CSVs) is an :class:`ImageDataset`. Items are addressed by integer index; ``labels[i]`` is the class
index of item ``i`` and ``class_names[labels[i]]`` its class name. Pixels are only read when an item
is accessed, and :class:`LazyImages` lets an episode refer to thousands of images without holding
their pixels in memory.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterable, Sequence
from typing import ClassVar, overload

import numpy as np
import torch
from PIL import Image

from anyshot.data.images import Preprocessing, load_file, open_image
from anyshot.errors import DatasetError, EmptyClassError

__all__ = ["FileDataset", "ImageDataset", "LazyImages"]


class ImageDataset(abc.ABC):
    """Base class of labelled image collections.

    Subclasses call ``super().__init__(class_names, labels)`` and implement :meth:`source` and
    :meth:`image`; everything else is derived from those.

    Attributes:
        class_names: class index -> class name.
        labels: int64 array ``[N]``, the class index of each item.
    """

    class_names: list[str]
    labels: np.ndarray
    #: Whether :meth:`load` decodes each item for the preprocessing's size (a large JPEG at 1/2,
    #: 1/4 or 1/8 scale, :func:`~anyshot.data.decode_image`) rather than in full: true for a
    #: user's own class folders (camera photos), false for the benchmark sets, whose embeddings
    #: stay those of a full decode. Feature caches key the two apart.
    decode_for_size: ClassVar[bool] = False

    def __init__(self, class_names: Sequence[str], labels: Iterable[int] | np.ndarray) -> None:
        """Validate and store the class names and per-item labels.

        Raises:
            DatasetError: a label is outside ``[0, len(class_names))`` or names repeat.
            EmptyClassError: a class has no items (the message names it).
        """
        self.class_names = [str(name) for name in class_names]
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(set(self.class_names)) != len(self.class_names):
            raise DatasetError(f"{type(self).__name__}: class names must be unique")
        if self.labels.size and (
            self.labels.min() < 0 or self.labels.max() >= len(self.class_names)
        ):
            raise DatasetError(
                f"{type(self).__name__}: labels must lie in [0, {len(self.class_names)}), "
                f"got values from {self.labels.min()} to {self.labels.max()}"
            )
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        empty = [self.class_names[k] for k in np.flatnonzero(counts == 0)]
        if empty:
            shown = ", ".join(repr(name) for name in empty[:5])
            more = f" and {len(empty) - 5} more" if len(empty) > 5 else ""
            raise EmptyClassError(
                f"{type(self).__name__}: class {shown}{more} has no images; "
                "add images to it or remove it from the dataset"
            )
        self._by_class: list[np.ndarray] | None = None

    # ----------------------------------------------------------------- to implement
    @abc.abstractmethod
    def source(self, index: int) -> str:
        """Human-readable identity of item ``index`` (a file path, ``zip:member@rot90``, ...)."""

    @abc.abstractmethod
    def image(self, index: int) -> Image.Image:
        """Decode item ``index`` (any Pillow mode).

        Raises:
            ImageReadError: the item cannot be read or decoded; the message names :meth:`source`.
        """

    # ----------------------------------------------------------------- derived
    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def check_index(self, index: int) -> int:
        """Return ``index`` as a non-negative ``int`` (negative counts from the end).

        Raises:
            IndexError: out of range.
        """
        size = len(self)
        position = int(index)
        if position < 0:
            position += size
        if not 0 <= position < size:
            raise IndexError(f"item index {index} out of range for a dataset of {size} items")
        return position

    def load(self, index: int, preprocessing: Preprocessing) -> torch.Tensor:
        """Decode and preprocess one item: a float tensor ``[C, H, W]``."""
        return preprocessing(self.image(index))

    def load_batch(self, indices: Iterable[int], preprocessing: Preprocessing) -> torch.Tensor:
        """Decode and preprocess several items: a float tensor ``[B, C, H, W]``."""
        tensors = [self.load(int(i), preprocessing) for i in indices]
        if not tensors:
            return torch.empty((0, *_shape(preprocessing)), dtype=torch.float32)
        return torch.stack(tensors)

    def images(self, indices: Iterable[int], preprocessing: Preprocessing) -> LazyImages:
        """A lazy sequence of the items ``indices`` as ``[C, H, W]`` tensors (nothing read yet)."""
        return LazyImages(self, indices, preprocessing)

    def indices_by_class(self) -> list[np.ndarray]:
        """Item indices of each class (int64, ascending), in class-index order."""
        if self._by_class is None:
            order = np.argsort(self.labels, kind="stable")
            counts = np.bincount(self.labels, minlength=self.num_classes)
            self._by_class = [
                chunk.astype(np.int64) for chunk in np.split(order, np.cumsum(counts)[:-1])
            ]
        return [chunk.copy() for chunk in self._by_class]

    def class_counts(self) -> np.ndarray:
        """Number of items of each class, int64 ``[num_classes]``."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_classes} classes, {len(self)} images)"


class FileDataset(ImageDataset):
    """An :class:`ImageDataset` whose items are image files on disk.

    Args:
        paths: one file path per item.
        labels: class index of each item.
        class_names: class index -> name.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        labels: Iterable[int] | np.ndarray,
        class_names: Sequence[str],
    ) -> None:
        super().__init__(class_names, labels)
        self.paths: list[str] = [os.fspath(path) for path in paths]
        if len(self.paths) != len(self.labels):
            raise DatasetError(
                f"{type(self).__name__}: {len(self.paths)} paths but {len(self.labels)} labels"
            )

    def source(self, index: int) -> str:
        """The item's file path."""
        return self.paths[self.check_index(index)]

    def image(self, index: int) -> Image.Image:
        """Read and decode the item's file (EXIF orientation applied)."""
        return open_image(self.paths[self.check_index(index)])

    def load(self, index: int, preprocessing: Preprocessing) -> torch.Tensor:
        """Decode (for the preprocessing's size where :attr:`decode_for_size`, as
        :func:`~anyshot.data.images.load_file`) and preprocess the item's file: a float tensor
        ``[C, H, W]``."""
        if self.decode_for_size:
            return load_file(self.paths[self.check_index(index)], preprocessing)
        return preprocessing(self.image(index))


class LazyImages(Sequence[torch.Tensor]):
    """A read-on-access sequence of preprocessed images ``[C, H, W]`` from a dataset.

    Holds only the dataset reference, the item indices and the preprocessing, so an episode with
    thousands of support images costs a few bytes per image until the images are used; each
    access decodes again (nothing is cached).

    Args:
        dataset: where the images come from.
        indices: dataset item indices, in sequence order.
        preprocessing: applied to every decoded image.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        indices: Iterable[int] | np.ndarray,
        preprocessing: Preprocessing,
    ) -> None:
        self.dataset = dataset
        items = indices if isinstance(indices, np.ndarray) else list(indices)
        array = np.asarray(items, dtype=np.int64).reshape(-1)
        size = len(dataset)
        if array.size and (array.min() < -size or array.max() >= size):
            raise IndexError(f"item indices out of range for a dataset of {size} items")
        self.indices: np.ndarray = np.where(array < 0, array + size, array)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    @overload
    def __getitem__(self, position: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, position: slice) -> LazyImages: ...

    def __getitem__(self, position: int | slice) -> torch.Tensor | LazyImages:
        """The image at ``position`` as ``[C, H, W]``; a slice gives another lazy sequence."""
        if isinstance(position, slice):
            return LazyImages(self.dataset, self.indices[position], self.preprocessing)
        size = len(self)
        index = int(position)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"position {position} out of range for {size} images")
        return self.dataset.load(int(self.indices[index]), self.preprocessing)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image, known without reading any."""
        return _shape(self.preprocessing)

    def load_batch(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start:stop`` (Python slice semantics) as one tensor ``[b, C, H, W]``."""
        return self.dataset.load_batch(self.indices[start:stop].tolist(), self.preprocessing)

    def source(self, position: int) -> str:
        """The dataset :meth:`~ImageDataset.source` of the image at ``position``."""
        return self.dataset.source(int(self.indices[position]))

    def is_file(self, position: int) -> bool:
        """Whether the image at ``position`` is read from a file of its own by
        :class:`FileDataset`'s own reading (so it may be decoded on another thread; see
        :func:`anyshot.embedding.embedding_batches`). A subclass that reads its items another
        way (a shared handle) is decoded in the calling thread."""
        kind = type(self.dataset)
        return (
            isinstance(self.dataset, FileDataset)
            and kind.image is FileDataset.image
            and kind.load is FileDataset.load
        )

    @property
    def decode_for_size(self) -> bool:
        """The dataset's :attr:`~ImageDataset.decode_for_size`."""
        return self.dataset.decode_for_size

    def __repr__(self) -> str:
        return f"LazyImages({len(self)} images of shape {self.image_shape} from {self.dataset!r})"


def _shape(preprocessing: Preprocessing) -> tuple[int, int, int]:
    """``(C, H, W)`` produced by ``preprocessing``."""
    return (preprocessing.channels, preprocessing.image_size, preprocessing.image_size)
