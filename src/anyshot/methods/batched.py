"""Many fixed N-way K-shot episodes at once, on cached embeddings.

The same math as :class:`~anyshot.methods.SupportBasedInit` and
:class:`~anyshot.methods.FineTuning` / :class:`~anyshot.methods.TransductiveFineTuning` with
``scope="head"``, vectorised over a batch of ``E`` episodes that share the support size ``S``,
the query size ``Q`` and the number of ways ``K``:

* support-based initialisation ``W_e = normalize(mean_{i: y_i = k} relu(z_i))``, ``b_e = 0``;
* per epoch, one Adam step on ``CE(support)`` (mean over the support), then, when transductive,
  one step on ``entropy_weight * mean H(p(query)) - balance_weight * H(mean p(query))``.

The classifier parameters are ``[E, K, D]`` and ``[E, K]`` tensors and each episode's loss is
summed over episodes, so every episode gets exactly its own gradient; Adam is element-wise, so
its state is independent per episode too. Results match the one-at-a-time methods up to float
rounding (summation order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from anyshot.errors import ConfigurationError
from anyshot.methods.balance import looks_balanced
from anyshot.methods.cosine import unit_embeddings
from anyshot.methods.finetune import FineTuning, estimated_log_prior
from anyshot.methods.support_init import SupportBasedInit

__all__ = ["batched_head_finetuning", "batched_support_init"]

Batch = torch.Tensor | Sequence[torch.Tensor]


def _stack(values: Batch, name: str, dims: int) -> torch.Tensor:
    """A ``dims``-D tensor from a tensor or a sequence of equally shaped ``dims - 1``-D ones."""
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        parts = list(values)
        if not parts:
            raise ConfigurationError(f"{name}: no episodes given")
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise ConfigurationError(
                f"{name}: episodes differ in shape {sorted(shapes)}; batched methods need fixed "
                "N-way K-shot episodes (the same support size, query size and ways); run "
                "variable episodes one at a time"
            )
        tensor = torch.stack(parts)
    if tensor.dim() != dims:
        raise ConfigurationError(
            f"{name} must be {dims}-D (episodes first), got shape {tuple(tensor.shape)}"
        )
    return tensor


def _prepare(
    support: Batch,
    support_targets: Batch,
    query: Batch,
    ways: int | None,
    device: str | torch.device | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Validate; return ``(support [E,S,D], targets [E,S], query [E,Q,D], K)`` on ``device``."""
    s = _stack(support, "support", 3)
    t = _stack(support_targets, "support_targets", 2)
    q = _stack(query, "query", 3)
    if t.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ConfigurationError(f"support_targets must be integer class indices, got {t.dtype}")
    if t.shape != s.shape[:2]:
        raise ConfigurationError(
            f"support_targets {tuple(t.shape)} must be [E, S] = {tuple(s.shape[:2])}"
        )
    if q.shape[0] != s.shape[0] or q.shape[2] != s.shape[2]:
        raise ConfigurationError(
            f"query {tuple(q.shape)} must be [E, Q, D] with E, D of support {tuple(s.shape)}"
        )
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ConfigurationError(f"support {tuple(s.shape)} has no episodes or no support rows")
    target = torch.device(device) if device is not None else s.device
    t = t.to(target, torch.long)
    k = int(t.max()) + 1 if ways is None else int(ways)
    if int(t.min()) < 0 or int(t.max()) >= k:
        raise ConfigurationError(f"support_targets must lie in 0..{k - 1}")
    counts = F.one_hot(t, k).sum(1)  # [E, K]
    empty = (counts == 0).nonzero()
    if len(empty):
        e, c = (int(v) for v in empty[0])
        raise ConfigurationError(
            f"episode {e} has no support row of class {c}: batched methods need every episode "
            f"to have all {k} ways (targets 0..{k - 1}); run variable-way episodes one at a time"
        )
    return s.to(target, torch.float32), t, q.to(target, torch.float32), k


def _normalized(embeddings: torch.Tensor, relu: bool) -> torch.Tensor:
    """``[E, N, D] -> [E, N, D]`` unit rows of (rectified) embeddings."""
    return F.normalize(F.relu(embeddings) if relu else embeddings, dim=-1)


def _class_means(
    support: torch.Tensor, targets: torch.Tensor, ways: int, relu: bool
) -> torch.Tensor:
    """``[E, S, D], [E, S] -> [E, K, D]`` unit-norm class means of (rectified) support rows."""
    one_hot = F.one_hot(targets, ways).to(support.dtype)  # [E, S, K]
    rectified = F.relu(support) if relu else support
    sums = one_hot.transpose(1, 2) @ rectified  # [E, K, D]
    means = sums / one_hot.sum(1).unsqueeze(-1)
    return F.normalize(means, dim=-1)


