"""A class-per-folder image tree: ``ROOT/<class name>/<image files, at any depth>``."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image

from anyshot.data.dataset import FileDataset
from anyshot.errors import DatasetError, EmptyClassError

__all__ = [
    "EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "SPLIT_FOLDERS",
    "FolderDataset",
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

LAYOUT = (
    "expected layout: ROOT/<class name>/<image files> — one sub-folder per class, named after "
    f"the class, holding its images ({EXTENSIONS}) at any depth"
)


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


class FolderDataset(FileDataset):
    """Images in a folder per class.

    Class names are the sub-folder names of ``root``, sorted; each class's images are found at any
    depth below its folder and sorted by relative path. Hidden files and folders (name starting
    with ``.``) are ignored; other files without an image extension or whose header Pillow
    cannot read (a text file named ``.jpg``, an empty file), and files directly in ``root``, are
    skipped and listed in :attr:`skipped`.

    Args:
        root: the folder holding one sub-folder per class.
        split: the split ``root`` holds (``ROOT/<split>/``), ``None`` for a tree of every class.

    Items are decoded for the preprocessing's size (:attr:`decode_for_size`, as ``classify``
    decodes a user's files: a camera photo's JPEG at a reduced scale).

    Attributes:
        root: the root folder.
        split: as given.
        paths: image file of each item.
        skipped: files that were not used (not images, or not inside a class folder).

    Raises:
        DatasetError: ``root`` does not exist, is not a folder, or has no class folders.
        EmptyClassError: a class folder holds no image file (the message names the folder).
    """

    decode_for_size = True

    def __init__(self, root: str | os.PathLike[str], split: str | None = None) -> None:
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DatasetError(f"dataset folder {str(self.root)!r} {what}; {LAYOUT}")
        self.skipped: list[str] = []
        class_dirs: list[str] = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if is_hidden(entry.name):
                    continue
                if entry.is_dir():
                    class_dirs.append(entry.name)
                elif entry.is_file():
                    self.skipped.append(entry.path)
        class_dirs.sort()
        if not class_dirs:
            found = f" (found {len(self.skipped)} loose files)" if self.skipped else ""
            raise DatasetError(
                f"dataset folder {str(self.root)!r} has no class folders{found}; {LAYOUT}"
            )
        paths: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(class_dirs):
            files, skipped = _scan_class(self.root / name)
            self.skipped.extend(skipped)
            if not files:
                extra = f" ({len(skipped)} non-image files skipped)" if skipped else ""
                raise EmptyClassError(
                    f"class folder {str(self.root / name)!r} contains no image files{extra}; "
                    f"add images or remove the folder. {LAYOUT}"
                )
            paths.extend(files)
            labels.extend([label] * len(files))
        self.skipped.sort()
        super().__init__(paths, labels, class_dirs)

    def __repr__(self) -> str:
        return (
            f"FolderDataset({str(self.root)!r}: {self.num_classes} classes, {len(self)} images, "
            f"{len(self.skipped)} files skipped)"
        )


def _scan_class(folder: Path) -> tuple[list[str], list[str]]:
    """Image files (sorted by relative path) and skipped non-image files below ``folder``."""
    images: list[tuple[str, str]] = []
    skipped: list[str] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = [d for d in subdirs if not is_hidden(d)]
        relative = os.path.relpath(directory, folder)
        for name in files:
            if is_hidden(name):
                continue
            path = os.path.join(directory, name)
            if is_image_file(name) and _opens(path):
                key = name if relative == "." else os.path.join(relative, name)
                images.append((key, path))
            else:
                skipped.append(path)
    images.sort()
    return [path for _, path in images], skipped


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
