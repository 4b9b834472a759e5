"""Head fine-tuning: the only loop that trains the cosine classifier on fixed embeddings.

From support-based initialisation (optionally on episode-centred rows), each epoch is one Adam
step on the support cross-entropy, then, when a query term is on, one step on the query terms of
:mod:`anyshot.methods.objective`. It runs on a batch of ``E`` episodes at once: the parameters
are ``[E, K, D]`` / ``[E, K]`` tensors and the losses are summed over episodes, so each episode
gets exactly its own gradient (Adam is element-wise); one episode is ``E = 1``.

With ``adaptive_balance`` the balance term is used only in episodes whose queries look
balanced: a first run without it predicts the query classes, and the episodes whose predicted
counts pass :func:`anyshot.methods.balance.looks_balanced` are trained again from the
initialisation with it (episodes are independent, so re-running a subset gives each exactly
what a run of all of them would).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from anyshot.methods.balance import looks_balanced
from anyshot.methods.cosine import class_means, cosine_logits, episode_center, unit_embeddings
from anyshot.methods.features import EpisodeRows, FittedHead
from anyshot.methods.objective import (
    QueryWeights,
    estimated_log_prior,
    query_loss,
    support_loss,
    uniform_log_prior,
)

__all__ = ["HeadTraining", "fit_head", "support_init_head"]


@dataclass(frozen=True)
class HeadTraining:
    """Everything head fine-tuning needs to know (see :class:`~anyshot.methods.FineTuning`).

    Attributes:
        temperature: ``T`` of the cosine logits.
        relu: rectify embeddings before normalising.
        lr: Adam learning rate.
        epochs: support step (+ query step) pairs.
        weights: the query terms' weights.
        prior_count: pseudo-count per class of the likelihood term's proportions.
        adaptive_balance: use ``weights.balance`` only in episodes whose queries look balanced.
        center: centre each episode's rows on its mean unit embedding.
    """

    temperature: float
    relu: bool
    lr: float
    epochs: int
    weights: QueryWeights
    prior_count: float = 0.0
    adaptive_balance: bool = False
    center: bool = False


def support_init_head(rows: EpisodeRows, temperature: float, relu: bool) -> FittedHead:
    """Support-based initialisation (no training): class means as weights, zero bias."""
    weight = class_means(rows.support, rows.targets, rows.ways, relu=relu)
    bias = torch.zeros(weight.shape[:2], device=weight.device)
    query = unit_embeddings(rows.query, relu=relu)
    logits = cosine_logits(query, weight, bias, temperature)
    return FittedHead(weight, bias, None, temperature, relu, False, logits.float().cpu())


def fit_head(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """Fine-tune the cosine head of every episode of ``rows``; see the module doc."""
    center = None
    if training.center:
        rows_all = torch.cat([rows.support, rows.query], dim=1)
        center = episode_center(rows_all, relu=training.relu)  # [E, 1, D]
        support = unit_embeddings(rows.support, relu=training.relu, center=center)
        query = unit_embeddings(rows.query, relu=training.relu, center=center)
        weight = class_means(support, rows.targets, rows.ways, relu=False)
    else:
        support = unit_embeddings(rows.support, relu=training.relu)
        query = unit_embeddings(rows.query, relu=training.relu)
        weight = class_means(rows.support, rows.targets, rows.ways, relu=training.relu)
    units = EpisodeRows(support, rows.targets, query, rows.ways)
    weights = training.weights
    if not (training.adaptive_balance and weights.balance > 0 and query.shape[1] > 0):
        return _with_center(_train(training, weights, units, weight), center)
    first = _train(training, replace(weights, balance=0.0), units, weight)
    counts = F.one_hot(first.query_logits.argmax(-1), rows.ways).sum(1)  # [E, K]
    balanced = looks_balanced(counts)  # [E] bool, CPU
    if not bool(balanced.any()):
        return _with_center(first, center)
    picked = balanced.to(support.device)
    again = _train(
        training,
        weights,
        EpisodeRows(support[picked], rows.targets[picked], query[picked], rows.ways),
        weight[picked],
    )
    merged = replace(
        first,
        weight=first.weight.clone(),
        bias=first.bias.clone(),
        query_logits=first.query_logits.clone(),
    )
    merged.weight[picked] = again.weight
    merged.bias[picked] = again.bias
    merged.query_logits[balanced] = again.query_logits
    return _with_center(merged, center)


def _with_center(fitted: FittedHead, center: torch.Tensor | None) -> FittedHead:
    return fitted if center is None else replace(fitted, center=center)


def _train(
    training: HeadTraining, weights: QueryWeights, units: EpisodeRows, init_weight: torch.Tensor
) -> FittedHead:
    """One training run from class weights ``init_weight [E, K, D]`` on unit rows (already
    centred when centring is on). The result's ``center`` is ``None`` (the caller sets it)."""
    episodes, ways = init_weight.shape[0], init_weight.shape[1]
    n_support, n_query = units.support.shape[1], units.query.shape[1]
    likelihood = weights.likelihood > 0
    weight = init_weight.detach().clone().requires_grad_(True)
    bias = torch.zeros(episodes, ways, device=weight.device, requires_grad=not likelihood)
    optimizer = torch.optim.Adam([weight] if likelihood else [weight, bias], lr=training.lr)
    log_prior = uniform_log_prior((episodes,), ways, weight.device)

    def logits_of(rows: torch.Tensor) -> torch.Tensor:
        return cosine_logits(rows, weight, bias, training.temperature, normalize_weight=likelihood)

    for _ in range(training.epochs):
        optimizer.zero_grad(set_to_none=True)
        support_loss(logits_of(units.support), units.targets, n_support).backward()
        optimizer.step()
        if weights.any and n_query > 0:
            optimizer.zero_grad(set_to_none=True)
            loss, responsibilities = query_loss(logits_of(units.query), weights, n_query, log_prior)
            loss.backward()
            optimizer.step()
            if likelihood:
                log_prior = estimated_log_prior(responsibilities, n_query, training.prior_count)

    with torch.no_grad():
        if likelihood:
            bias = log_prior
        query_logits = logits_of(units.query).float().cpu()
        final_weight = weight.detach().clone()
        final_bias = bias.detach().clone()
    return FittedHead(
        final_weight,
        final_bias,
        None,
        training.temperature,
        training.relu,
        likelihood,
        query_logits,
    )