def _logits(
    normalized: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``[E, N, D]`` unit rows, ``[E, K, D]``, ``[E, K]`` -> ``[E, N, K]`` cosine logits."""
    return normalized @ weight.transpose(1, 2) / temperature + bias.unsqueeze(1)


def batched_support_init(
    support: Batch,
    support_targets: Batch,
    query: Batch,
    *,
    method: SupportBasedInit | None = None,
    ways: int | None = None,
    episodes_per_chunk: int = 64,
) -> torch.Tensor:
    """:class:`SupportBasedInit` on ``E`` episodes of embeddings at once.

    Args:
        support: ``[E, S, D]`` support embeddings (or ``E`` tensors ``[S, D]``).
        support_targets: ``[E, S]`` class indices in ``0..K-1``; every episode has every class.
        query: ``[E, Q, D]`` query embeddings.
        method: the settings (``temperature``, ``relu``, ``device``); default
            ``SupportBasedInit()``.
        ways: ``K``; default ``max(support_targets) + 1``.
        episodes_per_chunk: episodes computed together; the result does not depend on it,
            only speed and memory do (a small chunk stays in the CPU caches).

    Returns:
        ``[E, Q, K]`` logits (CPU, float32), columns in class-index order.

    Raises:
        ConfigurationError: shapes that are not a batch of fixed N-way K-shot episodes, or an
            episode missing a class.
    """
    if episodes_per_chunk < 1:
        raise ConfigurationError(f"episodes_per_chunk must be at least 1, got {episodes_per_chunk}")
    settings = method if method is not None else SupportBasedInit()
    s, t, q, k = _prepare(support, support_targets, query, ways, settings.device)
    outputs: list[torch.Tensor] = []
    with torch.inference_mode():
        for s_chunk, t_chunk, q_chunk in zip(
            s.split(episodes_per_chunk),
            t.split(episodes_per_chunk),
            q.split(episodes_per_chunk),
            strict=True,
        ):
            weight = _class_means(s_chunk, t_chunk, k, settings.relu)
            bias = torch.zeros(weight.shape[:2], device=weight.device)
            query_n = _normalized(q_chunk, settings.relu)
            outputs.append(_logits(query_n, weight, bias, settings.temperature).float().cpu())
    return torch.cat(outputs)


def batched_head_finetuning(
    method: FineTuning,
    support: Batch,
    support_targets: Batch,
    query: Batch,
    *,
    ways: int | None = None,
    episodes_per_chunk: int = 64,
) -> torch.Tensor:
    """``method`` (a :class:`FineTuning` or :class:`TransductiveFineTuning` with scope
    ``"head"``) on ``E`` episodes of embeddings at once.

    Uses the method's ``temperature``, ``relu``, ``lr``, ``epochs``, ``entropy_weight``,
    ``balance_weight``, ``likelihood_weight``, ``prior_count``, ``adaptive_balance``,
    ``center`` and ``device``; ``batch_size`` and ``seed`` do not change the result
    (every row of an episode fits in one step, and scope ``head`` draws no augmentation).

    Args:
        method: the settings; its ``scope`` must be ``"head"``.
        support: ``[E, S, D]`` support embeddings (or ``E`` tensors ``[S, D]``).
        support_targets: ``[E, S]`` class indices in ``0..K-1``; every episode has every class.
        query: ``[E, Q, D]`` query embeddings (``Q`` may be 0).
        ways: ``K``; default ``max(support_targets) + 1``.
        episodes_per_chunk: episodes trained together (all epochs) before the next chunk;
            the result does not depend on it (each episode's training is independent), only
            the speed and memory do: a small chunk keeps its rows in the CPU caches.

    Returns:
        ``[E, Q, K]`` logits (CPU, float32), columns in class-index order.

    Raises:
        ConfigurationError: a scope other than ``"head"``, or shapes that are not a batch of
            fixed N-way K-shot episodes, or an episode missing a class.
    """
    if not isinstance(method, FineTuning):
        raise ConfigurationError(
            f"method must be a FineTuning / TransductiveFineTuning, got {type(method).__name__}"
        )
    if method.scope != "head":
        raise ConfigurationError(
            f"batched fine-tuning works on cached embeddings, so only scope='head'; got "
            f"scope={method.scope!r}"
        )
    if episodes_per_chunk < 1:
        raise ConfigurationError(f"episodes_per_chunk must be at least 1, got {episodes_per_chunk}")
    s, t, q, k = _prepare(support, support_targets, query, ways, method.device)
    return torch.cat(
        [
            _finetune_chunk(method, s_chunk, t_chunk, q_chunk, k)
            for s_chunk, t_chunk, q_chunk in zip(
                s.split(episodes_per_chunk),
                t.split(episodes_per_chunk),
                q.split(episodes_per_chunk),
                strict=True,
            )
        ]
    )


def _finetune_chunk(
    method: FineTuning, s: torch.Tensor, t: torch.Tensor, q: torch.Tensor, k: int
) -> torch.Tensor:
    """Head fine-tuning of validated episodes ``[E, S, D], [E, S], [E, Q, D]`` -> ``[E, Q, K]``."""
    if method.center:
        center = episode_center_batched(s, q, method.relu)  # [E, 1, D]
        support_n = unit_embeddings(s, relu=method.relu, center=center)
        query_n = unit_embeddings(q, relu=method.relu, center=center)
        weight = _class_means(support_n, t, k, relu=False)
    else:
        support_n = _normalized(s, method.relu)
        query_n = _normalized(q, method.relu)
        weight = _class_means(s, t, k, method.relu)
    if not (method.adaptive_balance and method.balance_weight > 0 and q.shape[1] > 0):
        return _train_chunk(method, method.balance_weight, support_n, t, query_n, weight)
    # Episodes train independently (Adam is element-wise), so re-running a subset of them
    # gives each exactly what a run of all of them would.
    logits = _train_chunk(method, 0.0, support_n, t, query_n, weight)
    counts = F.one_hot(logits.argmax(-1), k).sum(1)  # [E, K]
    balanced = looks_balanced(counts)  # [E] bool, CPU
    if bool(balanced.any()):
        rows = balanced.to(support_n.device)
        logits[balanced] = _train_chunk(
            method, method.balance_weight, support_n[rows], t[rows], query_n[rows], weight[rows]
        )
    return logits


def _train_chunk(
    method: FineTuning,
    balance_weight: float,
    support_n: torch.Tensor,
    t: torch.Tensor,
    query_n: torch.Tensor,
    init_weight: torch.Tensor,
) -> torch.Tensor:
    """One training run from class weights ``init_weight [E, K, D]`` on normalised rows
    ``[E, S, D]`` / ``[E, Q, D]`` with targets ``[E, S]``; query logits ``[E, Q, K]`` (CPU)."""
    episodes, k = init_weight.shape[0], init_weight.shape[1]
    n_support, n_query = support_n.shape[1], query_n.shape[1]
    likelihood = method.likelihood_weight > 0
    query_step = method.entropy_weight > 0 or balance_weight > 0 or likelihood
    weight = init_weight.detach().clone().requires_grad_(True)
    bias = torch.zeros(episodes, k, device=weight.device, requires_grad=not likelihood)
    optimizer = torch.optim.Adam([weight] if likelihood else [weight, bias], lr=method.lr)
    flat_targets = t.reshape(-1)
    temperature = method.temperature
    log_prior = torch.full((episodes, k), -math.log(k), device=weight.device)

    def logits_of(rows: torch.Tensor) -> torch.Tensor:
        w = F.normalize(weight, dim=-1) if likelihood else weight
        return _logits(rows, w, bias, temperature)

    for _ in range(method.epochs):
        optimizer.zero_grad(set_to_none=True)
        logits = logits_of(support_n)
        loss = F.cross_entropy(logits.reshape(-1, k), flat_targets, reduction="sum") / n_support
        loss.backward()
        optimizer.step()
        if query_step and n_query > 0:
            optimizer.zero_grad(set_to_none=True)
            logits = logits_of(query_n)
            log_p = F.log_softmax(logits, dim=-1)  # [E, Q, K]
            p = log_p.exp()
            entropy = -(p * log_p).sum()  # summed over episodes and queries
            loss = method.entropy_weight * entropy / n_query
            if balance_weight > 0:
                marginal = p.mean(1)  # [E, K]
                balance = -(marginal * torch.log(marginal.clamp_min(1e-12))).sum()
                loss = loss - balance_weight * balance
            if likelihood:
                joint = logits + log_prior.unsqueeze(1)
                log_likelihood = torch.logsumexp(joint, dim=-1).sum() / n_query
                loss = loss - method.likelihood_weight * log_likelihood
                responsibilities = F.softmax(joint.detach(), dim=-1).sum(1)  # [E, K]
            loss.backward()
            optimizer.step()
            if likelihood:
                log_prior = estimated_log_prior(responsibilities, n_query, method.prior_count)

    with torch.no_grad():
        if likelihood:
            bias = log_prior
        result = logits_of(query_n)
    return result.float().cpu()


def episode_center_batched(support: torch.Tensor, query: torch.Tensor, relu: bool) -> torch.Tensor:
    """``[E, S, D], [E, Q, D] -> [E, 1, D]``: each episode's mean unit (rectified) embedding."""
    rows = torch.cat([support, query], dim=1)
    return F.normalize(F.relu(rows) if relu else rows, dim=-1).mean(1, keepdim=True)
