"""mini-ImageNet (Vinyals et al., 2016) with the Ravi & Larochelle split.

Two layouts are accepted, tried in this order:

* CSV: ``ROOT/{split}.csv`` (header ``filename,label``, label = WordNet id) and the images flat in
  ``ROOT/images/<filename>``;
* folders: ``ROOT/{split}/<wnid>/<image files>`` (read with :class:`FolderDataset`).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from anyshot.data.dataset import FileDataset
from anyshot.data.folder import FolderDataset
from anyshot.errors import DatasetError

__all__ = ["MINI_IMAGENET_SPLITS", "MiniImageNet"]

MINI_IMAGENET_SPLITS = ("train", "val", "test")

LAYOUT = (
    "expected layout: ROOT/{split}.csv (columns filename,label) with the images in "
    "ROOT/images/<filename>, or ROOT/{split}/<wnid>/<image files>"
)


class MiniImageNet(FileDataset):
    """One split of mini-ImageNet; class names are the sorted WordNet ids.

    Args:
        root: the mini-ImageNet folder.
        split: ``"train"``, ``"val"`` or ``"test"`` (any other name works if its CSV or folder
            exists).

    Raises:
        DatasetError: neither layout is found, the CSV is malformed, or images listed in the CSV
            are missing (the message counts them and names the first).
    """

    def __init__(self, root: str | os.PathLike[str], split: str) -> None:
        self.root = Path(root)
        self.split = split
        csv_path = self.root / f"{split}.csv"
        folder = self.root / split
        if csv_path.is_file():
            self.layout = "csv"
            paths, labels, class_names = _read_csv(csv_path, self.root / "images", split)
        elif folder.is_dir():
            self.layout = "folder"
            tree = FolderDataset(folder)
            paths, labels, class_names = tree.paths, tree.labels.tolist(), tree.class_names
        else:
            raise DatasetError(
                f"mini-ImageNet split {split!r} not found under {str(self.root)!r}: neither "
                f"{str(csv_path)!r} nor the folder {str(folder)!r} exists; {LAYOUT}"
            )
        super().__init__(paths, labels, class_names)

    def __repr__(self) -> str:
        return (
            f"MiniImageNet({str(self.root)!r}, split={self.split!r}: {self.num_classes} classes, "
            f"{len(self)} images)"
        )


def _read_csv(csv_path: Path, images: Path, split: str) -> tuple[list[str], list[int], list[str]]:
    """Paths, labels and sorted class names from a Ravi & Larochelle CSV; checks the files exist."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or [cell.strip() for cell in rows[0][:2]] != ["filename", "label"]:
        raise DatasetError(f"{str(csv_path)!r} must start with the header 'filename,label'")
    entries: list[tuple[str, str]] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise DatasetError(f"{str(csv_path)!r} line {number}: expected 'filename,label'")
        entries.append((row[0].strip(), row[1].strip()))
    if not entries:
        raise DatasetError(f"{str(csv_path)!r} lists no images")

    # One directory listing instead of a stat per file (tens of thousands of files).
    try:
        present = set(os.listdir(images))
    except OSError:
        present = set()
    missing = [name for name, _ in entries if name not in present]
    if missing:
        where = repr(str(images)) + ("" if images.is_dir() else " (folder not found)")
        raise DatasetError(
            f"mini-ImageNet split {split!r}: {len(missing)} of the {len(entries)} images listed in "
            f"{str(csv_path)!r} are missing from {where}, e.g. {missing[0]!r}. Download the "
            f"split's images into that folder (some copies ship only the val and test images); "
            f"{LAYOUT}"
        )
    class_names = sorted({label for _, label in entries})
    label_of = {name: k for k, name in enumerate(class_names)}
    paths = [str(images / name) for name, _ in entries]
    labels = [label_of[label] for _, label in entries]
    return paths, labels, class_names
