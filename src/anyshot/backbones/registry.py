"""Load a backbone by registry name or from a checkpoint file: :func:`load_backbone`.

Imports :mod:`~anyshot.backbones.architectures` (build by name) and
:mod:`~anyshot.backbones.checkpoint` (read a file); neither imports this module. ``BACKBONES``,
``available_backbones`` and ``build_backbone`` are re-exported here for existing imports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anyshot.backbones.architectures import BACKBONES, available_backbones, build_backbone
from anyshot.backbones.base import Backbone
from anyshot.backbones.checkpoint import load_checkpoint

__all__ = [
    "BACKBONES",
    "CHECKPOINT_SUFFIXES",
    "available_backbones",
    "build_backbone",
    "load_backbone",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth")


def load_backbone(name_or_path: str | os.PathLike[str], **overrides: Any) -> Backbone:
    """A backbone from a checkpoint file or a registry name.

    A registry name wins; otherwise an existing file, a name ending in ``.pt``/``.pth`` or a
    name with a directory part is read as a checkpoint (see :func:`load_checkpoint`).

    Args:
        name_or_path: checkpoint path or registry name.
        **overrides: constructor arguments (e.g. ``image_size``, ``embedding``); for a checkpoint
            they replace the stored ones. ``image_size`` / ``channels`` set the input through
            :func:`~anyshot.backbones.preprocessing.resolve_preprocessing` either way; ``None``
            keeps the architecture's default or the checkpoint's stored value.

    Raises:
        CheckpointError: the checkpoint cannot be read or does not match its architecture.
        ValueError: unknown name.
    """
    text = os.fspath(name_or_path)
    if text not in BACKBONES and _looks_like_path(text):
        return load_checkpoint(text, **overrides)
    return build_backbone(text, **overrides)


def _looks_like_path(text: str) -> bool:
    """An existing file, a name with a checkpoint suffix, or a name with a directory part."""
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        Path(text).is_file()
        or text.lower().endswith(CHECKPOINT_SUFFIXES)
        or any(sep in text for sep in separators)
    )
