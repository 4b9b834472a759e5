"""Methods on embeddings: the checked batch of episodes they take and the classifier they fit.

Support-based initialisation and head fine-tuning need only each image's embedding, so they run
on ``[E, S, D]`` support rows, ``[E, S]`` class indices and ``[E, Q, D]`` query rows: ``E``
episodes that share the support size, the query count and the number of ways ``K`` (one
episode is ``E = 1``; ``[S, D]`` / ``[S]`` / ``[Q, D]`` are read as that). The result is a
:class:`FittedHead`: the fitted cosine classifiers of every episode and their query logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from anyshot.errors import ConfigurationError
from anyshot.methods.cosine import CosineClassifier, cosine_logits, unit_embeddings

__all__ = ["EpisodeRows", "FittedHead", "RowBatch", "episode_rows", "fallback_of"]

#: ``[E, N, D]`` tensor, ``[N, D]`` tensor (one episode) or ``E`` equally shaped ``[N, D]`` ones.
RowBatch = torch.Tensor | Sequence[torch.Tensor]


@dataclass(frozen=True)
class EpisodeRows:
    """A checked batch of episodes on one device.

    Attributes:
        support: ``[E, S, D]`` float32 support embeddings.
        targets: ``[E, S]`` long class indices; every episode has every class ``0..K-1``.
        query: ``[E, Q, D]`` float32 query embeddings (``Q`` may be 0).
        ways: ``K``.
    """

    support: torch.Tensor
    targets: torch.Tensor
    query: torch.Tensor
    ways: int

    def split(self, episodes: int) -> list[EpisodeRows]:
        """Consecutive sub-batches of at most ``episodes`` episodes (only speed and memory
        depend on the split: episodes are independent)."""
        if episodes < 1:
            raise ConfigurationError(f"episodes_per_chunk must be at least 1, got {episodes}")
        return [
            EpisodeRows(s, t, q, self.ways)
            for s, t, q in zip(
                self.support.split(episodes),
                self.targets.split(episodes),
                self.query.split(episodes),
                strict=True,
            )
        ]


def _stack(values: RowBatch, name: str, dims: int) -> torch.Tensor:
    """A ``dims``-D tensor from a tensor (one episode when it has ``dims - 1`` axes) or a
    sequence of equally shaped ``dims - 1``-D ones."""
    if isinstance(values, torch.Tensor):
        tensor = values.unsqueeze(0) if values.dim() == dims - 1 else values
    else:
        parts = list(values)
        if not parts:
            raise ConfigurationError(f"{name}: no episodes given")
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise ConfigurationError(
                f"{name}: episodes differ in shape {sorted(shapes)}; a batch needs fixed N-way "
                "K-shot episodes (the same support size, query size and ways); run variable "
                "episodes one at a time"
            )
        tensor = torch.stack(parts)
    if tensor.dim() != dims:
        raise ConfigurationError(
            f"{name} must be {dims}-D (episodes first) or {dims - 1}-D (one episode), got shape "
            f"{tuple(tensor.shape)}"
        )
    return tensor


def episode_rows(
    support: RowBatch,
    support_targets: RowBatch,
    query: RowBatch,
    *,
    ways: int | None = None,
    device: str | torch.device | None = None,
) -> EpisodeRows:
    """Check and stack a batch of episodes of embeddings.

    Args:
        support: ``[E, S, D]`` (or ``[S, D]``, or ``E`` tensors ``[S, D]``).
        support_targets: ``[E, S]`` integer class indices in ``0..K-1``.
        query: ``[E, Q, D]`` (``Q`` may be 0).
        ways: ``K``; default ``max(support_targets) + 1``.
        device: where to compute; default the support's device.

    Raises:
        ConfigurationError: shapes that are not a batch of fixed N-way K-shot episodes,
            non-integer targets, or an episode missing a class.
    """
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
    counts = torch.nn.functional.one_hot(t, k).sum(1)  # [E, K]
    empty = (counts == 0).nonzero()
    if len(empty):
        e, c = (int(v) for v in empty[0])
        raise ConfigurationError(
            f"episode {e} has no support row of class {c}: every episode of a batch needs all "
            f"{k} ways (targets 0..{k - 1}); run variable-way episodes one at a time"
        )
    return EpisodeRows(s.to(target, torch.float32), t, q.to(target, torch.float32), k)


@dataclass(frozen=True)
class FittedHead:
    """The cosine classifiers fitted on ``E`` episodes of embeddings, and their query logits.

    ``logits(z) = <w, n(z)> / T + b`` per episode, with ``n`` of
    :func:`~anyshot.methods.cosine.unit_embeddings` (centred on ``center`` when set).

    Attributes:
        weight: ``[E, K, D]`` class weights.
        bias: ``[E, K]`` biases (``log pi`` of the likelihood term when it was on).
        center: ``[E, 1, D]`` transductive centres, or ``None``.
        temperature: ``T``: a float, or ``[E]`` float64 (CPU) when episodes differ (after
            :meth:`calibrated`).
        relu: rectify embeddings before normalising.
        normalize_weight: the weights' rows are renormalised before use.
        query_logits: ``[E, Q, K]`` logits of the episodes' query rows (CPU, float32).
        fallback: ``[E]`` bool (CPU): the episodes whose answer is support-based
            initialisation's because a safeguard said so (see
            :func:`anyshot.methods.head.safeguarded`); ``None`` = no safeguard was on.
        gated: ``[E]`` bool (CPU): those of ``fallback`` the gate answered (too few queries;
            the others: the guard); ``None`` = no safeguard was on.
        tsallis: ``[E]`` bool (CPU): the episodes whose trained answer is the Tsallis head's
            (:func:`anyshot.methods.head.parsimonious`); ``None`` = that head was off. An
            episode of ``fallback`` is answered by a safeguard whatever this says.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    center: torch.Tensor | None
    temperature: float | torch.Tensor
    relu: bool
    normalize_weight: bool
    query_logits: torch.Tensor
    fallback: torch.Tensor | None = None
    gated: torch.Tensor | None = None
    tsallis: torch.Tensor | None = None

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[E, N, D]`` embeddings -> ``[E, N, K]`` logits (on the weights' device)."""
        rows = embeddings.to(self.weight.device)
        unit = unit_embeddings(rows, relu=self.relu, center=self.center)
        temperature = self.temperature
        if isinstance(temperature, torch.Tensor):
            temperature = temperature.to(self.weight).view(-1, 1, 1)
        return cosine_logits(
            unit, self.weight, self.bias, temperature, normalize_weight=self.normalize_weight
        )

    def temperatures(self) -> torch.Tensor:
        """``[E]`` float64 (CPU): each episode's ``T``."""
        if isinstance(self.temperature, torch.Tensor):
            return self.temperature
        return torch.full((self.weight.shape[0],), float(self.temperature), dtype=torch.float64)

    def calibrated(
        self,
        confidence_temperature: float | torch.Tensor,
        fallback_temperature: float,
        tsallis_temperature: float | torch.Tensor | None = None,
    ) -> FittedHead:
        """The same classifiers with each episode's logits divided by its ``tau``:
        ``confidence_temperature`` (a float, or ``[E]`` one per episode) for a trained episode
        (the inductive head the gate answers with included), ``fallback_temperature`` for one
        the guard answered with support-init (``fallback`` and not ``gated``), and
        ``tsallis_temperature`` (a float or ``[E]``; ``None`` = ``confidence_temperature``) for
        one the Tsallis head answered (``tsallis`` and not ``fallback``). Temperature
        ``T tau``, bias ``b / tau`` and query logits ``/ tau``, so :meth:`logits` and
        :meth:`classifier` (and a model file of it) give the calibrated logits. Softmax
        confidences change; the argmax does not."""
        episodes = self.weight.shape[0]
        fallback = _mask_or_none(self.fallback, episodes)
        support_init = fallback & ~_mask_or_none(self.gated, episodes)
        tau = torch.as_tensor(confidence_temperature, dtype=torch.float64).cpu().expand(episodes)
        if tsallis_temperature is not None:
            answered = _mask_or_none(self.tsallis, episodes) & ~fallback
            own = torch.as_tensor(tsallis_temperature, dtype=torch.float64).cpu()
            tau = torch.where(answered, own.expand(episodes), tau)
        tau = torch.where(
            support_init, torch.tensor(fallback_temperature, dtype=torch.float64), tau
        )
        if bool((tau == 1.0).all()):
            return self
        return replace(
            self,
            temperature=_collapsed(self.temperatures() * tau),
            bias=self.bias / tau.to(self.bias)[:, None],
            query_logits=self.query_logits / tau.to(self.query_logits)[:, None, None],
        )

    def classifier(self, episode: int = 0) -> CosineClassifier:
        """Episode ``episode``'s classifier as a module ``[B, D] -> [B, K]`` (e.g. to save it).

        With unit class weights the bias holds the estimated ``log pi`` and is not trainable.
        """
        classifier = CosineClassifier(
            self.weight[episode],
            temperature=float(self.temperatures()[episode]),
            relu=self.relu,
            center=None if self.center is None else self.center[episode, 0],
            normalize_weight=self.normalize_weight,
            bias=self.bias[episode],
        )
        classifier.bias.requires_grad_(not self.normalize_weight)
        return classifier

    def explicit(self) -> FittedHead:
        """The same classifiers with ``normalize_weight`` off: renormalised weights stored as
        they are used (identical logits), so heads of either format can be merged."""
        if not self.normalize_weight:
            return self
        unit = torch.nn.functional.normalize(self.weight, dim=-1)
        return replace(self, weight=unit, normalize_weight=False)

    def with_episodes_of(self, other: FittedHead, mask: torch.Tensor) -> FittedHead:
        """This head with ``other``'s classifiers and query logits in the episodes of the
        ``[E]`` bool mask. ``other`` holds either the same ``E`` episodes or just the masked
        ones, in order. An absent centre is zero; heads of different ``normalize_weight`` are
        merged via :meth:`explicit` (unless ``other``'s rows are unit vectors already, as
        support-init's class means are). The ``fallback`` / ``gated`` / ``tsallis`` masks stay
        this head's."""
        if not bool(mask.any()):
            return self
        picked = mask.to(self.weight.device)
        whole = other.weight.shape[0] == mask.shape[0]

        def part(values: torch.Tensor) -> torch.Tensor:
            return values[picked.to(values.device)] if whole else values

        mine, theirs = self, other
        if mine.normalize_weight != theirs.normalize_weight:
            norms = part(theirs.weight).norm(dim=-1)
            unit = not theirs.normalize_weight and bool(
                torch.allclose(norms, torch.ones_like(norms))
            )
            if not unit:  # renormalising unit rows (class means) would change nothing
                mine, theirs = mine.explicit(), theirs.explicit()

        weight, bias = mine.weight.clone(), mine.bias.clone()
        weight[picked], bias[picked] = part(theirs.weight), part(theirs.bias)
        center = None
        if mine.center is not None or theirs.center is not None:
            center = _center_or_zero(mine).clone()
            center[picked] = part(_center_or_zero(theirs))
        query_logits = mine.query_logits.clone()
        query_logits[mask] = part(theirs.query_logits)
        return replace(mine, weight=weight, bias=bias, center=center, query_logits=query_logits)

    def take(self, index: torch.Tensor) -> FittedHead:
        """The episodes ``index`` (``[E']`` long) of this head, in that order."""

        def pick(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else values[index.to(values.device)]

        temperature = self.temperature
        if isinstance(temperature, torch.Tensor):
            temperature = _collapsed(temperature[index])
        return replace(
            self,
            weight=self.weight[index.to(self.weight.device)],
            bias=self.bias[index.to(self.bias.device)],
            center=pick(self.center),
            temperature=temperature,
            query_logits=self.query_logits[index],
            fallback=pick(self.fallback),
            gated=pick(self.gated),
            tsallis=pick(self.tsallis),
        )

    @staticmethod
    def concatenate(parts: Sequence[FittedHead]) -> FittedHead:
        """One :class:`FittedHead` of the episodes of ``parts``, in order.

        Parts may differ in format (a chunk that support-based initialisation or the inductive
        head answered has no centre or free weights; a trained transductive one has a centre
        and renormalised weights): an absent centre becomes zero (no centring), and parts of
        different ``normalize_weight`` are merged via :meth:`explicit`, so every episode's
        logits stay its own.
        """
        if len({p.normalize_weight for p in parts}) > 1:
            parts = [p.explicit() for p in parts]
        first = parts[0]
        centred = any(p.center is not None for p in parts)
        return FittedHead(
            weight=torch.cat([p.weight for p in parts]),
            bias=torch.cat([p.bias for p in parts]),
            center=torch.cat([_center_or_zero(p) for p in parts]) if centred else None,
            temperature=_collapsed(torch.cat([p.temperatures() for p in parts])),
            relu=first.relu,
            normalize_weight=first.normalize_weight,
            query_logits=torch.cat([p.query_logits for p in parts]),
            fallback=_cat_masks([p.fallback for p in parts], parts),
            gated=_cat_masks([p.gated for p in parts], parts),
            tsallis=_cat_masks([p.tsallis for p in parts], parts),
        )


def fallback_of(fitted: FittedHead, episode: int = 0) -> str | None:
    """Which safeguard answered episode ``episode`` with support-based initialisation:
    ``"gate"``, ``"guard"``, or ``None`` (trained, or no safeguard on)."""
    if fitted.fallback is None or not bool(fitted.fallback[episode]):
        return None
    return "gate" if fitted.gated is not None and bool(fitted.gated[episode]) else "guard"


def answer_of(fitted: FittedHead, episode: int = 0) -> str | None:
    """Which head answered episode ``episode``: ``"gate"`` / ``"guard"`` (a safeguard,
    :func:`fallback_of`: it wins over the others), ``"tsallis"`` (the Tsallis head: its mask
    ``tsallis``) or ``"first"`` (the transductive head itself); ``None`` when the head was
    fitted without the safeguards and without a Tsallis choice (nothing else could have
    answered)."""
    if fitted.fallback is None and fitted.tsallis is None:
        return None
    fallback = fallback_of(fitted, episode)
    if fallback is not None:
        return fallback
    return "tsallis" if fitted.tsallis is not None and bool(fitted.tsallis[episode]) else "first"


def _collapsed(temperatures: torch.Tensor) -> float | torch.Tensor:
    """``[E]`` temperatures as one float when they are all equal (as the methods fit them)."""
    if bool((temperatures == temperatures[0]).all()):
        return float(temperatures[0])
    return temperatures


def _center_or_zero(part: FittedHead) -> torch.Tensor:
    """``part``'s ``[E, 1, D]`` centres, zeros (no centring) when it has none."""
    if part.center is not None:
        return part.center
    episodes, _, dim = part.weight.shape
    return part.weight.new_zeros(episodes, 1, dim)


def _mask_or_none(mask: torch.Tensor | None, episodes: int) -> torch.Tensor:
    """``mask`` (``[E]`` bool, CPU), or all-false ``[E]`` when it is ``None``."""
    return torch.zeros(episodes, dtype=torch.bool) if mask is None else mask


def _cat_masks(
    masks: list[torch.Tensor | None], parts: Sequence[FittedHead]
) -> torch.Tensor | None:
    """The ``[E]`` bool masks of ``parts`` in order (all-false for a part without one), or
    ``None`` when no part has one."""
    if all(mask is None for mask in masks):
        return None
    return torch.cat(
        [
            torch.zeros(p.weight.shape[0], dtype=torch.bool) if m is None else m
            for m, p in zip(masks, parts, strict=True)
        ]
    )
