"""The cosine classifier of Dhillon et al. and its support-based initialisation.

``logits_k(z) = <w_k, n(z)> / T + b_k`` with ``n(z) = relu(z) / ||relu(z)||`` (ReLU optional),
initialised from the support set as ``w_k = normalize(mean_{i: y_i = k} relu(z_i))``, ``b_k = 0``.
With transductive centring, ``n(z) = normalize(normalize(relu(z)) - c)`` where ``c`` is the mean
unit embedding of an episode's support and query rows (``"episode"``), or the mean of its
support's unit class means (``"support"``: it does not depend on which classes the queries hold);
:func:`episode_center` / :func:`support_center`, chosen by :func:`transductive_center`.

Every function works on a batch of episodes, ``[E, N, D]`` embeddings; one episode is ``E = 1``.
:class:`CosineClassifier` is the same classifier for one episode as an ``nn.Module`` (what scopes
``last`` / ``all`` train and what model files store).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from anyshot.errors import ConfigurationError

__all__ = [
    "CENTERS",
    "CosineClassifier",
    "check_temperatures",
    "class_mean_similarity",
    "class_means",
    "cosine_logits",
    "episode_center",
    "rectify",
    "shots_temperature",
    "support_center",
    "transductive_center",
    "unit_embeddings",
]

#: What a transductive centre is the mean of: every row of the episode, or the support's classes.
CENTERS = ("episode", "support", "adaptive")


def rectify(embeddings: torch.Tensor, relu: bool) -> torch.Tensor:
    """``relu(embeddings)`` when ``relu``, else the embeddings unchanged (any shape)."""
    return F.relu(embeddings) if relu else embeddings


def unit_embeddings(
    embeddings: torch.Tensor, *, relu: bool = True, center: torch.Tensor | None = None
) -> torch.Tensor:
    """``[..., D] -> [..., D]`` float32: unit (rectified) rows, centred on ``center`` and
    renormalised.

    ``center`` broadcasts against the unit rows (``[D]`` for one episode's ``[N, D]`` rows,
    ``[E, 1, D]`` for ``[E, N, D]``); ``None`` = no centring.
    """
    unit = F.normalize(rectify(embeddings.float(), relu), dim=-1)
    return unit if center is None else F.normalize(unit - center, dim=-1)


def episode_center(rows: torch.Tensor, *, relu: bool = True) -> torch.Tensor:
    """``[E, N, D] -> [E, 1, D]``: each episode's mean unit (rectified) embedding, ``N``
    covering its support and query rows together (the transductive centre)."""
    return unit_embeddings(rows, relu=relu).mean(1, keepdim=True)


def class_means(
    embeddings: torch.Tensor, targets: torch.Tensor, ways: int, *, relu: bool = True
) -> torch.Tensor:
    """Unit-norm class means of (rectified) rows: ``[E, S, D], [E, S] -> [E, K, D]``.

    Args:
        embeddings: ``[E, S, D]`` support rows (float32).
        targets: ``[E, S]`` class indices in ``0..ways-1``; every episode has every class
            (callers check: see :func:`anyshot.methods.features.episode_batch`).
        ways: ``K``.
        relu: rectify before averaging.
    """
    one_hot = F.one_hot(targets, ways).to(embeddings.dtype)  # [E, S, K]
    sums = one_hot.transpose(1, 2) @ rectify(embeddings, relu)  # [E, K, D]
    means = sums / one_hot.sum(1).unsqueeze(-1)
    return F.normalize(means, dim=-1)


def class_mean_similarity(
    support: torch.Tensor, targets: torch.Tensor, ways: int, *, relu: bool = True
) -> torch.Tensor:
    """``[E, S, D], [E, S] -> [E]`` float64: the mean cosine between two different classes'
    support-based weights (:func:`class_means`, unit rows) of each episode, over the ``K (K - 1)``
    ordered pairs; 0 with one class. High when the backbone sees the classes as alike (Omniglot
    through an ImageNet network: about 0.58 at one shot, 0.70 at five; mini-ImageNet: 0.33 and
    0.57). Uses the support alone."""
    if ways < 2:
        return torch.zeros(support.shape[0], dtype=torch.float64)
    means = class_means(support, targets, ways, relu=relu).double()  # [E, K, D]
    gram = means @ means.transpose(1, 2)  # [E, K, K]
    off_diagonal = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)
    return (off_diagonal / (ways * (ways - 1))).cpu()


def cross_class_similarity(
    embeddings: torch.Tensor, targets: torch.Tensor, *, relu: bool = True
) -> float:
    """``[S, D], [S] -> float``: the mean cosine between the (rectified) embeddings of two
    labelled images of different classes, over every such ordered pair; 0 without one. How
    alike the backbone sees the classes, image by image (unlike :func:`class_mean_similarity`,
    it does not rise with the number of images per class): on val classes through
    EfficientNet-Lite0, about 0.32-0.38 for mini-ImageNet, 0.54-0.55 for Omniglot and
    0.60-0.61 for scikit-learn's digits (``studies/scope-curve/``)."""
    units = unit_embeddings(embeddings, relu=relu).double()  # [S, D]
    classes = int(targets.max()) + 1 if len(targets) else 0
    targets = targets.to(units.device)
    sums = units.new_zeros(classes, units.shape[1]).index_add_(0, targets, units)
    counts = torch.bincount(targets, minlength=classes).double()
    pairs = float(len(targets) ** 2 - counts.square().sum())  # ordered, different classes
    if pairs == 0:
        return 0.0
    # sum over pairs of different classes = |sum of all|^2 - sum_k |sum of class k|^2: O(S D)
    # memory, not the S x S matrix (10,000 labelled images would need 400 MB for it)
    total = float(sums.sum(0).square().sum() - sums.square().sum())
    return total / pairs


