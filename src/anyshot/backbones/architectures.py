"""The registered architectures: name -> constructor, and :func:`build_backbone`.

Only builds networks from code; reading checkpoint files is :mod:`anyshot.backbones.checkpoint`
(which imports this module) and choosing between the two is
:func:`anyshot.backbones.registry.load_backbone` (which imports both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyshot.backbones.base import Backbone
from anyshot.backbones.conv4 import Conv4
from anyshot.backbones.efficientnet_lite import EfficientNetLite0
from anyshot.backbones.resnet12 import ResNet12
from anyshot.backbones.wrn import WideResNet

__all__ = ["BACKBONES", "available_backbones", "build_backbone"]

#: Registry name -> constructor; every name has a default input in
#: :data:`anyshot.backbones.preprocessing.INPUT_SPECS`.
BACKBONES: dict[str, Callable[..., Backbone]] = {
    Conv4.arch: Conv4,
    ResNet12.arch: ResNet12,
    WideResNet.arch: WideResNet,
    EfficientNetLite0.arch: EfficientNetLite0,
}


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
            ``image_size`` / ``channels`` left out or ``None`` take the architecture's default
            (see :func:`~anyshot.backbones.preprocessing.resolve_preprocessing`).

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
