"""Seeded batch augmentation on model-space tensors: the paper's pre-training augmentations.

Horizontal flip, reflect-pad + random crop, brightness and contrast jitter. Every random draw
comes from the ``torch.Generator`` passed in, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from anyshot.data.images import Preprocessing

__all__ = ["Augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """Random flip, pad-and-crop, brightness and contrast for ``[B, C, H, W]`` batches.

    Args:
        flip: horizontal flip with probability 0.5 (turn off for characters and digits).
        pad_fraction: reflect padding as a fraction of the image side (4 px at 84 px).
        brightness: brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: contrast factor drawn from ``[1 - c, 1 + c]``.
    """

    flip: bool = True
    pad_fraction: float = 0.05
    brightness: float = 0.4
    contrast: float = 0.4

    def __call__(
        self, images: torch.Tensor, preprocessing: Preprocessing, generator: torch.Generator
    ) -> torch.Tensor:
        """Augmented copy of ``images`` ``[B, C, H, W]`` (normalised as ``preprocessing`` says)."""
        batch, _, height, width = images.shape
        device = images.device

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator).to(device)

        mean = torch.tensor(preprocessing.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(preprocessing.std, device=device).view(1, -1, 1, 1)
        pixels = images * std + mean  # back to [0, 1]
        if self.flip:
            flipped = uniform(batch) < 0.5
            pixels = torch.where(flipped.view(-1, 1, 1, 1), pixels.flip(3), pixels)
        pad = round(self.pad_fraction * min(height, width))
        if pad > 0:
            padded = F.pad(pixels, (pad, pad, pad, pad), mode="reflect")
            offsets = (uniform(batch, 2) * (2 * pad + 1)).long().clamp(max=2 * pad)
            pixels = torch.stack(
                [
                    padded[i, :, int(dy) : int(dy) + height, int(dx) : int(dx) + width]
                    for i, (dy, dx) in enumerate(offsets.tolist())
                ]
            )
        if self.brightness > 0:
            factor = 1 + (uniform(batch) * 2 - 1) * self.brightness
            pixels = pixels * factor.view(-1, 1, 1, 1)
        if self.contrast > 0:
            factor = 1 + (uniform(batch) * 2 - 1) * self.contrast
            grey = pixels.mean(dim=(1, 2, 3), keepdim=True)
            pixels = (pixels - grey) * factor.view(-1, 1, 1, 1) + grey
        return (pixels.clamp(0, 1) - mean) / std
