"""Do an episode's query images look class-balanced? An empirical-Bayes test on class counts.

TIM's class-balance term (the entropy of the mean query prediction) helps when the query set is
balanced, as in the standard benchmarks, and hurts when it is not. ``adaptive_balance`` of
:class:`~anyshot.methods.FineTuning` uses it only when the predicted query classes look
balanced: when a symmetric ``Dirichlet(a)`` prior on the class proportions explains the
predicted counts best with a concentration ``a`` so large that the posterior mean of the
proportions, ``(n_k + a) / (Q + K a)``, is at least :data:`BALANCED_SHRINKAGE` uniform.
It is a test for query sets balanced by design, as in the benchmarks: exactly balanced counts
with a few prediction errors pass, as do the ~60% of multinomial draws from uniform proportions
that are no more spread than expected; Dirichlet(2) and Dirichlet(0.5) counts (the imbalanced
benchmarks) pass about 1% and 0.3% of the time (``tests/test_adaptive_balance.py``).
"""

from __future__ import annotations

import torch

__all__ = ["BALANCED_SHRINKAGE", "CONCENTRATIONS", "dirichlet_concentration", "looks_balanced"]

#: Candidate concentrations ``a`` per class: 0.1 ... 10^6, 10 per decade.
CONCENTRATIONS = torch.logspace(-1, 6, 71, dtype=torch.float64)

#: Weight ``K a / (Q + K a)`` of uniform proportions in the posterior mean needed to call the
#: queries balanced (chosen on mini-ImageNet val: 0.9 and 0.95 gave the same accuracy).
BALANCED_SHRINKAGE = 0.95


def dirichlet_concentration(counts: torch.Tensor) -> torch.Tensor:
    """Empirical-Bayes concentration: ``[..., K]`` class counts -> ``[...]`` (float64).

    The candidate of :data:`CONCENTRATIONS` maximising the Dirichlet-multinomial marginal
    likelihood ``log G(K a) - log G(Q + K a) + sum_k [log G(n_k + a) - log G(a)]`` of the
    counts ``n`` (``G`` = the gamma function, ``Q = sum_k n_k``). Counts may be fractional.
    """
    n = counts.detach().to(torch.float64).unsqueeze(-2)  # [..., 1, K]
    a = CONCENTRATIONS.to(n.device)
    ways = n.shape[-1]
    evidence = (
        torch.lgamma(ways * a)
        - torch.lgamma(n.sum(-1) + ways * a)
        + (torch.lgamma(n + a[:, None]) - torch.lgamma(a[:, None])).sum(-1)
    )  # [..., G]
    return a[evidence.argmax(-1)]


def looks_balanced(counts: torch.Tensor) -> torch.Tensor:
    """``[..., K]`` class counts -> ``[...]`` bool: whether they look drawn from uniform
    proportions (see the module doc)."""
    ways = counts.shape[-1]
    total = counts.detach().to(torch.float64).sum(-1)
    a = dirichlet_concentration(counts)
    return ways * a >= BALANCED_SHRINKAGE * (total + ways * a)
