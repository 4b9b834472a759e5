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
    "unread_advice",
    "unread_format",
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
#: ISO base-media brands (bytes 8-12, after ``ftyp``) of HEIC and AVIF images: a phone photo
#: renamed ``.jpg`` is recognised by its content.
_UNREAD_BRANDS: dict[bytes, str] = {
    **dict.fromkeys(
        (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"), "HEIC"
    ),
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
}

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


def unread_format(head: bytes) -> str | None:
    """``"HEIC"`` or ``"AVIF"`` when a file's first 12 bytes ``head`` start such an image
    (whatever its extension says), else ``None``: anyshot does not decode them."""
    return _UNREAD_BRANDS.get(head[8:12]) if head[4:8] == b"ftyp" else None


def unread_advice(fmt: str) -> str:
    """Why a file of an unread format (:func:`unread_format`) is not used, in words."""
    return f"a {fmt} image, a format anyshot does not read: convert it to JPEG"
