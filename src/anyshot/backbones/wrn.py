"""Wide residual network WRN-28-10 (Zagoruyko & Komodakis 2016), pre-activation form.

Stem ``conv3x3 (16)``, then three groups of four pre-activation basic blocks of widths
(160, 320, 640) with strides (1, 2, 2), a final ``BatchNorm -> ReLU`` and global average pooling:
a 640-d embedding. Dropout 0. This is the backbone of Dhillon et al.'s main results.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anyshot.backbones.base import Backbone
from anyshot.backbones.conv4 import init_weights
from anyshot.backbones.preprocessing import resolve_preprocessing

__all__ = ["BasicBlock", "WideResNet"]

ARCH = "wrn28-10"
DEPTH = 28
WIDEN = 10


class BasicBlock(nn.Module):
    """Pre-activation block: ``BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3`` plus shortcut.

    ``[B, in, H, W] -> [B, out, ceil(H / stride), ceil(W / stride)]``. The shortcut is the
    identity when shapes agree, else a strided ``conv1x1`` of the pre-activated input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.equal_in_out = in_channels == out_channels and stride == 1
        self.shortcut: nn.Module | None = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in, H, W] -> [B, out, H', W']``."""
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        if self.shortcut is None:
            return out + x
        result: torch.Tensor = out + self.shortcut(pre)
        return result


def _group(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class WideResNet(Backbone):
    """WRN-28-10: trunk = stem and groups 1-2; last stage = group 3, final BN-ReLU, pooling.

    Args:
        image_size: input side in pixels; default (``None``) the architecture's, 84
            (see :data:`~anyshot.backbones.preprocessing.INPUT_SPECS`).
        channels: 1 (grey) or 3 (RGB); default (``None``) 3.
        num_classes: size of the pre-training classifier, or ``None`` for none.
        embedding: ``"features"`` or ``"logits"`` (needs ``num_classes``).
        class_names: names of the pre-training classes, if known.

    Shapes: images ``[B, channels, H, W]`` -> trunk activations ``[B, 320, ~H/2, ~W/2]``
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
        blocks = (DEPTH - 4) // 6
        widths = (16, 16 * WIDEN, 32 * WIDEN, 64 * WIDEN)
        self.image_size = preprocessing.image_size
        self.channels = preprocessing.channels
        self.num_classes = num_classes
        self.stem = nn.Conv2d(self.channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.group1 = _group(widths[0], widths[1], blocks, stride=1)
        self.group2 = _group(widths[1], widths[2], blocks, stride=2)
        self.group3 = _group(widths[2], widths[3], blocks, stride=2)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[3]
        if num_classes is not None:
            self.classifier = nn.Linear(self.feature_dim, num_classes)
        init_weights(self)

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``[B, 320, ceil(H / 2), ceil(W / 2)]``."""
        out: torch.Tensor = self.group2(self.group1(self.stem(images)))
        return out

    def forward_features(self, activations: torch.Tensor) -> torch.Tensor:
        """``[B, 320, h, w]`` -> ``[B, 640]``."""
        out = self.relu(self.bn(self.group3(activations)))
        return torch.flatten(self.pool(out), 1)

    def last_stage_modules(self) -> list[nn.Module]:
        """Group 3 and the final batch-norm (ReLU and pooling have no parameters)."""
        return [self.group3, self.bn, self.relu, self.pool]

    def config(self) -> dict[str, Any]:
        """Constructor arguments of the architecture (embedding and class names excluded)."""
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
        }
