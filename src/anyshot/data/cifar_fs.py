"""CIFAR-FS (Bertinetto et al., 2019): CIFAR-100 classes split 64/16/20 by class name.

Expected layout::

    ROOT/cifar-100-python/{train,test,meta}    the CIFAR-100 "python version" pickles, as
                                               extracted from cifar-100-python.tar.gz (the three
                                               files may also sit directly in ROOT)
    ROOT/splits/bertinetto/{train,val,test}.txt  CIFAR-100 fine class names, one per line

Every split pools the CIFAR-100 train and test images of its classes (500 + 100 = 600 per class).
This module also holds the CIFAR-100 reader shared with :mod:`anyshot.data.fc100`:
:func:`read_cifar100` and :class:`Cifar100Classes`. The pixels of the selected classes are kept
decoded in memory (3 KB per image: 115 MB for all 60,000). ``pickle`` can run arbitrary code:
only load files you trust.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from anyshot.data.dataset import ImageDataset
from anyshot.data.tiered_imagenet import load_pickle, pickled_text
from anyshot.errors import DatasetError

__all__ = [
    "CIFAR100_LAYOUT",
    "Cifar100",
    "Cifar100Classes",
    "CifarFS",
    "find_cifar100",
    "read_cifar100",
]

CIFAR100_FILES = ("train", "test", "meta")

CIFAR100_LAYOUT = (
    "expected CIFAR-100 layout: ROOT/cifar-100-python/{train,test,meta} (the python version of "
    "CIFAR-100, as extracted from cifar-100-python.tar.gz) or those three files directly in ROOT"
)

SPLIT_LAYOUT = (
    "CIFAR-FS split files: ROOT/splits/bertinetto/{train,val,test}.txt listing CIFAR-100 fine "
    "class names, one per line"
)

LAYOUT = f"{CIFAR100_LAYOUT}; {SPLIT_LAYOUT}"

_SIDE = 32


@dataclass(frozen=True, eq=False)
class Cifar100:
    """CIFAR-100 train and test parts, pooled (train images first).

    Attributes:
        folder: the folder holding ``train``, ``test`` and ``meta``.
        pixels: ``[N, 32, 32, 3]`` uint8 RGB.
        fine_labels: ``[N]`` int64 fine class index.
        coarse_labels: ``[N]`` int64 superclass index.
        fine_names: fine class index -> name.
        coarse_names: superclass index -> name.
        parts: ``[N]`` int8, 0 for the ``train`` file and 1 for ``test``.
        positions: ``[N]`` int64, the image's row in its file.
    """

    folder: Path
    pixels: np.ndarray
    fine_labels: np.ndarray
    coarse_labels: np.ndarray
    fine_names: list[str]
    coarse_names: list[str]
    parts: np.ndarray
    positions: np.ndarray

    def superclass_of(self) -> dict[str, str]:
        """Fine class name -> superclass name, for the fine classes that have images."""
        pairs = {
            (int(f), int(c))
            for f, c in zip(self.fine_labels.tolist(), self.coarse_labels.tolist(), strict=True)
        }
        return {self.fine_names[f]: self.coarse_names[c] for f, c in sorted(pairs)}


def find_cifar100(root: Path) -> Path:
    """The folder with the CIFAR-100 pickles: ``root/cifar-100-python`` or ``root`` itself.

    Raises:
        DatasetError: neither holds all of ``train``, ``test`` and ``meta`` (the message names
            the missing files).
    """
    candidates = (root / "cifar-100-python", root)
    for folder in candidates:
        if all((folder / name).is_file() for name in CIFAR100_FILES):
            return folder
    folder = candidates[0] if candidates[0].is_dir() else root
    missing = [str(folder / name) for name in CIFAR100_FILES if not (folder / name).is_file()]
    raise DatasetError(
        f"CIFAR-100 not found under {str(root)!r}: {', '.join(repr(m) for m in missing)} "
        f"missing; {CIFAR100_LAYOUT}"
    )


def _fields(path: Path, what: str) -> dict[str, object]:
    """A CIFAR pickle's dict with ``str`` keys (the files have ``bytes`` or ``str`` keys)."""
    content = load_pickle(path, what)
    if not isinstance(content, Mapping):
        raise DatasetError(
            f"{str(path)!r} holds a {type(content).__name__}, not a dict; {CIFAR100_LAYOUT}"
        )
    return {pickled_text(key): value for key, value in content.items()}


def _need(fields: Mapping[str, object], key: str, path: Path) -> object:
    if key not in fields:
        raise DatasetError(
            f"{str(path)!r} has no {key!r} entry (keys: {', '.join(sorted(fields))}); "
            f"{CIFAR100_LAYOUT}"
        )
    return fields[key]


def _names(value: object, path: Path, key: str) -> list[str]:
    if not isinstance(value, Sequence | np.ndarray) or isinstance(value, str | bytes):
        raise DatasetError(f"{str(path)!r}: {key!r} is not a list of names")
    return [pickled_text(name) for name in value]


