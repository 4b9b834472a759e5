"""Few-shot methods. A method is a frozen dataclass called as ``method(backbone, episode)``.

It returns query logits ``[Q, K]`` whose columns follow ``episode.classes``, and never modifies
the backbone it is given. Support-init and head fine-tuning also run on embeddings:
``method.fit_features(support [E, S, D], targets [E, S], query [E, Q, D])`` fits ``E``
episodes at once and returns their classifiers (:class:`FittedHead`).

Where each piece lives: ``cosine`` (the classifier and class means), ``objective`` (the loss
terms), ``head`` (the only head-training loop), ``network`` (scopes ``last`` / ``all``),
``support_init`` / ``finetune`` (the methods), ``presets`` (named settings), ``registry``
(names <-> classes), ``balance`` (the balanced-queries test), ``frozen`` (running a caller's
network without changing it).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.methods.cosine import CosineClassifier, class_means
from anyshot.methods.features import FittedHead
from anyshot.methods.finetune import SCOPES, FineTuned, FineTuning, TransductiveFineTuning
from anyshot.methods.objective import prediction_entropy
from anyshot.methods.presets import PRESETS, RECOMMENDED, Method
from anyshot.methods.registry import METHODS, build_method, method_name
from anyshot.methods.support_init import SupportBasedInit

__all__ = [
    "METHODS",
    "PRESETS",
    "RECOMMENDED",
    "SCOPES",
    "CosineClassifier",
    "FewShotMethod",
    "FineTuned",
    "FineTuning",
    "FittedHead",
    "Method",
    "SupportBasedInit",
    "TransductiveFineTuning",
    "build_method",
    "class_means",
    "method_name",
    "prediction_entropy",
]


class FewShotMethod(Protocol):
    """What every method is: ``(backbone, episode) -> query logits [Q, K]``."""

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor: ...
