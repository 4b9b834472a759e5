"""The few-shot ResNet-12 (Oreshkin et al. 2018, TADAM; Lee et al. 2019, MetaOptNet).

Four residual blocks of widths (64, 160, 320, 640). Each block: three ``conv3x3 -> BatchNorm``
(LeakyReLU 0.1 between them), a ``conv1x1 -> BatchNorm`` shortcut, LeakyReLU 0.1 after the sum,
then ``MaxPool2d(2)``. Global average pooling gives a 640-d embedding. (DropBlock, used by
MetaOptNet during pre-training, is omitted.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anyshot.backbones.base import Backbone
from anyshot.backbones.conv4 import init_weights
from anyshot.backbones.preprocessing import resolve_preprocessing

__all__ = ["WIDTHS", "ResNet12", "ResNet12Block"]

ARCH = "resnet12"
WIDTHS = (64, 160, 320, 640)
SLOPE = 0.1


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)


class ResNet12Block(nn.Module):
    """``[B, in, H, W] -> [B, out, H // 2, W // 2]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv3 = _conv3x3(out_channels, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.relu = nn.LeakyReLU(SLOPE)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, H, W] -> [B, out, H // 2, W // 2]``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + self.shortcut(x))
        result: torch.Tensor = self.pool(out)
        return result


class ResNet12(Backbone):
    """ResNet-12: trunk = blocks 1-3, last stage = block 4 and global average pooling.

    Args:
        image_size: input side in pixels (at least 16); default (``None``) the architecture's, 84
            (see :data:`~anyshot.backbones.preprocessing.INPUT_SPECS`).
        channels: 1 (grey) or 3 (RGB); default (``None``) 3.
        num_classes: size of the pre-training classifier, or ``None`` for none.
        embedding: ``"features"`` or ``"logits"`` (needs ``num_classes``).
        class_names: names of the pre-training classes, if known.

    Shapes: images ``[B, channels, H, W]`` -> trunk activations ``[B, 320, H // 8, W // 8]``
    -> features ``[B, 640]``.
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
        if self.image_size < 16:
            raise ValueError(
                f"resnet12 needs image_size >= 16 (four 2x2 max-pools), got {self.image_size}"
            )
        self.num_classes = num_classes
        widths = (self.channels, *WIDTHS)
        self.trunk = nn.Sequential(*(ResNet12Block(widths[i], widths[i + 1]) for i in range(3)))
        self.last = ResNet12Block(widths[3], widths[4])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = WIDTHS[-1]
        if num_classes is not None:
            self.classifier = nn.Linear(self.feature_dim, num_classes)
        init_weights(self, nonlinearity="leaky_relu", negative_slope=SLOPE)

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, 320, H // 8, W // 8]``."""
        out: torch.Tensor = self.trunk(images)
        return out

    def forward_features(self, activations: torch.Tensor) -> torch.Tensor:
        """``[B, 320, h, w]`` -> ``[B, 640]``."""
        return torch.flatten(self.pool(self.last(activations)), 1)

    def last_stage_modules(self) -> list[nn.Module]:
        """Block 4 (the pooling has no parameters)."""
        return [self.last, self.pool]

    def config(self) -> dict[str, Any]:
        """Constructor arguments of the architecture (embedding and class names excluded)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
        }
