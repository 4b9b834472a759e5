"""Few-shot methods. A method is a frozen dataclass called as ``method(backbone, episode)``.

It returns query logits ``[Q, K]`` whose columns follow ``episode.classes``, and never modifies
the backbone it is given.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.methods.batched import batched_head_finetuning, batched_support_init
from anyshot.methods.cosine import CosineClassifier, normalized_class_means
from anyshot.methods.finetune import SCOPES, FineTuning, TransductiveFineTuning, prediction_entropy
from anyshot.methods.support_init import SupportBasedInit

__all__ = [
    "METHODS",
    "SCOPES",
    "CosineClassifier",
    "FewShotMethod",
    "FineTuning",
    "SupportBasedInit",
    "TransductiveFineTuning",
    "batched_head_finetuning",
    "batched_support_init",
    "build_method",
    "normalized_class_means",
    "prediction_entropy",
]


class FewShotMethod(Protocol):
    """What every method is: ``(backbone, episode) -> query logits [Q, K]``."""

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor: ...


METHODS: dict[str, type] = {
    "support-init": SupportBasedInit,
    "finetune": FineTuning,
    "transductive": TransductiveFineTuning,
}


def build_method(name: str, **options: Any) -> FewShotMethod:
    """Build a method by its command-line name, with keyword options of its dataclass.

    Options that are ``None`` are dropped (so the method's defaults apply); options a method
    does not take raise ``TypeError`` naming them.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise TypeError(f"method {name!r} does not take option(s) {unknown}")
    method: FewShotMethod = cls(**given)
    return method