def _labels(value: object, count: int, path: Path, key: str, classes: int) -> np.ndarray:
    try:
        labels = np.asarray(value).reshape(-1).astype(np.int64)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{str(path)!r}: {key!r} is not a list of integers") from error
    if labels.shape != (count,):
        raise DatasetError(f"{str(path)!r}: {count} images but {labels.size} {key!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DatasetError(f"{str(path)!r}: {key!r} outside [0, {classes})")
    return labels


def read_cifar100(root: str | os.PathLike[str]) -> Cifar100:
    """Read the CIFAR-100 python pickles under ``root`` (see :func:`find_cifar100`).

    Raises:
        DatasetError: files missing or not in the CIFAR-100 format.
    """
    folder = find_cifar100(Path(root))
    meta_path = folder / "meta"
    meta = _fields(meta_path, "CIFAR-100 meta file")
    fine_names = _names(_need(meta, "fine_label_names", meta_path), meta_path, "fine_label_names")
    coarse_names = _names(
        _need(meta, "coarse_label_names", meta_path), meta_path, "coarse_label_names"
    )
    pixels, fine, coarse, parts, positions = [], [], [], [], []
    for part, name in enumerate(("train", "test")):
        path = folder / name
        fields = _fields(path, f"CIFAR-100 {name} file")
        data = np.asarray(_need(fields, "data", path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * _SIDE * _SIDE:
            raise DatasetError(
                f"{str(path)!r}: 'data' must be uint8 [N, 3072], got {data.dtype} "
                f"{list(data.shape)}; {CIFAR100_LAYOUT}"
            )
        count = data.shape[0]
        fine_key, coarse_key = "fine_labels", "coarse_labels"
        fine.append(_labels(_need(fields, fine_key, path), count, path, fine_key, len(fine_names)))
        coarse.append(
            _labels(_need(fields, coarse_key, path), count, path, coarse_key, len(coarse_names))
        )
        # Rows are the red, green and blue planes of a 32x32 image, each row-major.
        pixels.append(data.reshape(count, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1))
        parts.append(np.full(count, part, dtype=np.int8))
        positions.append(np.arange(count, dtype=np.int64))
    return Cifar100(
        folder=folder,
        pixels=np.ascontiguousarray(np.concatenate(pixels)),
        fine_labels=np.concatenate(fine),
        coarse_labels=np.concatenate(coarse),
        fine_names=fine_names,
        coarse_names=coarse_names,
        parts=np.concatenate(parts),
        positions=np.concatenate(positions),
    )


class Cifar100Classes(ImageDataset):
    """The CIFAR-100 images (train and test pooled) of some fine classes, decoded in memory.

    Items are in CIFAR order (the ``train`` file's, then the ``test`` file's). Images are 32x32
    RGB.

    Args:
        cifar: the data from :func:`read_cifar100`.
        class_names: the fine classes to keep, in class-index order.

    Raises:
        DatasetError: a name is not a CIFAR-100 fine class.
        EmptyClassError: a class has no images.
    """

    def __init__(self, cifar: Cifar100, class_names: Sequence[str]) -> None:
        index_of = {name: k for k, name in enumerate(cifar.fine_names)}
        unknown = [name for name in class_names if name not in index_of]
        if unknown:
            raise DatasetError(
                f"{len(unknown)} class names are not CIFAR-100 fine classes in "
                f"{str(cifar.folder / 'meta')!r}, e.g. {unknown[0]!r}"
            )
        mapping = np.full(len(cifar.fine_names), -1, dtype=np.int64)
        for label, name in enumerate(class_names):
            mapping[index_of[name]] = label
        labels = mapping[cifar.fine_labels]
        keep = np.flatnonzero(labels >= 0)
        super().__init__(class_names, labels[keep])
        self.folder = cifar.folder
        self.pixels: np.ndarray = np.ascontiguousarray(cifar.pixels[keep])
        self._parts = cifar.parts[keep]
        self._positions = cifar.positions[keep]

    def source(self, index: int) -> str:
        """``"<cifar folder>/train[row]"`` or ``".../test[row]"``."""
        index = self.check_index(index)
        part = ("train", "test")[int(self._parts[index])]
        return f"{self.folder / part}[{int(self._positions[index])}]"

    def image(self, index: int) -> Image.Image:
        """The 32x32 RGB image."""
        return Image.fromarray(self.pixels[self.check_index(index)], mode="RGB")


def read_class_list(path: Path, layout: str) -> list[str]:
    """Non-empty stripped lines of a split file, duplicates dropped (first kept).

    Raises:
        DatasetError: the file is missing or lists nothing (the message names it and ``layout``).
    """
    if not path.is_file():
        raise DatasetError(f"CIFAR-FS split file {str(path)!r} not found; {layout}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = list(dict.fromkeys(line for line in lines if line))
    if not names:
        raise DatasetError(f"CIFAR-FS split file {str(path)!r} lists no classes; {layout}")
    return names


class CifarFS(Cifar100Classes):
    """One split of CIFAR-FS: the classes listed in ``splits/bertinetto/{split}.txt``.

    Class names are sorted; 600 images per class with the full CIFAR-100.

    Args:
        root: folder with ``cifar-100-python/`` (or the CIFAR-100 files) and ``splits/``.
        split: ``"train"`` (64 classes), ``"val"`` (16) or ``"test"`` (20); any name with a
            split file works.

    Raises:
        DatasetError: the split file or CIFAR-100 files are missing, or the split file names a
            class CIFAR-100 does not have.
    """

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        self.root = Path(root)
        self.split = split
        self.split_file = self.root / "splits" / "bertinetto" / f"{split}.txt"
        names = read_class_list(self.split_file, LAYOUT)
        try:
            cifar = read_cifar100(self.root)
        except DatasetError as error:
            raise DatasetError(f"CIFAR-FS: {error}; {SPLIT_LAYOUT}") from error
        try:
            super().__init__(cifar, sorted(names))
        except DatasetError as error:
            raise DatasetError(f"CIFAR-FS split file {str(self.split_file)!r}: {error}") from error

    def __repr__(self) -> str:
        return (
            f"CifarFS({str(self.root)!r}, split={self.split!r}: {self.num_classes} classes, "
            f"{len(self)} images)"
        )
