"""The :class:`Backbone` contract every network in anyshot follows.

A backbone maps images ``[B, C, H, W]`` to embeddings ``[B, D]`` in two parts, so that the
fine-tuning ``scope`` can choose what to train:

* ``forward_trunk(x)``: everything but the last stage, ``[B, C, H, W] -> activations``;
* ``forward_last(a)``: the last stage, pooling and (when ``embedding == "logits"``) the
  pre-training classifier, ``activations -> [B, D]``.

``forward(x) == forward_last(forward_trunk(x))``. ``last_stage_modules()`` lists the modules used by
``forward_last``; scope ``last`` trains exactly their parameters.

The paper appends the few-shot classifier after the pre-trained network's *logits*; a backbone
built with a pre-training head (``num_classes``) and ``embedding="logits"`` does that, otherwise
the pooled features are the embedding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anyshot.data.images import Preprocessing

__all__ = ["EMBEDDINGS", "Backbone"]

EMBEDDINGS = ("features", "logits")


class Backbone(nn.Module):
    """Base class: a feature extractor with a trunk / last-stage split and its preprocessing.

    Subclasses set ``self.feature_dim`` (pooled feature size), build ``self.classifier``
    (``nn.Linear(feature_dim, num_classes)`` or ``None``) and implement ``forward_trunk``,
    ``forward_features`` and ``last_stage_modules``.

    Attributes:
        arch: registry name of the architecture (e.g. ``"conv4"``).
        preprocessing: how images must be prepared for this network.
        embedding: ``"features"`` (pooled features) or ``"logits"`` (pre-training head output).
        classifier: the pre-training head, or ``None``.
        class_names: names of the pre-training classes, if known.
    """

    arch: str = "backbone"

    def __init__(
        self,
        preprocessing: Preprocessing,
        *,
        embedding: str = "features",
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
        self.preprocessing = preprocessing
        self.embedding = embedding
        self.class_names = list(class_names) if class_names is not None else None
        self.feature_dim = 0
        self.classifier: nn.Linear | None = None

    # --- to implement -------------------------------------------------------------------
    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images -> activations entering the last stage."""
        raise NotImplementedError

    def forward_features(self, activations: torch.Tensor) -> torch.Tensor:
        """Activations entering the last stage -> pooled features ``[B, feature_dim]``."""
        raise NotImplementedError

    def last_stage_modules(self) -> list[nn.Module]:
        """Modules run by :meth:`forward_features` (trained by scope ``last``)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments that rebuild this architecture (stored in checkpoints)."""
        raise NotImplementedError

    def batch_norm_after_conv(self) -> list[tuple[str, str]]:
        """``(convolution, batch-norm)`` module names where the batch-norm is applied to that
        convolution's output and to nothing else, so that for inference it can be folded into
        the convolution (:func:`anyshot.embedding.fold_batch_norm`). Default: none."""
        return []

    # --- shared -------------------------------------------------------------------------
    @property
    def embedding_dim(self) -> int:
        """Size ``D`` of :meth:`forward`'s output."""
        if self.embedding == "logits":
            if self.classifier is None:
                raise ValueError(f"{self.arch} has no classifier; use embedding='features'")
            return self.classifier.out_features
        return self.feature_dim

    def forward_last(self, activations: torch.Tensor) -> torch.Tensor:
        """Activations -> embeddings ``[B, D]`` (features, or logits of the pre-training head)."""
        features = self.forward_features(activations)
        if self.embedding == "logits":
            if self.classifier is None:
                raise ValueError(f"{self.arch} has no classifier; use embedding='features'")
            return self.classifier(features)
        return features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images -> embeddings ``[B, D]``."""
        return self.forward_last(self.forward_trunk(images))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Pre-training head output ``[B, num_classes]`` (for pre-training)."""
        if self.classifier is None:
            raise ValueError(f"{self.arch} was built without a classifier (num_classes=None)")
        return self.classifier(self.forward_features(self.forward_trunk(images)))

    def last_stage_parameters(self) -> list[nn.Parameter]:
        """Parameters of :meth:`forward_last` (including the classifier when it is used)."""
        modules = list(self.last_stage_modules())
        if self.embedding == "logits" and self.classifier is not None:
            modules.append(self.classifier)
        seen: set[int] = set()
        params: list[nn.Parameter] = []
        for module in modules:
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    params.append(param)
        return params
