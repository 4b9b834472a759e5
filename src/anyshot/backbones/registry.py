"""Build any backbone by name, or load one from a checkpoint file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyshot.backbones.base import Backbone
from anyshot.backbones.conv4 import Conv4
from anyshot.backbones.efficientnet_lite import EfficientNetLite0
from anyshot.backbones.resnet12 import ResNet12
from anyshot.backbones.wrn import WideResNet

__all__ = ["BACKBONES", "available_backbones", "build_backbone", "load_backbone"]

BACKBONES: dict[str, Callable[..., Backbone]] = {
    Conv4.arch: Conv4,
    ResNet12.arch: ResNet12,
    WideResNet.arch: WideResNet,
    EfficientNetLite0.arch: EfficientNetLite0,
}

CHECKPOINT_SUFFIXES = (".pt", ".pth")


def available_backbones() -> list[str]:
    """Names :func:`build_backbone` accepts."""
    return list(BACKBONES)


def build_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a backbone by registry name.

    Args:
        name: one of :func:`available_backbones` (``"conv4"``, ``"resnet12"``, ``"wrn28-10"``,
            ``"efficientnet-lite0"``).
        **kwargs: constructor arguments (``image_size``, ``channels``, ``num_classes``,
            ``embedding``, ``class_names``; ``pretrained`` for EfficientNet-Lite0).

    Raises:
        ValueError: unknown name.
    """
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}. "
            "To use a saved model, pass the path of its checkpoint file to load_backbone()."
        ) from None
    return factory(**kwargs)


def load_backbone(name_or_path: str | os.PathLike[str], **overrides: Any) -> Backbone:
    """A backbone from a checkpoint file or a registry name.

    A registry name wins; otherwise an existing file, a name ending in ``.pt``/``.pth`` or a
    name with a directory part is read as a checkpoint (see :func:`load_checkpoint`).

    Args:
        name_or_path: checkpoint path or registry name.
        **overrides: constructor arguments (e.g. ``image_size``, ``embedding``); for a checkpoint
            they replace the stored ones.

    Raises:
        CheckpointError: the checkpoint cannot be read or does not match its architecture.
        ValueError: unknown name.
    """
    text = os.fspath(name_or_path)
    if text not in BACKBONES and _looks_like_path(text):
        from anyshot.backbones.checkpoint import load_checkpoint

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
