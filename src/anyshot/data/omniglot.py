"""Omniglot (Lake et al., 2015), read straight from the official zips with the Vinyals split.

Expected layout (exactly what the official distribution and Prototypical Networks ship)::

    ROOT/images_background.zip    images_background/<Alphabet>/characterNN/XXXX_YY.png
    ROOT/images_evaluation.zip    images_evaluation/<Alphabet>/characterNN/XXXX_YY.png
    ROOT/splits/vinyals/{train,val,test,trainval}.txt   one "Alphabet/characterNN/rotDDD" per line

Each split line is a class: a character at a rotation of 0, 90, 180 or 270 degrees
(counter-clockwise, like ``numpy.rot90``). Only the zips that a split needs must be present.
"""

from __future__ import annotations

import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import decode_image
from anyshot.errors import DatasetError, EmptyClassError, ImageReadError

__all__ = ["OMNIGLOT_SPLITS", "OMNIGLOT_ZIPS", "Omniglot", "sample_root"]

OMNIGLOT_ZIPS = ("images_background", "images_evaluation")
OMNIGLOT_SPLITS = ("train", "val", "test", "trainval")

LAYOUT = (
    "expected layout: ROOT/images_background.zip and ROOT/images_evaluation.zip (the official "
    "Omniglot zips, members <zip name>/<Alphabet>/characterNN/XXXX_YY.png) and "
    "ROOT/splits/vinyals/{train,val,test,trainval}.txt (lines Alphabet/characterNN/rotDDD)"
)

