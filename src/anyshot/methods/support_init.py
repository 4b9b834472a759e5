"""Support-based initialisation (Dhillon et al., section 3.1): a cosine class-mean classifier.

No training: the support embeddings' normalised class means become the classifier weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError
from anyshot.methods.cosine import check_temperatures, shots_temperature
from anyshot.methods.features import FittedHead, RowBatch, episode_rows
from anyshot.methods.frozen import frozen_forward
from anyshot.methods.head import support_init_head

__all__ = ["SupportBasedInit"]


@dataclass(frozen=True)
class SupportBasedInit:
    """Cosine nearest-class-mean classifier on frozen embeddings.

    Args:
        temperature: ``T`` of the cosine logits (1 in the paper).
        confidence_temperature: ``tau``: the logits are divided by it (calibration of the
            confidences; the predictions do not depend on it, nor on ``T``). 1 = none.
        confidence_shots_power: ``b``: ``tau`` is ``confidence_temperature * shots ** b``,
            ``shots`` = labelled images per class (``S / K``); 0 = the same ``tau`` at any
            shots (:func:`~anyshot.methods.cosine.shots_temperature`).
        relu: rectify embeddings before normalising.
        batch_size: images per forward pass.
        device: where to compute; default the backbone's (or the embeddings') device.
    """

    temperature: float = 1.0
    confidence_temperature: float = 1.0
    confidence_shots_power: float = 0.0
    relu: bool = True
    batch_size: int = 128
    device: str | None = None

    def __post_init__(self) -> None:
        check_temperatures(
            temperature=self.temperature, confidence_temperature=self.confidence_temperature
        )
        if not math.isfinite(self.confidence_shots_power):
            raise ConfigurationError(
                f"confidence_shots_power must be a finite number, got {self.confidence_shots_power}"
            )

    def fit_features(
        self,
        support: RowBatch,
        support_targets: RowBatch,
        query: RowBatch,
        *,
        ways: int | None = None,
        episodes_per_chunk: int = 64,
    ) -> FittedHead:
        """The classifiers of ``E`` episodes of embeddings (see :mod:`anyshot.methods.features`).

        Args:
            support: ``[E, S, D]`` support embeddings (``[S, D]`` = one episode).
            support_targets: ``[E, S]`` class indices in ``0..K-1``; every episode has every class.
            query: ``[E, Q, D]`` query embeddings (``Q`` may be 0).
            ways: ``K``; default ``max(support_targets) + 1``.
            episodes_per_chunk: episodes computed together; only speed and memory depend on it.

        Returns:
            The fitted classifiers; ``query_logits`` is ``[E, Q, K]`` (CPU, float32).
        """
        rows = episode_rows(support, support_targets, query, ways=ways, device=self.device)
        with torch.inference_mode():
            parts = [
                support_init_head(chunk, self.temperature, self.relu)
                for chunk in rows.split(episodes_per_chunk)
            ]
        tau = self.confidence_tau(rows.support.shape[1] / rows.ways)
        return FittedHead.concatenate(parts).calibrated(tau, tau)

    def confidence_tau(self, shots: float) -> float:
        """``tau`` for ``shots`` labelled images per class (see ``confidence_shots_power``)."""
        return shots_temperature(self.confidence_temperature, self.confidence_shots_power, shots)

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor:
        """Query logits ``[Q, K]`` (CPU, float32), columns in ``episode.classes`` order."""
        support = frozen_forward(
            backbone, episode.support, batch_size=self.batch_size, device=self.device
        )
        query = (
            frozen_forward(backbone, episode.query, batch_size=self.batch_size, device=self.device)
            if len(episode.query)
            else support[:0]
        )
        fitted = self.fit_features(support, episode.support_targets, query, ways=episode.ways)
        return fitted.query_logits[0]
