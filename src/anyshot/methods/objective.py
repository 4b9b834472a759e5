"""The terms fine-tuning minimises, written once for every scope.

Support: the cross-entropy of the labelled rows; optionally each class weighs the same in it
whatever its number of images (:func:`class_balanced_weights`). Queries (transductive), weighted
by a :class:`QueryWeights`:

* ``entropy``: the paper's mean prediction entropy ``mean_x H(softmax(l(x)))``;
* ``balance``: TIM's class-balance term, the entropy of the mean query prediction, *subtracted*
  (it pulls the predicted class proportions toward uniform);
* both entropies are Shannon's (``order`` 1) or Tsallis entropies of another ``order`` ``a``,
  ``H_a(p) = (1 - sum_k p_k^a) / (a - 1)`` (alpha-TIM, Veilleux et al., NeurIPS 2021): above
  order 1 their gradients stay bounded near ``p_k = 0``, so the balance term no longer forces
  every class to appear and the entropy term forgives a confident mistake more;
* ``likelihood``: the queries' mean log-likelihood under a mixture of the classes,
  ``mean_x log sum_k pi_k exp(l_k(x))``, *subtracted* (maximised); the proportions ``pi`` are
  re-estimated from the responsibilities after every step (:func:`estimated_log_prior`), with a
  fixed pseudo-count per class or one estimated per episode (empirical Bayes).

Logits are ``[..., B, K]`` (episodes first when batched); losses are summed over episodes, so
in a batch every episode gets exactly its own gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from anyshot.methods.balance import dirichlet_concentration

__all__ = [
    "MIN_PROPORTION",
    "QueryWeights",
    "class_balanced_weights",
    "estimated_log_prior",
    "marginal_entropy",
    "marginal_entropy_gradient",
    "prediction_entropy",
    "query_loss",
    "support_loss",
    "tsallis_entropy",
    "uniform_log_prior",
]

#: Smallest class proportion of the likelihood term's estimate (keeps ``log pi`` finite).
MIN_PROPORTION = 1e-4


@dataclass(frozen=True)
class QueryWeights:
    """Weights of the query terms (all 0 = inductive fine-tuning).

    Attributes:
        entropy: weight of the mean prediction entropy (the paper's ``lambda``).
        balance: weight of TIM's class-balance term (subtracted).
        likelihood: weight of the mixture log-likelihood (subtracted).
        order: order of the entropy and balance terms' entropies: 1 = Shannon's, another
            positive value = Tsallis's (:func:`tsallis_entropy`; alpha-TIM uses 2 to 7).
    """

    entropy: float = 0.0
    balance: float = 0.0
    likelihood: float = 0.0
    order: float = 1.0

    @property
    def any(self) -> bool:
        """Whether any query term is on (a query step runs)."""
        return self.entropy > 0 or self.balance > 0 or self.likelihood > 0


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)`` over the last axis: ``[..., K] -> [...]``."""
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def tsallis_entropy(probabilities: torch.Tensor, order: float = 1.0) -> torch.Tensor:
    """``[..., K]`` probabilities -> ``[...]``: the Tsallis entropy of ``order`` ``a``,
    ``(1 - sum_k p_k^a) / (a - 1)``; Shannon's (nats) at ``a = 1``, its limit."""
    p = probabilities.clamp_min(1e-12)
    if order == 1.0:
        return -(probabilities * torch.log(p)).sum(-1)
    return (1 - p.pow(order).sum(-1)) / (order - 1)


def marginal_entropy(probabilities: torch.Tensor, order: float = 1.0) -> torch.Tensor:
    """Entropy (of ``order``, :func:`tsallis_entropy`) of the mean prediction: ``[..., Q, K]``
    probabilities -> ``[...]``."""
    return tsallis_entropy(probabilities.mean(-2), order)


def marginal_entropy_gradient(marginal: torch.Tensor, order: float = 1.0) -> torch.Tensor:
    """``[..., K]`` mean prediction ``m`` -> ``[..., K]``: the gradient of its entropy of
    ``order`` with respect to ``m``: ``-(log m + 1)`` (Shannon), ``-a m^(a-1) / (a - 1)``."""
    m = marginal.clamp_min(1e-12)
    if order == 1.0:
        return -(torch.log(m) + 1)
    return -order * m.pow(order - 1) / (order - 1)


def uniform_log_prior(shape: tuple[int, ...], ways: int, device: torch.device) -> torch.Tensor:
    """``log pi`` of uniform proportions: a ``[*shape, K]`` tensor of ``-log K``."""
    return torch.full((*shape, ways), -math.log(ways), device=device)


def estimated_log_prior(
    responsibilities: torch.Tensor,
    n_query: int | torch.Tensor,
    prior_count: float,
    *,
    empirical_bayes: bool = False,
) -> torch.Tensor:
    """``log pi`` from summed query responsibilities ``[..., K]`` and a pseudo-count per class;
    ``n_query`` = ``Q``, or ``[..., 1]`` per episode.

    ``pi_k = (r_k + c) / (Q + K c)``, floored at :data:`MIN_PROPORTION` and renormalised. ``c``
    is ``prior_count``, or with ``empirical_bayes`` each episode's own
    :func:`~anyshot.methods.balance.dirichlet_concentration` of the soft counts ``r`` (the
    symmetric Dirichlet prior that explains them best: large for counts as even as uniform
    proportions give, small for a few dominant classes); ``prior_count`` is then unused.
    """
    ways = responsibilities.shape[-1]
    if empirical_bayes:
        count = dirichlet_concentration(responsibilities).to(responsibilities.dtype)
        count = count.unsqueeze(-1)  # [..., 1]
        pi = (responsibilities + count) / (n_query + ways * count)
    else:
        pi = (responsibilities + prior_count) / (n_query + ways * prior_count)
    pi = pi.clamp_min(MIN_PROPORTION)
    return torch.log(pi / pi.sum(-1, keepdim=True))


def class_balanced_weights(targets: torch.Tensor, ways: int) -> torch.Tensor | None:
    """Class weights that give every class the same share of the support cross-entropy.

    A class of ``n_k`` of the ``S`` labelled images weighs ``S / (K n_k)``: its images' losses
    sum to the same total as any other class's, and the weights average 1 over the images.
    Without them a class with one image among classes of twenty counts twenty times less, and
    training (the bias above all) learns the support's class sizes as a prior the queries need
    not share.

    Args:
        targets: ``[..., S]`` class indices ``0..K-1`` of an episode's (or a batch's) support.
        ways: ``K``.

    Returns:
        ``[..., K]`` weights, or ``None`` where every episode's classes have equally many images
        (all weights 1: the plain mean, left exactly as it was).
    """
    counts = F.one_hot(targets.long(), ways).sum(-2).to(torch.float32)  # [..., K]
    if bool((counts == counts[..., :1]).all()):
        return None
    return targets.shape[-1] / (ways * counts.clamp_min(1.0))


def support_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    n_support: int,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of ``[..., B, K]`` logits against ``[..., B]`` targets, divided by
    the support size (a chunk's share of the mean; chunks' losses add up to it). With
    ``class_weights`` (``[..., K]``, :func:`class_balanced_weights` of the whole support) each
    image's loss is multiplied by its class's weight."""
    ways = logits.shape[-1]
    if class_weights is None:
        loss = F.cross_entropy(logits.reshape(-1, ways), targets.reshape(-1), reduction="sum")
        return loss / n_support
    losses = F.cross_entropy(logits.reshape(-1, ways), targets.reshape(-1), reduction="none").view(
        targets.shape
    )  # [..., B]
    weights = class_weights.to(losses.dtype).gather(-1, targets.long())  # [..., B]
    return (losses * weights).sum() / n_support


def query_loss(
    logits: torch.Tensor,
    weights: QueryWeights,
    n_query: int,
    log_prior: torch.Tensor,
    *,
    balance_gradient: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The query terms of ``[..., B, K]`` logits (a chunk of ``B`` of the ``n_query`` queries).

    Args:
        logits: ``[..., B, K]`` query logits.
        weights: the terms' weights.
        n_query: the episode's number of queries (each term is a mean over them).
        log_prior: ``[..., K]`` current ``log pi`` of the likelihood term.
        balance_gradient: ``[..., K]`` :func:`marginal_entropy_gradient` of the whole query
            set's mean prediction, when the queries come in several chunks: the balance term is
            then linearised around it (the exact gradient of ``H(mean p)`` with respect to each
            chunk's predictions); ``None`` = all queries are in ``logits`` (exact term).

    Returns:
        ``(loss, responsibilities)``: the scalar loss (summed over episodes), and the summed
        responsibilities ``[..., K]`` of the likelihood term (zeros when it is off).
    """
    log_p = F.log_softmax(logits, dim=-1)
    p = log_p.exp()
    # Shannon's from the log-softmax: exact for tiny probabilities
    shannon = weights.order == 1.0
    entropy = -(p * log_p).sum(-1) if shannon else tsallis_entropy(p, weights.order)
    loss = weights.entropy * entropy.sum() / n_query
    if weights.balance > 0:
        if balance_gradient is None:
            balance = marginal_entropy(p, weights.order).sum()
        else:
            balance = (p * balance_gradient.unsqueeze(-2)).sum() / n_query
        loss = loss - weights.balance * balance
    responsibilities = torch.zeros_like(log_prior)
    if weights.likelihood > 0:
        joint = logits + log_prior.unsqueeze(-2)
        log_likelihood = torch.logsumexp(joint, dim=-1).sum() / n_query
        loss = loss - weights.likelihood * log_likelihood
        responsibilities = F.softmax(joint.detach(), dim=-1).sum(-2)
    return loss, responsibilities
