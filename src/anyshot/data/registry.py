"""Build a dataset by name: ``load_dataset("omniglot", root, "test")``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from anyshot.data.cifar_fs import CifarFS
from anyshot.data.dataset import ImageDataset
from anyshot.data.fc100 import FC100
from anyshot.data.files import SPLIT_FOLDERS, is_hidden
from anyshot.data.folder import FolderDataset
from anyshot.data.miniimagenet import MiniImageNet
from anyshot.data.omniglot import Omniglot
from anyshot.data.tiered_imagenet import TieredImageNet
from anyshot.errors import DatasetError

__all__ = ["available_datasets", "load_dataset"]


def _folder(root: Path, split: str) -> ImageDataset:
    """``root/<split>`` when ``root`` is a tree per split (every sub-folder a split name of
    :data:`~anyshot.data.files.SPLIT_FOLDERS`, any case: ``train``, ``val`` or ``validation``,
    ``test``), else ``root`` itself: one tree whose every class is used whatever the split (one
    class may then be named like a split). Its ``split`` says which applied.

    Raises:
        DatasetError: a tree per split without ``split``, or two or more split folders beside
            other folders (neither a tree per split nor a tree of classes).
    """
    folders = sorted(
        entry.name
        for entry in (root.iterdir() if root.is_dir() else ())
        if entry.is_dir() and not is_hidden(entry.name)
    )
    splits = {
        name: SPLIT_FOLDERS[name.lower()] for name in folders if name.lower() in SPLIT_FOLDERS
    }
    every_folder_a_split = bool(folders) and len(splits) == len(folders)
    if not every_folder_a_split and len(splits) < 2:  # one class may be called "test"
        return FolderDataset(root)
    held = ", ".join(f"{name}/" for name in splits)
    if len(splits) < len(folders):
        others = ", ".join(f"{name}/" for name in folders if name not in splits)
        raise DatasetError(
            f"dataset folder {str(root)!r} holds split folders ({held}) beside other folders "
            f"({others}); put every class inside a split folder, or the classes directly under "
            f"{str(root)!r} with no split folders"
        )
    split = SPLIT_FOLDERS.get(split.lower(), split)
    chosen = [name for name, meaning in splits.items() if meaning == split]
    if len(chosen) > 1:
        raise DatasetError(
            f"dataset folder {str(root)!r} holds {' and '.join(f'{c}/' for c in chosen)} for the "
            f"{split} split; keep one of them"
        )
    if not chosen:
        raise DatasetError(
            f"dataset folder {str(root)!r} is split into {held} and has no {split} folder; "
            f"choose --split from those, or put the classes directly under {str(root)!r}"
        )
    try:
        return FolderDataset(root / chosen[0], split=split)
    except DatasetError as error:  # perhaps classes that happen to be named like splits
        raise DatasetError(
            f"{error}. Every sub-folder of {str(root)!r} ({held}) is named like a split, so they "
            "are read as splits: if they are classes, rename them"
        ) from error


_LOADERS: dict[str, Callable[[Path, str], ImageDataset]] = {
    "omniglot": lambda root, split: Omniglot(root, split),
    "mini-imagenet": lambda root, split: MiniImageNet(root, split),
    "tiered-imagenet": lambda root, split: TieredImageNet(root, split),
    "cifar-fs": lambda root, split: CifarFS(root, split),
    "fc100": lambda root, split: FC100(root, split),
    "folder": _folder,
}

_ALIASES = {
    "miniimagenet": "mini-imagenet",
    "mini_imagenet": "mini-imagenet",
    "tieredimagenet": "tiered-imagenet",
    "tiered_imagenet": "tiered-imagenet",
    "cifarfs": "cifar-fs",
    "cifar_fs": "cifar-fs",
    "fc-100": "fc100",
    "fc_100": "fc100",
}


def available_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts."""
    return sorted(_LOADERS)


def load_dataset(name: str, root: str | os.PathLike[str], split: str) -> ImageDataset:
    """Load split ``split`` of dataset ``name`` stored under ``root``.

    Args:
        name: ``"omniglot"`` (official zips + Vinyals split), ``"mini-imagenet"`` (Ravi CSVs or a
            folder per class), ``"tiered-imagenet"`` (Ren et al. pickles), ``"cifar-fs"``
            (CIFAR-100 pickles + Bertinetto split files), ``"fc100"`` (CIFAR-100 pickles split by
            superclass) or ``"folder"`` (``root/split/<class>/...`` if ``root/split`` is a
            folder, else ``root/<class>/...``).
        root: the dataset's folder.
        split: e.g. ``"train"``, ``"val"``, ``"test"``.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones).
        DatasetError: the files are missing or malformed.
    """
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _LOADERS[key](Path(root), split)
