"""The conv-4 network of the few-shot literature (Vinyals et al. 2016; Snell et al. 2017).

Four blocks of ``conv3x3 (64 channels, padding 1) -> BatchNorm2d -> ReLU -> MaxPool2d(2)``; the
embedding is the flattened output of the last block, so its size depends on the input size:
``64 * (image_size // 16) ** 2`` (28 px -> 64, 84 px -> 1600).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from anyshot.backbones.base import Backbone
from anyshot.backbones.preprocessing import resolve_preprocessing

__all__ = ["Conv4", "conv_block", "init_weights"]

ARCH = "conv4"
WIDTH = 64
NUM_BLOCKS = 4


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """``[B, in, H, W] -> [B, out, H // 2, W // 2]``: conv3x3, batch-norm, ReLU, max-pool 2."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class Conv4(Backbone):
    """Conv-4: trunk = blocks 1-3, last stage = block 4 and flatten.

    Args:
        image_size: input side in pixels (at least 16); fixes ``feature_dim``. Default (``None``):
            the architecture's, 84 (see :data:`~anyshot.backbones.preprocessing.INPUT_SPECS`).
        channels: 1 (grey) or 3 (RGB); default (``None``) 3.
        num_classes: size of the pre-training classifier, or ``None`` for none.
        embedding: ``"features"`` or ``"logits"`` (needs ``num_classes``).
        class_names: names of the pre-training classes, if known.

    Shapes: images ``[B, channels, image_size, image_size]`` -> trunk activations
    ``[B, 64, s, s]`` with ``s = image_size // 8`` -> features ``[B, 64 * (s // 2) ** 2]``.
    """

    arch = ARCH

    def __init__(
        self,
        image_size: int | None = None,
        channels: int | None = None,
        num_classes: int | None = None,
        embedding: str = "features",
        class_names: list[str] | None = None,
    ) -> None:
        preprocessing = resolve_preprocessing(ARCH, image_size=image_size, channels=channels)
        super().__init__(preprocessing, embedding=embedding, class_names=class_names)
        self.image_size = preprocessing.image_size
        self.channels = preprocessing.channels
        side = self.image_size
        for _ in range(NUM_BLOCKS):
            side //= 2
        if side < 1:
            raise ValueError(
                f"conv4 needs image_size >= {2**NUM_BLOCKS} (four 2x2 max-pools), "
                f"got {self.image_size}"
            )
        self.num_classes = num_classes
        self.trunk = nn.Sequential(
            conv_block(self.channels, WIDTH), conv_block(WIDTH, WIDTH), conv_block(WIDTH, WIDTH)
        )
        self.last = conv_block(WIDTH, WIDTH)
        self.feature_dim = WIDTH * side * side
        if num_classes is not None:
            self.classifier = nn.Linear(self.feature_dim, num_classes)
        init_weights(self)

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, 64, H // 8, W // 8]``."""
        out: torch.Tensor = self.trunk(images)
        return out

    def forward_features(self, activations: torch.Tensor) -> torch.Tensor:
        """``[B, 64, h, w]`` -> ``[B, 64 * (h // 2) * (w // 2)]`` (flattened block-4 output)."""
        return torch.flatten(self.last(activations), 1)

    def last_stage_modules(self) -> list[nn.Module]:
        """Block 4."""
        return [self.last]

    def config(self) -> dict[str, Any]:
        """Constructor arguments of the architecture (embedding and class names excluded)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
        }


def init_weights(
    module: nn.Module,
    nonlinearity: Literal["relu", "leaky_relu"] = "relu",
    negative_slope: float = 0.0,
) -> None:
    """Kaiming-normal convolutions, unit batch-norm scales, zero biases (used by all backbones)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(
                layer.weight, a=negative_slope, mode="fan_out", nonlinearity=nonlinearity
            )
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
