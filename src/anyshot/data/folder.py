"""A class-per-folder image tree: ``ROOT/<class name>/<image files, at any depth>``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image

from anyshot.data.dataset import FileDataset
from anyshot.data.files import EXTENSIONS, unread_advice, unread_format
from anyshot.data.intake import DuplicateFiles, scan_support
from anyshot.errors import DatasetError, EmptyClassError

__all__ = ["LAYOUT", "FolderDataset"]

LAYOUT = (
    "expected layout: ROOT/<class name>/<image files> — one sub-folder per class, named after "
    f"the class, holding its images ({EXTENSIONS}) at any depth"
)


class FolderDataset(FileDataset):
    """Images in a folder per class.

    Class names are the sub-folder names of ``root``, sorted; each class's images are found at any
    depth below its folder and sorted by path, by the scan ``classify`` uses for a support
    folder (:func:`anyshot.data.intake.scan_support`), except that symbolic links to folders
    inside a class folder are not followed (links to files and class folders that are links
    are). Hidden files and folders (``.*``, ``__MACOSX``) are ignored; other files without an
    image extension or whose header Pillow cannot read (a text file named ``.jpg``, an empty
    file), files directly in ``root``, unreadable or special files and linked folders are
    skipped and listed in :attr:`skipped`, and so is a class folder without an image that can
    be read (the class is left out: the others can still be evaluated).

    Args:
        root: the folder holding one sub-folder per class.
        split: the split ``root`` holds (``ROOT/<split>/``), ``None`` for a tree of every class.

    Items are decoded for the preprocessing's size (:attr:`decode_for_size`, as ``classify``
    decodes a user's files: a camera photo's JPEG at a reduced scale).

    Attributes:
        root: the root folder.
        split: as given.
        paths: image file of each item.
        skipped: files and folders that were not used (not images, not inside a class folder,
            unreadable, special files, linked folders; hidden ones are not listed), sorted.
        skip_reasons: why each of :attr:`skipped` was not used, in words.
        duplicates: groups of identical files in different classes (every copy is used, under
            its folder's class: an episode may hold the same image under two labels).

    Raises:
        DatasetError: ``root`` does not exist, is not a folder, or has no class folder with
            an image file.
        EmptyClassError: no class folder holds an image that can be read (a class folder
            without one is left out and listed in :attr:`skipped`).
    """

    decode_for_size = True

    def __init__(self, root: str | os.PathLike[str], split: str | None = None) -> None:
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DatasetError(f"dataset folder {str(self.root)!r} {what}; {LAYOUT}")
        found = scan_support(
            self.root,
            min_classes=1,
            what="dataset folder",
            layout=LAYOUT,
            follow_folder_links=False,
            skip_empty_classes=True,
        )
        opened = [_opens(path) for path in found.paths]
        unopened = [path for path, ok in zip(found.paths, opened, strict=True) if not ok]
        kept = [(p, c) for p, c, ok in zip(found.paths, found.labels, opened, strict=True) if ok]
        classes = sorted({name for _, name in kept})
        reasons = {s.path: s.reason for s in found.report.skipped if s.kind != "hidden"}
        reasons.update((path, _unopened_reason(path)) for path in unopened)
        for name in sorted(set(found.classes) - set(classes)):
            reasons[str(self.root / name)] = "no image Pillow can open: class left out"
        if not classes:
            raise EmptyClassError(
                f"no class folder of {str(self.root)!r} holds an image that can be read "
                f"({len(reasons)} files and folders skipped); {LAYOUT}"
            )
        index = {name: label for label, name in enumerate(classes)}
        paths = [path for path, _ in kept]
        labels = [index[name] for _, name in kept]
        self.skip_reasons: dict[str, str] = dict(sorted(reasons.items()))
        self.skipped: list[str] = list(self.skip_reasons)
        self.duplicates: list[DuplicateFiles] = [
            group for group in found.report.duplicates if group.where() == "in different classes"
        ]
        super().__init__(paths, labels, classes)

    def __repr__(self) -> str:
        return (
            f"FolderDataset({str(self.root)!r}: {self.num_classes} classes, {len(self)} images, "
            f"{len(self.skipped)} files skipped)"
        )


def _unopened_reason(path: str) -> str:
    """Why a file whose header Pillow cannot read is left out, in words."""
    try:
        with open(path, "rb") as file:
            fmt = unread_format(file.read(12))
    except OSError:
        fmt = None
    return "Pillow cannot read its image header" if fmt is None else unread_advice(fmt)


def _opens(path: str) -> bool:
    """Whether Pillow reads an image header from ``path`` (its first bytes only): a text file
    named ``.jpg``, an empty or unreadable file is left out when the folder is scanned, not met
    half-way through an evaluation. A file cut short after its header still fails when
    decoded (:class:`~anyshot.errors.ImageReadError`, naming it)."""
    if not os.path.isfile(path):  # a pipe or socket named .jpg would block the read
        return False
    try:
        with warnings.catch_warnings():  # a large image warns when decoded, naming nothing here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return True
    except (OSError, SyntaxError, ValueError, NotImplementedError, Image.DecompressionBombError):
        return False
