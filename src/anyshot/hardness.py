"""Episode hardness (Dhillon et al., ICLR 2020, eq. 9) and accuracy-versus-hardness lines.

``Omega = mean_{(x, y) in Q} log((1 - p(y|x)) / p(y|x))``: the mean log-odds *against* the true
class, where ``p`` is the softmax of a fixed, generic classifier: the cosine classifier of the
support-based initialisation (``w_k`` = normalised mean of the support's rectified embeddings,
``T = 1``, no bias) on a generic ImageNet model's normalised logits. Episodes where the generic
model cannot tell the classes apart score high. ``p`` is clamped to ``[1e-6, 1 - 1e-6]``, so one
query contributes at most ``log(1e6) = 13.8`` either way.

The paper used an ImageNet ResNet-152; anyshot uses the ImageNet EfficientNet-Lite0 that installs
offline (``load_backbone("efficientnet-lite0", embedding="logits")``, 1000 logits), so hardness
values are comparable between anyshot runs but not numerically to the paper's.

Accuracy falls roughly linearly with hardness. :func:`fit_accuracy_line` fits
``accuracy = intercept + slope * Omega`` by least squares and the area under that line in the
first quadrant, ``-intercept^2 / (2 slope)`` (a triangle), one number per method that rewards
accuracy on hard episodes as much as on easy ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anyshot.episodes import EpisodeSpec
from anyshot.methods.cosine import class_means
from anyshot.methods.frozen import frozen_forward

if TYPE_CHECKING:
    from anyshot.data.dataset import ImageDataset

__all__ = [
    "CLAMP",
    "HARDNESS_ARCH",
    "HardnessModel",
    "LineFit",
    "area_under_line",
    "cosine_probabilities",
    "embedding_hardness",
    "episode_hardness",
    "fit_accuracy_line",
]

#: ``p(y|x)`` is clamped to ``[CLAMP, 1 - CLAMP]`` before the log-odds.
CLAMP = 1e-6
#: The generic model's architecture (its default input size comes from
#: :func:`anyshot.backbones.resolve_preprocessing`: 224 px).
HARDNESS_ARCH = "efficientnet-lite0"


def episode_hardness(
    scores: torch.Tensor, targets: torch.Tensor, *, probabilities: bool = False
) -> float:
    """``Omega`` of one episode from the generic classifier's query scores.

    Args:
        scores: ``[Q, K]`` logits (softmax is applied) or, with ``probabilities=True``, rows of
            class probabilities.
        targets: ``[Q]`` true class indices in ``0..K-1``.
        probabilities: ``scores`` are already probabilities.

    Returns:
        ``mean_q log((1 - p_q) / p_q)`` with ``p_q = p(targets[q] | x_q)`` clamped to
        ``[1e-6, 1 - 1e-6]``.

    Raises:
        ValueError: no queries, or shapes that do not match.
    """
    if scores.dim() != 2 or targets.dim() != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(
            f"expected scores [Q, K] and targets [Q], got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError("hardness needs at least one query")
    values = scores.detach().double()
    probs = values if probabilities else torch.softmax(values, dim=1)
    p = probs.gather(1, targets.long().view(-1, 1)).squeeze(1).clamp(CLAMP, 1 - CLAMP)
    return float(torch.log((1 - p) / p).mean())


def cosine_probabilities(
    support: torch.Tensor,
    support_targets: torch.Tensor,
    query: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Softmax of the support-based-initialisation cosine classifier on the queries.

    Args:
        support: ``[S, D]`` support embeddings.
        support_targets: ``[S]`` class indices.
        query: ``[Q, D]`` query embeddings.
        ways: ``K``.
        relu: rectify embeddings before normalising (as the support-based initialisation does).
        temperature: ``T`` of the cosine logits (1 for hardness, as in the paper).

    Returns:
        ``[Q, K]`` probabilities (float64).
    """
    weight = class_means(support.double()[None], support_targets[None], ways, relu=relu)[0]
    rectified = F.relu(query.double()) if relu else query.double()
    logits = F.normalize(rectified, dim=1) @ weight.t() / temperature
    return torch.softmax(logits, dim=1)


def embedding_hardness(
    support: torch.Tensor,
    support_targets: torch.Tensor,
    query: torch.Tensor,
    query_targets: torch.Tensor,
    ways: int,
    *,
    relu: bool = True,
    temperature: float = 1.0,
) -> float:
    """``Omega`` of an episode given the generic model's embeddings ``[S, D]`` and ``[Q, D]``."""
    probs = cosine_probabilities(
        support, support_targets, query, ways, relu=relu, temperature=temperature
    )
    return episode_hardness(probs, query_targets, probabilities=True)


