"""The cosine classifier of Dhillon et al. and its support-based initialisation.

``logits_k(z) = <w_k, n(z)> / T + b_k`` with ``n(z) = relu(z) / ||relu(z)||`` (ReLU optional),
initialised from the support set as ``w_k = normalize(mean_{i: y_i = k} relu(z_i))``, ``b_k = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anyshot.errors import EmptyClassError

__all__ = ["CosineClassifier", "normalized_class_means"]


def _rectify(embeddings: torch.Tensor, relu: bool) -> torch.Tensor:
    return F.relu(embeddings) if relu else embeddings


def normalized_class_means(
    embeddings: torch.Tensor, targets: torch.Tensor, ways: int, *, relu: bool = True
) -> torch.Tensor:
    """Unit-norm class means of (rectified) embeddings.

    Args:
        embeddings: ``[S, D]`` support embeddings.
        targets: ``[S]`` class indices in ``0..ways-1``.
        ways: number of classes ``K``.
        relu: rectify before averaging.

    Returns:
        ``[K, D]`` rows of unit L2 norm (a zero mean stays zero).

    Raises:
        EmptyClassError: a class index in ``0..ways-1`` with no embedding.
    """
    counts = torch.bincount(targets, minlength=ways)
    if bool((counts == 0).any()):
        missing = (counts == 0).nonzero().flatten().tolist()
        raise EmptyClassError(f"classes {missing} have no support embeddings")
    rectified = _rectify(embeddings.float(), relu)
    sums = torch.zeros(ways, rectified.shape[1], dtype=rectified.dtype, device=rectified.device)
    sums.index_add_(0, targets.to(rectified.device), rectified)
    means = sums / counts.to(rectified.device, rectified.dtype).unsqueeze(1)
    return F.normalize(means, dim=1)


class CosineClassifier(nn.Module):
    """Cosine classifier ``[B, D] -> [B, K]`` with trainable weights ``[K, D]`` and bias ``[K]``.

    Args:
        weight: initial class weights ``[K, D]`` (usually :func:`normalized_class_means`).
        temperature: ``T``; logits are divided by it (the paper uses 1).
        relu: rectify embeddings before normalising.
    """

    def __init__(
        self, weight: torch.Tensor, *, temperature: float = 1.0, relu: bool = True
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(torch.zeros(weight.shape[0], device=weight.device))
        self.temperature = float(temperature)
        self.relu = relu

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` embeddings -> ``[B, K]`` logits."""
        normalized = F.normalize(_rectify(embeddings.float(), self.relu), dim=1)
        return normalized @ self.weight.t() / self.temperature + self.bias
