"""What counts as an image file, a hidden entry and a split folder, for every folder scan
(:mod:`anyshot.data.intake`, which :class:`~anyshot.data.folder.FolderDataset` uses too)."""

from __future__ import annotations

import os

__all__ = [
    "EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDERS",
    "UNREAD_IMAGE_EXTENSIONS",
    "is_hidden",
    "is_image_file",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
)
#: Image formats anyshot does not decode (phone, camera raw and vector formats): skipped with
#: advice to convert them, not called "not an image".
UNREAD_IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".heic", ".heif", ".avif", ".jxl", ".svg", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf",
     ".rw2", ".raf"}
)  # fmt: skip
#: The extensions read, for messages and help texts.
EXTENSIONS = " ".join(sorted(IMAGE_EXTENSIONS))

#: Folder names (lower-cased) of a tree split into ``ROOT/<split>/<class>/...``, and the split
#: each holds.
SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "val": "val",
    "validation": "val",
    "test": "test",
}


def is_image_file(name: str) -> bool:
    """Whether a file name has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_hidden(name: str) -> bool:
    """Whether a file or folder is left out as hidden: a name starting with ``.``, or
    ``__MACOSX`` (the metadata folder of a zip made on a Mac)."""
    return name.startswith(".") or name == "__MACOSX"
