"""Support-based initialisation (Dhillon et al., section 3.1): a cosine class-mean classifier.

No training: the support embeddings' normalised class means become the classifier weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.methods.cosine import CosineClassifier, normalized_class_means
from anyshot.methods.frozen import frozen_forward

__all__ = ["SupportBasedInit"]


@dataclass(frozen=True)
class SupportBasedInit:
    """Cosine nearest-class-mean classifier on frozen embeddings.

    Args:
        temperature: ``T`` of the cosine logits (1 in the paper).
        relu: rectify embeddings before normalising.
        batch_size: images per forward pass.
        device: where to compute; default the backbone's device.
    """

    temperature: float = 1.0
    relu: bool = True
    batch_size: int = 128
    device: str | None = None

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor:
        """Query logits ``[Q, K]`` (CPU, float32), columns in ``episode.classes`` order."""
        support = frozen_forward(
            backbone, episode.support, batch_size=self.batch_size, device=self.device
        )
        classifier = CosineClassifier(
            normalized_class_means(support, episode.support_targets, episode.ways, relu=self.relu),
            temperature=self.temperature,
            relu=self.relu,
        )
        if len(episode.query) == 0:
            return torch.empty(0, episode.ways)
        query = frozen_forward(
            backbone, episode.query, batch_size=self.batch_size, device=self.device
        )
        with torch.inference_mode():
            return classifier(query)
