"""The cosine classifier of Dhillon et al. and its support-based initialisation.

``logits_k(z) = <w_k, n(z)> / T + b_k`` with ``n(z) = relu(z) / ||relu(z)||`` (ReLU optional),
initialised from the support set as ``w_k = normalize(mean_{i: y_i = k} relu(z_i))``, ``b_k = 0``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anyshot.errors import EmptyClassError

__all__ = ["CosineClassifier", "episode_center", "normalized_class_means", "unit_embeddings"]


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

    ``logits = n(z) @ w.T / T + b``, where ``n(z)`` is the unit-norm (rectified) embedding, or,
    with a ``center`` ``c``, ``normalize(normalize(relu(z)) - c)`` (transductive centring: ``c``
    is the mean unit embedding of an episode's support and query images). With
    ``normalize_weight`` the rows of ``w`` are renormalised in every forward pass (unit class
    directions, as in a von Mises-Fisher mixture); otherwise they are free (the paper).

    Args:
        weight: initial class weights ``[K, D]`` (usually :func:`normalized_class_means`).
        temperature: ``T``; logits are divided by it (the paper uses 1).
        relu: rectify embeddings before normalising.
        center: ``[D]`` vector subtracted from unit embeddings before renormalising, or ``None``.
        normalize_weight: use unit-norm class weights.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        *,
        temperature: float = 1.0,
        relu: bool = True,
        center: torch.Tensor | None = None,
        normalize_weight: bool = False,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if center is not None and tuple(center.shape) != (weight.shape[1],):
            raise ValueError(
                f"center must be a [D] = [{weight.shape[1]}] vector, got {tuple(center.shape)}"
            )
        self.weight = nn.Parameter(weight.detach().clone().float())
        self.bias = nn.Parameter(torch.zeros(weight.shape[0], device=weight.device))
        self.center: torch.Tensor | None
        self.register_buffer(
            "center", None if center is None else center.detach().clone().float().to(weight.device)
        )
        self.temperature = float(temperature)
        self.relu = relu
        self.normalize_weight = bool(normalize_weight)

    def normalized(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` embeddings -> ``[B, D]`` unit rows ``n(z)`` the logits are computed from."""
        return unit_embeddings(embeddings, relu=self.relu, center=self.center)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` embeddings -> ``[B, K]`` logits."""
        weight = F.normalize(self.weight, dim=1) if self.normalize_weight else self.weight
        return self.normalized(embeddings) @ weight.t() / self.temperature + self.bias


def unit_embeddings(
    embeddings: torch.Tensor, *, relu: bool = True, center: torch.Tensor | None = None
) -> torch.Tensor:
    """``[..., D] -> [..., D]``: unit (rectified) rows, centred on ``center`` and renormalised.

    ``center`` broadcasts against the unit rows (``[D]``, or ``[E, 1, D]`` for a batch of
    episodes); ``None`` = no centring.
    """
    unit = F.normalize(_rectify(embeddings.float(), relu), dim=-1)
    return unit if center is None else F.normalize(unit - center, dim=-1)


def episode_center(embeddings: torch.Tensor, *, relu: bool = True) -> torch.Tensor:
    """Transductive centre of an episode: the mean unit (rectified) embedding, ``[N, D] -> [D]``.

    ``N`` covers the support and the query embeddings together.
    """
    return F.normalize(_rectify(embeddings.float(), relu), dim=1).mean(0)