class HardnessModel:
    """Hardness of a dataset's episodes with one fixed generic model, embeddings cached.

    Each image is embedded once (frozen, eval mode) and kept in memory per dataset item index,
    so thousands of episodes over the same images cost one forward pass per image.

    Args:
        dataset: the dataset the :class:`EpisodeSpec` items index into.
        backbone: the generic model, ``[B, C, H, W] -> [B, D]``; default the ImageNet
            EfficientNet-Lite0 with ``embedding="logits"`` (1000-d) at ``image_size``.
        image_size: input side of the default backbone (ignored when ``backbone`` is given);
            ``None``: the architecture's default, 224 px (the ImageNet weights' size).
        relu: rectify the embeddings (the support-based initialisation's ReLU; default on).
        temperature: cosine-logit temperature (1, the paper's).
        batch_size: images per forward pass.
        device: where to run the backbone; default its own device.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        backbone: nn.Module | None = None,
        *,
        image_size: int | None = None,
        relu: bool = True,
        temperature: float = 1.0,
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        if backbone is None:
            from anyshot.backbones import load_backbone

            backbone = load_backbone(HARDNESS_ARCH, embedding="logits", image_size=image_size)
        preprocessing = getattr(backbone, "preprocessing", None)
        if preprocessing is None:
            raise ValueError(
                "the hardness backbone needs a `preprocessing` attribute (an anyshot Backbone)"
            )
        self.dataset = dataset
        self.backbone = backbone
        self.preprocessing = preprocessing
        self.relu = relu
        self.temperature = float(temperature)
        self.batch_size = int(batch_size)
        self.device = device
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        """Number of images embedded so far."""
        return len(self._cache)

    def add_embeddings(self, items: Sequence[int], embeddings: torch.Tensor) -> None:
        """Store precomputed embeddings ``[n, D]`` of dataset ``items`` (e.g. from a disk cache)."""
        if len(items) != embeddings.shape[0]:
            raise ValueError(f"{len(items)} items but {embeddings.shape[0]} embeddings")
        for item, row in zip(items, embeddings.float(), strict=True):
            self._cache[int(item)] = row

    def embeddings(self, items: Sequence[int]) -> torch.Tensor:
        """Embeddings ``[n, D]`` of dataset ``items``, computing only the ones not cached."""
        missing = sorted({int(i) for i in items} - set(self._cache))
        if missing:
            rows = frozen_forward(
                self.backbone,
                self.dataset.images(missing, self.preprocessing),
                batch_size=self.batch_size,
                device=self.device,
            )
            self.add_embeddings(missing, rows)
        return torch.stack([self._cache[int(i)] for i in items])

    def __call__(self, spec: EpisodeSpec) -> float:
        """``Omega`` of the episode ``spec`` (ways with no queries contribute nothing)."""
        support = [i for items in spec.support for i in items]
        query = [i for items in spec.query for i in items]
        support_targets = torch.tensor(
            [way for way, items in enumerate(spec.support) for _ in items], dtype=torch.long
        )
        query_targets = torch.tensor(
            [way for way, items in enumerate(spec.query) for _ in items], dtype=torch.long
        )
        return embedding_hardness(
            self.embeddings(support),
            support_targets,
            self.embeddings(query),
            query_targets,
            len(spec.classes),
            relu=self.relu,
            temperature=self.temperature,
        )

    def config(self) -> dict[str, Any]:
        """What computed the hardness (stored beside results)."""
        return {
            "model": f"{getattr(self.backbone, 'arch', type(self.backbone).__name__)} "
            f"({getattr(self.backbone, 'embedding', 'embedding')})",
            "image_size": self.preprocessing.image_size,
            "relu": self.relu,
            "temperature": self.temperature,
            "clamp": CLAMP,
        }


@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``accuracy = intercept + slope * hardness`` and the area under it.

    Attributes:
        slope: accuracy points per unit of hardness.
        intercept: accuracy at hardness 0.
        area: ``-intercept^2 / (2 slope)`` when ``slope < 0 < intercept``, else NaN.
        note: why ``area`` is NaN ("" when it is not).
        points: number of (hardness, accuracy) pairs fitted.
        correlation: Pearson's r of hardness and accuracy (NaN when either is constant).
    """

    slope: float
    intercept: float
    area: float
    note: str
    points: int
    correlation: float = math.nan


def area_under_line(intercept: float, slope: float) -> tuple[float, str]:
    """Area between the line ``intercept + slope * x`` and the axes in the first quadrant.

    Returns:
        ``(-intercept^2 / (2 slope), "")`` for ``slope < 0 < intercept`` (the triangle with
        corners (0, 0), (0, intercept), (-intercept / slope, 0)); otherwise ``(nan, reason)``.
    """
    if not (math.isfinite(intercept) and math.isfinite(slope)):
        return math.nan, "the line could not be fitted"
    if slope >= 0:
        return math.nan, "slope >= 0: the line never reaches zero accuracy, the area is unbounded"
    if intercept <= 0:
        return math.nan, "intercept <= 0: the line lies below the first quadrant"
    return -(intercept**2) / (2 * slope), ""


def fit_accuracy_line(hardness: Sequence[float], accuracy: Sequence[float]) -> LineFit:
    """Fit ``accuracy = intercept + slope * hardness`` (least squares) and its area.

    Args:
        hardness: ``[n]`` episode hardness values.
        accuracy: ``[n]`` accuracies (any unit; the area is in accuracy-unit x hardness-unit).

    Returns:
        The fit; with fewer than two distinct hardness values slope, intercept and area are NaN.
    """
    x = np.asarray(hardness, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"hardness and accuracy must be equal-length 1-D, got {x.shape}, {y.shape}"
        )
    if x.size < 2 or np.unique(x).size < 2:
        return LineFit(
            math.nan, math.nan, math.nan, "fewer than 2 distinct hardness values", int(x.size)
        )
    slope, intercept = np.polyfit(x, y, 1)
    area, note = area_under_line(float(intercept), float(slope))
    r = float(np.corrcoef(x, y)[0, 1]) if np.unique(y).size > 1 else math.nan
    return LineFit(float(slope), float(intercept), area, note, int(x.size), r)