def support_center(
    support: torch.Tensor, targets: torch.Tensor, ways: int, *, relu: bool = True
) -> torch.Tensor:
    """``[E, S, D], [E, S] -> [E, 1, D]``: the mean of each episode's support-based class
    weights (:func:`class_means` of the rectified rows, one unit vector per class), so every
    class counts once whatever its shots, and the queries play no part."""
    return class_means(support, targets, ways, relu=relu).mean(1, keepdim=True)


def run_centers(on: str) -> tuple[str, str]:
    """The centre of the first training run and of the balanced second run (adaptive balance)
    for ``center_on`` ``on``: ``"adaptive"`` centres the first run on the support and, when its
    predicted query classes look balanced (so the queries cover the classes and their mean is a
    neutral origin), the second run on the episode; the others use one centre for both."""
    if on not in CENTERS:
        raise ValueError(f"center_on must be one of {CENTERS}, got {on!r}")
    return ("support", "episode") if on == "adaptive" else (on, on)


def transductive_center(
    on: str,
    support: torch.Tensor,
    targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
) -> torch.Tensor:
    """``[E, 1, D]`` centres of ``E`` episodes: ``on="episode"`` = :func:`episode_center` of the
    support and query rows ``[E, S + Q, D]``; ``on="support"`` = :func:`support_center`
    (``query`` unused). Raises ``ValueError`` for another ``on`` (``"adaptive"`` names two
    centres: see :func:`run_centers`)."""
    if on == "episode":
        return episode_center(torch.cat([support, query], dim=1), relu=relu)
    if on == "support":
        return support_center(support, targets, ways, relu=relu)
    raise ValueError(f"center_on must be one of {CENTERS}, got {on!r}")


def check_temperatures(**temperatures: float) -> None:
    """Raise :class:`~anyshot.errors.ConfigurationError` unless every value is positive and
    finite (keywords: the settings' names)."""
    for name, value in temperatures.items():
        if not 0 < value < math.inf:
            raise ConfigurationError(f"{name} must be a positive number, got {value}")


def shots_temperature(temperature: float, shots_power: float, shots: float) -> float:
    """``temperature * shots ** shots_power``: a confidence temperature ``tau`` that changes with
    ``shots``, the labelled images per class (``S / K``, a mean when classes differ). Class means
    of more images are nearer their queries, so logits grow with the shots and want a softer
    ``tau`` per unit of logit (a negative power keeps confidences calibrated)."""
    return temperature * shots**shots_power


def cosine_logits(
    unit: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    temperature: float | torch.Tensor,
    *,
    normalize_weight: bool = False,
) -> torch.Tensor:
    """``[E, N, D]`` unit rows, weights ``[E, K, D]``, bias ``[E, K]`` -> ``[E, N, K]`` logits
    ``<w_k, n> / T + b_k`` (with ``normalize_weight``, ``w_k`` is renormalised first); ``T`` a
    float or ``[E, 1, 1]`` per episode."""
    w = F.normalize(weight, dim=-1) if normalize_weight else weight
    return unit @ w.transpose(1, 2) / temperature + bias.unsqueeze(1)


class CosineClassifier(nn.Module):
    """One episode's cosine classifier ``[B, D] -> [B, K]``: trainable weights ``[K, D]`` and
    bias ``[K]``.

    ``logits = n(z) @ w.T / T + b`` with ``n`` of :func:`unit_embeddings` (centred on
    ``center`` when given). With ``normalize_weight`` the rows of ``w`` are renormalised in every
    forward pass (unit class directions, as in a von Mises-Fisher mixture); otherwise they are
    free (the paper).

    Args:
        weight: initial class weights ``[K, D]`` (usually support class means).
        temperature: ``T``; logits are divided by it (the paper uses 1).
        relu: rectify embeddings before normalising.
        center: ``[D]`` vector subtracted from unit embeddings before renormalising, or ``None``.
        normalize_weight: use unit-norm class weights.
        bias: initial bias ``[K]``; default zeros.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        *,
        temperature: float = 1.0,
        relu: bool = True,
        center: torch.Tensor | None = None,
        normalize_weight: bool = False,
        bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if center is not None and tuple(center.shape) != (weight.shape[1],):
            raise ValueError(
                f"center must be a [D] = [{weight.shape[1]}] vector, got {tuple(center.shape)}"
            )
        self.weight = nn.Parameter(weight.detach().clone().float())
        initial_bias = torch.zeros(weight.shape[0], device=weight.device)
        if bias is not None:
            initial_bias = bias.detach().clone().float().to(weight.device)
        self.bias = nn.Parameter(initial_bias)
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
