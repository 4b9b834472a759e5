"""tiered-ImageNet (Ren et al., 2018) from the pickles its authors distribute.

Expected layout (the ``tiered-imagenet.tar`` of Ren et al., also used by MetaOptNet and others)::

    ROOT/{split}_images_png.pkl   a pickled list (or object array) of PNG-encoded images, one per
                                  item: uint8 arrays as written by ``cv2.imencode``, ``bytes``,
                                  or Python 2 byte strings
    ROOT/{split}_labels.pkl       a pickled dict: ``label_specific`` (int class id per image) and
                                  usually ``label_specific_str`` (class id -> WordNet id),
                                  ``label_general`` / ``label_general_str`` (the 34 categories)

The files were written by Python 2, so they are read with ``encoding="latin1"``. The encoded
PNG bytes of the whole split are kept in memory and decoded on access: about 1 GB for the test
split and several GB for train. ``pickle`` can run arbitrary code: only load files you trust.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import decode_image
from anyshot.errors import DatasetError, ImageReadError

__all__ = ["TIERED_IMAGENET_SPLITS", "TieredImageNet", "load_pickle", "pickled_text"]

TIERED_IMAGENET_SPLITS = ("train", "val", "test")

LAYOUT = (
    "expected layout: ROOT/{split}_images_png.pkl (a pickled list of PNG-encoded images) and "
    "ROOT/{split}_labels.pkl (a pickled dict with 'label_specific' = class id per image and "
    "optionally 'label_specific_str' = class names), as in the tiered-ImageNet release of "
    "Ren et al."
)


def load_pickle(path: Path, what: str) -> Any:
    """Unpickle ``path`` (Python 2 pickles included, via ``encoding="latin1"``).

    Raises:
        DatasetError: the file cannot be read or is not a valid pickle (the message names it).
    """
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except Exception as error:  # unpickling can fail in many ways; all mean "bad file"
        raise DatasetError(f"cannot read {what} {str(path)!r}: {error!r}") from error


def pickled_text(value: object) -> str:
    """A pickled string as ``str`` (Python 3 ``bytes`` are decoded as UTF-8, falling back to
    latin-1)."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value).decode("latin1")
    return str(value)


def _as_bytes(item: object) -> bytes | None:
    """The encoded image of one pickled item, or ``None`` if it is not a byte buffer."""
    if isinstance(item, bytes):
        return item
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype in (np.uint8, np.int8):
        return item.tobytes()
    if isinstance(item, str):  # a Python 2 byte string, read back through latin-1
        try:
            return item.encode("latin1")
        except UnicodeEncodeError:
            return None
    return None


class TieredImageNet(ImageDataset):
    """One split of tiered-ImageNet: 351 train, 97 val, 160 test classes of 84x84 RGB images.

    Class names come from ``label_specific_str`` (WordNet ids in the original release) when the
    labels pickle has it, else they are the class ids as text; classes are ordered by class id.

    Args:
        root: the folder with the ``{split}_*.pkl`` files.
        split: ``"train"``, ``"val"`` or ``"test"`` (any other name works if its files exist).

    Attributes:
        images_path: the ``{split}_images_png.pkl`` file.
        labels_path: the ``{split}_labels.pkl`` file.
        class_ids: the original ``label_specific`` id of each class.

    Raises:
        DatasetError: a file is missing or unreadable, the labels pickle lacks
            ``label_specific``, or the image and label counts differ.
    """

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        self.root = Path(root)
        self.split = split
        self.images_path = self.root / f"{split}_images_png.pkl"
        self.labels_path = self.root / f"{split}_labels.pkl"
        missing = [str(p) for p in (self.images_path, self.labels_path) if not p.is_file()]
        if missing:
            raise DatasetError(
                f"tiered-ImageNet split {split!r}: {' and '.join(repr(m) for m in missing)} "
                f"not found; {LAYOUT}"
            )

        info = load_pickle(self.labels_path, "tiered-ImageNet labels")
        if not isinstance(info, Mapping):
            raise DatasetError(
                f"{str(self.labels_path)!r} holds a {type(info).__name__}, not a dict; {LAYOUT}"
            )
        fields = {pickled_text(key): value for key, value in info.items()}
        if "label_specific" not in fields:
            raise DatasetError(
                f"{str(self.labels_path)!r} has no 'label_specific' entry "
                f"(keys: {', '.join(sorted(fields))}); {LAYOUT}"
            )
        try:
            ids = np.asarray(fields["label_specific"]).reshape(-1).astype(np.int64)
        except (TypeError, ValueError) as error:
            raise DatasetError(
                f"{str(self.labels_path)!r}: 'label_specific' is not a list of integers"
            ) from error
        if ids.size and ids.min() < 0:
            raise DatasetError(f"{str(self.labels_path)!r}: 'label_specific' has negative ids")

        images = load_pickle(self.images_path, "tiered-ImageNet images")
        if not isinstance(images, Sequence | np.ndarray):
            raise DatasetError(
                f"{str(self.images_path)!r} holds a {type(images).__name__}, not a list of "
                f"encoded images; {LAYOUT}"
            )
        if len(images) != len(ids):
            raise DatasetError(
                f"tiered-ImageNet split {split!r}: {str(self.images_path)!r} has {len(images)} "
                f"images but {str(self.labels_path)!r} has {len(ids)} labels"
            )
        self._encoded: Sequence[Any] | np.ndarray = images

        self.class_ids = np.unique(ids)
        names = fields.get("label_specific_str")
        named = names is not None and len(names) > int(self.class_ids.max(initial=-1))
        class_names = [
            pickled_text(names[k]) if named and names is not None else str(k)
            for k in self.class_ids.tolist()
        ]
        super().__init__(class_names, np.searchsorted(self.class_ids, ids))

    def source(self, index: int) -> str:
        """``"<images pickle>[index]"``."""
        return f"{self.images_path}[{self.check_index(index)}]"

    def image(self, index: int) -> Image.Image:
        """Decode the item's PNG bytes (usually an 84x84 RGB image)."""
        index = self.check_index(index)
        data = _as_bytes(self._encoded[index])
        if data is None:
            raise ImageReadError(
                f"cannot read image {self.source(index)!r}: the pickle holds a "
                f"{type(self._encoded[index]).__name__}, not encoded image bytes"
            )
        return decode_image(data, self.source(index))

    def __repr__(self) -> str:
        return (
            f"TieredImageNet({str(self.root)!r}, split={self.split!r}: {self.num_classes} "
            f"classes, {len(self)} images)"
        )
