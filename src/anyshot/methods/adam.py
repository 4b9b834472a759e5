"""Adam for the head loop, without ``torch.optim``'s start-up cost.

The first ``torch.optim`` optimizer a process builds imports ``torch._dynamo`` (the optimizer's
methods are wrapped to keep the compiler out), about 1.7-2.5 s on a CPU: most of a repeat
``anyshot classify`` whose features are cached. The head loop needs nothing of ``torch.optim``
but Adam's update, so it is written here once, as ``torch.optim.Adam``'s single-tensor update
with its defaults (betas 0.9 / 0.999, eps 1e-8, no weight decay): the same arithmetic in the
same order, so trained heads match ``torch.optim.Adam``'s to rounding
(``tests/test_head_regression.py`` holds logits of the ``torch.optim`` version).
Scopes ``last`` / ``all`` train networks for minutes and keep ``torch.optim``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["Adam"]


class Adam:
    """Adam (Kingma and Ba, 2015) on a few tensors: ``zero_grad()``, ``backward()``, ``step()``.

    Args:
        params: the tensors to update (``requires_grad``), any shapes.
        lr: learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the bias-corrected root of the second moment.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = [0] * len(self.params)
        self.first = [torch.zeros_like(p) for p in self.params]
        self.second = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        """Drop every parameter's gradient (as ``set_to_none=True``)."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        beta1, beta2 = self.betas
        for i, param in enumerate(self.params):
            grad = param.grad
            if grad is None:
                continue
            self.steps[i] += 1
            step = self.steps[i]
            self.first[i].lerp_(grad, 1 - beta1)
            self.second[i].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = self.lr / (1 - beta1**step)
            denom = (self.second[i].sqrt() / math.sqrt(1 - beta2**step)).add_(self.eps)
            param.addcdiv_(self.first[i], denom, value=-step_size)
