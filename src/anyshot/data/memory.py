"""A dataset decoded once into memory: ``uint8`` pixels ``[N, C, H, W]``, labels and class names.

Pre-training reads every image every epoch; decoding Omniglot's PNGs from the zips each time would
cost more than the network itself at 28 px. :class:`MemoryImages` decodes each image once, at the
model's input size, and keeps the 8-bit pixels (82,240 Omniglot training images at 28 x 28 take
64 MB). :meth:`MemoryImages.batch` gives float batches identical to what
:class:`~anyshot.data.images.Preprocessing` would produce from the files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.errors import DatasetError
from anyshot.progress import progress_bar

__all__ = ["MemoryImages"]


@dataclass(frozen=True, eq=False)
class MemoryImages:
    """Labelled images held in memory.

    Args:
        pixels: ``[N, C, H, W]`` uint8, the resized images before normalisation.
        labels: ``[N]`` int64 class indices into ``class_names``.
        class_names: class index -> name.
        preprocessing: the normalisation (and size / channels) the pixels are for.

    Raises:
        DatasetError: shapes disagree with each other or with ``preprocessing``.
    """

    pixels: torch.Tensor
    labels: torch.Tensor
    class_names: Sequence[str]
    preprocessing: Preprocessing

    def __post_init__(self) -> None:
        p = self.preprocessing
        expected = (p.channels, p.image_size, p.image_size)
        if self.pixels.dtype != torch.uint8 or self.pixels.dim() != 4:
            raise DatasetError(
                f"pixels must be a uint8 tensor [N, C, H, W], got {self.pixels.dtype} "
                f"of shape {tuple(self.pixels.shape)}"
            )
        if tuple(self.pixels.shape[1:]) != expected:
            raise DatasetError(
                f"pixels have shape {tuple(self.pixels.shape[1:])} per image but the "
                f"preprocessing expects {expected}"
            )
        if self.labels.shape != (self.pixels.shape[0],):
            raise DatasetError(
                f"{self.pixels.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )
        if len(self.labels) and int(self.labels.max()) >= len(self.class_names):
            raise DatasetError(f"labels exceed the {len(self.class_names)} class names")

    @classmethod
    def from_dataset(
        cls, dataset: ImageDataset, preprocessing: Preprocessing, *, show_progress: bool = False
    ) -> MemoryImages:
        """Decode every item of ``dataset`` once (resized as ``preprocessing`` says).

        Raises:
            ImageReadError: an image cannot be decoded (the message names it).
        """
        p = preprocessing
        count = len(dataset)
        pixels = torch.empty((count, p.channels, p.image_size, p.image_size), dtype=torch.uint8)
        mean = torch.tensor(p.mean).view(-1, 1, 1)
        std = torch.tensor(p.std).view(-1, 1, 1)
        bar = progress_bar(total=count, desc="decoding images", enabled=show_progress, unit="img")
        try:
            for index in range(count):
                values = dataset.load(index, p) * std + mean  # back to [0, 1], exactly k / 255
                pixels[index] = (values * 255).round_().clamp_(0, 255).to(torch.uint8)
                bar.update(1)
        finally:
            bar.close()
        labels = torch.from_numpy(np.asarray(dataset.labels, dtype=np.int64).copy())
        return cls(pixels, labels, list(dataset.class_names), p)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Images ``indices`` as normalised float32 ``[B, C, H, W]`` (model space)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        p = self.preprocessing
        mean = torch.tensor(p.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(p.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (self.pixels[index].to(torch.float32) / 255.0 - mean) / std