_ROTATIONS = {
    0: None,
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def sample_root() -> Path:
    """The small real Omniglot sample shipped with anyshot (Vinyals test split, ~40 characters).

    ``Omniglot(sample_root(), "test")`` loads it; it lets demos and tests run without the full data.
    """
    folder = resources.files("anyshot") / "resources" / "omniglot-sample"
    path = Path(str(folder))
    if not path.is_dir():
        raise DatasetError(f"the Omniglot sample is missing from the installation ({path})")
    return path


def _parse_line(line: str, split_file: Path, number: int) -> tuple[str, int]:
    """``"Alphabet/characterNN/rotDDD"`` -> (``"Alphabet/characterNN"``, degrees)."""
    character, _, rotation = line.rpartition("/")
    degrees = int(rotation[3:]) if rotation.startswith("rot") and rotation[3:].isdigit() else -1
    if not character or "/" not in character or degrees not in _ROTATIONS:
        raise DatasetError(
            f"{str(split_file)!r} line {number}: expected 'Alphabet/characterNN/rotDDD' with "
            f"DDD in 000/090/180/270, got {line!r}"
        )
    return character, degrees


def _index_zip(path: Path) -> dict[str, list[str]]:
    """``"Alphabet/characterNN"`` -> sorted member names of that character's PNG files."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as error:
        raise DatasetError(f"cannot read Omniglot zip {str(path)!r}: {error}") from error
    characters: dict[str, list[str]] = {}
    for name in names:
        parts = name.split("/")
        if len(parts) == 4 and parts[3].lower().endswith(".png"):
            characters.setdefault(f"{parts[1]}/{parts[2]}", []).append(name)
    for members in characters.values():
        members.sort()
    return characters


class Omniglot(ImageDataset):
    """Omniglot characters of a Vinyals split, one class per (character, rotation).

    Class names are the split file's lines (``"Alphabet/characterNN/rotDDD"``) in file order; each
    class has the character's 20 drawings, rotated. Images are 105x105 1-bit PNGs decoded from the
    zips on access; each process opens each zip once and keeps the handle.

    Args:
        root: folder with the zips and ``splits/vinyals/``.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"trainval"``.
        rotations: keep the 90/180/270 degree classes; ``False`` keeps only ``rot000`` lines.

    Raises:
        DatasetError: unknown split, a missing split file or zip, or a character found in no zip.
        EmptyClassError: a character has no images in its zip.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, rotations: bool = True) -> None:
        if split not in OMNIGLOT_SPLITS:
            raise DatasetError(
                f"unknown Omniglot split {split!r}; choose one of {', '.join(OMNIGLOT_SPLITS)}"
            )
        self.root = Path(root)
        self.split = split
        self.rotations = rotations
        split_file = self.root / "splits" / "vinyals" / f"{split}.txt"
        if not split_file.is_file():
            raise DatasetError(f"Omniglot split file {str(split_file)!r} not found; {LAYOUT}")
        lines = [line.strip() for line in split_file.read_text(encoding="utf-8").splitlines()]
        classes = [
            (line, *_parse_line(line, split_file, number))
            for number, line in enumerate(lines, start=1)
            if line
        ]
        if not rotations:
            classes = [entry for entry in classes if entry[2] == 0]
        if not classes:
            raise DatasetError(f"Omniglot split file {str(split_file)!r} lists no classes")

        self.zip_paths: list[Path] = [self.root / f"{stem}.zip" for stem in OMNIGLOT_ZIPS]
        indexes = [_index_zip(path) if path.is_file() else None for path in self.zip_paths]

        members: list[str] = []
        zip_ids: list[int] = []
        degrees: list[int] = []
        labels: list[int] = []
        for label, (name, character, rotation) in enumerate(classes):
            found = [
                (z, index[character])
                for z, index in enumerate(indexes)
                if index is not None and character in index
            ]
            if not found:
                missing = [
                    str(p)
                    for p, index in zip(self.zip_paths, indexes, strict=True)
                    if index is None
                ]
                hint = (
                    f"; {' and '.join(missing)} not found"
                    if missing
                    else " (the zips do not match the split file)"
                )
                raise DatasetError(
                    f"Omniglot character {character!r} of split {split!r} is in no zip under "
                    f"{str(self.root)!r}{hint}; {LAYOUT}"
                )
            zip_id, character_members = found[0]
            if not character_members:  # pragma: no cover - _index_zip only lists PNG members
                raise EmptyClassError(f"Omniglot class {name!r} has no images")
            members.extend(character_members)
            zip_ids.extend([zip_id] * len(character_members))
            degrees.extend([rotation] * len(character_members))
            labels.extend([label] * len(character_members))

        super().__init__([entry[0] for entry in classes], labels)
        self.members: list[str] = members
        self.zip_ids = np.asarray(zip_ids, dtype=np.int8)
        self.degrees = np.asarray(degrees, dtype=np.int16)
        self._handles: dict[int, tuple[int, zipfile.ZipFile]] = {}

    # ----------------------------------------------------------------- zip handles
    def _archive(self, zip_id: int) -> zipfile.ZipFile:
        """This process's open handle on zip ``zip_id`` (re-opened after a fork)."""
        pid = os.getpid()
        held = self._handles.get(zip_id)
        if held is not None and held[0] == pid:
            return held[1]
        path = self.zip_paths[zip_id]
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as error:
            raise ImageReadError(f"cannot open Omniglot zip {str(path)!r}: {error}") from error
        self._handles[zip_id] = (pid, archive)
        return archive

    def close(self) -> None:
        """Close this process's zip handles (they re-open on the next access)."""
        pid = os.getpid()
        for held_pid, archive in self._handles.values():
            if held_pid == pid:
                archive.close()
        self._handles.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    # ----------------------------------------------------------------- items
    def source(self, index: int) -> str:
        """``"<zip path>:<member>@rotDDD"`` of item ``index``."""
        index = self.check_index(index)
        return (
            f"{self.zip_paths[self.zip_ids[index]]}:{self.members[index]}"
            f"@rot{int(self.degrees[index]):03d}"
        )

    def image(self, index: int) -> Image.Image:
        """The drawing, rotated counter-clockwise by its class's angle (mode ``"1"``)."""
        index = self.check_index(index)
        member = self.members[index]
        try:
            data = self._archive(int(self.zip_ids[index])).read(member)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise ImageReadError(f"cannot read {self.source(index)!r}: {error}") from error
        image = decode_image(data, self.source(index))
        transpose = _ROTATIONS[int(self.degrees[index])]
        return image if transpose is None else image.transpose(transpose)

    def __repr__(self) -> str:
        return (
            f"Omniglot({str(self.root)!r}, split={self.split!r}: {self.num_classes} classes, "
            f"{len(self)} images)"
        )
