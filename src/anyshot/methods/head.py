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

With ``tsallis_head`` a second head is fine-tuned beside it, with alpha-TIM's query terms
(:meth:`HeadTraining.tsallis`), and an episode takes its answer where it explains the queries
with clearly fewer classes (:func:`parsimonious`): queries of a few of many support classes,
which the likelihood term's proportions leave spread over absent classes when the backbone
separates the classes poorly. With ``tsallis_gated`` it may also answer an episode the gate
closed, by the same rule against the gate's answer (:func:`safeguarded`).

Two safeguards answer an episode without its queries (:func:`safeguarded`, the one place they
live, used here and by scopes ``last`` / ``all``): the *gate* keeps no answer trained with the
queries when an episode has too few per class they appear to hold (those the trained head
predicts) for the query terms to be trusted (``min_queries_per_class``, plus
``queries_per_shot`` per labelled image per class): here it answers with the inductive head
(support cross-entropy alone, :meth:`HeadTraining.inductive`), unless ``tsallis_gated`` gives
the episode the Tsallis head's answer, on whose count the gate opens; the
*guard* replaces a trained head whose predicted query classes agree with support-init's on too
few queries (``min_agreement``) by support-based initialisation, in episodes where
support-init's predictions cover the classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from anyshot.methods.adam import Adam
from anyshot.methods.balance import looks_balanced
from anyshot.methods.cosine import (
    class_means,
    cosine_logits,
    run_centers,
    transductive_center,
    unit_embeddings,
)
from anyshot.methods.features import EpisodeRows, FittedHead
from anyshot.methods.objective import (
    QueryWeights,
    class_balanced_weights,
    estimated_log_prior,
    query_loss,
    support_loss,
    uniform_log_prior,
)
from anyshot.outliers import (
    covering,
    covering_centre,
    effective_classes,
    outlier_distance,
    unknown_threshold,
)

__all__ = [
    "HeadTraining",
    "fit_head",
    "gate_closes",
    "inlier_queries",
    "parsimonious",
    "predicted_classes",
    "queries_look_balanced",
    "safeguarded",
    "support_init_head",
    "tsallis_against_gate",
    "tsallis_order",
    "with_query_prior",
    "with_shared_spread",
]


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
        unequal_balance_test: see :func:`queries_look_balanced`.
        center: centre each episode's rows (on the centre ``center_on`` chooses).
        center_on: ``"episode"`` (mean unit embedding of the support and query rows) or
            ``"support"`` (mean of the support's unit class means); see
            :func:`anyshot.methods.cosine.transductive_center`.
        empirical_bayes: the proportions' pseudo-count is estimated per episode and step
            (``prior_count`` unused); see :func:`anyshot.methods.objective.estimated_log_prior`.
        min_queries_per_class: the gate of :func:`safeguarded`: queries needed per predicted
            class (0 = off).
        queries_per_shot: the gate's extra queries needed per predicted class for each
            labelled image per class (0 = off).
        min_agreement: the guard of :func:`safeguarded` (0 = off).
        gate_outlier_rate: the gate counts only the queries the unknown rule does not flag at
            this false-alarm rate (:func:`inlier_queries`), and the classes predicted for them
            (0 = every query counts): images of none of the classes are no evidence of how the
            classes' images lie.
        outlier_rate: the query terms leave out the queries that the unknown rule flags at
            this false-alarm rate (:func:`inlier_queries`; 0 = off).
        outlier_alarm: with ``outlier_rate``, leave them out only in an episode whose queries
            are flagged more often than the rate explains: a one-sided binomial test of the
            flagged count against ``Q x outlier_rate`` at this significance level
            (:func:`outlier_alarm`; 0 = always leave them out).
        tsallis_head: also fine-tune :meth:`tsallis`'s head and answer with it in the
            episodes where this head predicts fewer than ``tsallis_share`` of the classes for
            the queries and it more than ``tsallis_margin`` fewer still (:func:`parsimonious`).
        tsallis_margin: see ``tsallis_head``.
        tsallis_share: see ``tsallis_head``.
        tsallis_band: with ``tsallis_head``, an episode of at least 2 labelled images per
            class (``S / K``) where this head predicts a share of the classes in
            ``[low, high)`` (the effective number over ``K``) takes the Tsallis head's answer
            whatever its class count; ``(0, 0)`` = none.
        tsallis_gated: with ``tsallis_head``, the Tsallis head also challenges the gate's
            answer, by the same rule (:func:`parsimonious` against the gate's answer), where
            the gate opens on its class count, it agrees with the gate's answer on at least
            ``min_agreement`` of the queries and support-init's predictions do not cover the
            classes (:func:`safeguarded`, :func:`tsallis_against_gate`).
        gate_prior_share: an episode the gate answers with the inductive head gets the class
            proportions its queries' predictions imply where they hold fewer than this share
            of the classes (:func:`with_query_prior`; 0 = off): its class directions stay
            those of the support, only their prior moves.
        shared_spread: a run on uncentred rows (the inductive head, the Tsallis head) fills
            the classes of fewer labelled images up to the largest class's count with rows of
            the support's shared within-class spread (:func:`with_shared_spread`); no change
            where the classes have equally many, nor in a centred run.
        balanced_support: every class weighs the same in the support cross-entropy whatever
            its number of labelled images (:func:`~anyshot.methods.objective.
            class_balanced_weights`; no change where the classes have equally many).
    """

    temperature: float
    relu: bool
    lr: float
    epochs: int
    weights: QueryWeights
    prior_count: float = 0.0
    adaptive_balance: bool = False
    center: bool = False
    center_on: str = "episode"
    empirical_bayes: bool = False
    min_queries_per_class: float = 0.0
    queries_per_shot: float = 0.0
    min_agreement: float = 0.0
    gate_outlier_rate: float = 0.0
    outlier_rate: float = 0.0
    outlier_alarm: float = 0.0
    tsallis_head: bool = False
    tsallis_margin: float = 0.5
    tsallis_share: float = 0.75
    tsallis_band: tuple[float, float] = (0.0, 0.0)
    tsallis_gated: bool = False
    gate_prior_share: float = 0.0
    balanced_support: bool = False
    unequal_balance_test: bool = False
    shared_spread: bool = False

    def inductive(self) -> HeadTraining:
        """The same loop without anything that reads the queries: no query term, no centring,
        no Tsallis head and no safeguard (what :meth:`anyshot.methods.FineTuning.inductive`
        trains)."""
        return replace(
            self,
            weights=QueryWeights(),
            prior_count=0.0,
            adaptive_balance=False,
            unequal_balance_test=False,
            center=False,
            center_on="episode",
            empirical_bayes=False,
            min_queries_per_class=0.0,
            queries_per_shot=0.0,
            min_agreement=0.0,
            gate_outlier_rate=0.0,
            outlier_rate=0.0,
            outlier_alarm=0.0,
            tsallis_head=False,
            tsallis_gated=False,
            gate_prior_share=0.0,
        )

    def tsallis(self, shots: float) -> HeadTraining:
        """alpha-TIM's query terms in this loop (same temperature, learning rate and epochs):
        the mean prediction entropy and the balance term, weight 1 each, of Tsallis order
        :func:`tsallis_order` ``(shots)``, on uncentred rows, nothing else that reads the
        queries (no likelihood term, no safeguard). ``shots`` = the smallest class's labelled
        images."""
        weights = QueryWeights(entropy=1.0, balance=1.0, order=tsallis_order(shots))
        return replace(self.inductive(), weights=weights)

    @property
    def safeguards(self) -> bool:
        """Whether the gate or the guard of :func:`safeguarded` is on."""
        gate = self.min_queries_per_class > 0 or self.queries_per_shot > 0
        return gate or self.min_agreement > 0


def tsallis_order(shots: float) -> float:
    """alpha-TIM's tuned Tsallis orders (the authors' code, ``use_tuned_alpha_values``): 2 at
    one labelled image per class, 7 from five, 5 between. ``shots`` is the smallest class's
    labelled images, as the authors' code counts (on val supports of unequal classes the mean
    ``S / K`` lost up to 7.2 points: ``studies/unbalanced-support/``)."""
    return 2.0 if shots <= 1 else 7.0 if shots >= 5 else 5.0


def parsimonious(
    head: FittedHead,
    rival: Callable[[torch.Tensor], FittedHead],
    margin: float,
    share: float,
    accept: Callable[[torch.Tensor, FittedHead], torch.Tensor] | None = None,
    band: torch.Tensor | None = None,
) -> FittedHead:
    """``head``, with a rival's answer in the episodes where ``head`` predicts fewer than
    ``share`` of the ``K`` classes for the queries and the rival more than ``margin`` fewer
    still (both counted by :func:`predicted_classes`): where the queries seem to hold a part of
    the classes, the explanation with clearly fewer of them. ``rival([E] bool mask)`` gives the
    rival's head of the masked episodes only (it is trained for those alone). On validation
    classes (``studies/alpha-head/``) the Tsallis head's answer is then the more accurate
    (queries of a few of many support classes); where the queries cover the classes (balanced,
    many ways) it can merge classes, which ``share`` rules out. The result's ``tsallis`` mask
    holds the episodes given the rival's answer (``None`` when no episode was a candidate).
    ``accept(candidates [E] bool, rival's head of them) -> [E'] bool``, when given, must also
    hold for an episode to take the rival's answer. ``band`` (``[E]`` bool), when given: these
    episodes take the rival's answer whatever its class count."""
    own = predicted_classes(head.query_logits)  # [E]
    # at least one class is always predicted: the rival cannot win with 1 + margin or fewer
    candidates = (own < share * head.query_logits.shape[-1]) & (own > 1 + margin)
    if band is not None:
        candidates = candidates | band
    if not bool(candidates.any()):
        return head
    other = rival(candidates)
    fewer = predicted_classes(other.query_logits) < own[candidates] - margin  # [E']
    if accept is not None:
        fewer = fewer & accept(candidates, other)
    if band is not None:
        fewer = fewer | band[candidates]
    chosen = candidates.clone()
    chosen[candidates] = fewer
    merged = head.with_episodes_of(other.take(fewer.nonzero().squeeze(1)), chosen)
    return replace(merged, tsallis=chosen)


def support_init_head(rows: EpisodeRows, temperature: float, relu: bool) -> FittedHead:
    """Support-based initialisation (no training): class means as weights, zero bias."""
    weight = class_means(rows.support, rows.targets, rows.ways, relu=relu)
    bias = torch.zeros(weight.shape[:2], device=weight.device)
    query = unit_embeddings(rows.query, relu=relu)
    logits = cosine_logits(query, weight, bias, temperature)
    return FittedHead(weight, bias, None, temperature, relu, False, logits.float().cpu())


def fit_head(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """Fine-tune the cosine head of every episode of ``rows``; see the module doc."""
    if training.outlier_rate > 0 and rows.query.shape[1] > 0:
        return _without_outliers(training, rows)
    return _fit_safeguarded(training, rows)


def inlier_queries(rows: EpisodeRows, rate: float, relu: bool) -> torch.Tensor:
    """``[E, Q]`` bool: the queries at or below the unknown threshold of their episode's
    support (:func:`anyshot.outliers.unknown_threshold` at false-alarm rate ``rate``, on the
    product's score, :func:`anyshot.outliers.outlier_distance`, centred where the queries cover
    the classes: :func:`anyshot.outliers.covering_centre`): those the product would not call
    unknown."""
    centre, covered = covering_centre(rows.support, rows.targets, rows.query, rows.ways, relu=relu)
    distance = outlier_distance(
        rows.support, rows.targets, rows.query, rows.ways, relu=relu, centre=centre
    )
    thresholds = [
        unknown_threshold(support, targets, rows.ways, rate, relu=relu, centre=c if k else None)
        for support, targets, c, k in zip(
            rows.support.cpu(), rows.targets.cpu(), centre.cpu(), covered.tolist(), strict=True
        )
    ]
    return distance <= torch.tensor(thresholds, device=distance.device).unsqueeze(1)


def outlier_alarm(flagged: torch.Tensor, rate: float, level: float) -> torch.Tensor:
    """``[E, Q]`` bool flags -> ``[E]`` bool: whether an episode's queries are flagged more
    often than a share ``rate`` of images of its classes would be: the one-sided binomial
    p-value ``P(Binomial(Q, rate) >= flagged count)`` is below ``level``."""
    queries = flagged.shape[1]
    counts = flagged.sum(1).double().cpu()
    total = torch.full_like(counts, float(queries))
    binomial = torch.distributions.Binomial(total_count=total, probs=torch.tensor(rate))
    support = torch.arange(queries + 1, dtype=torch.float64)  # [Q + 1]
    pmf = binomial.log_prob(support.unsqueeze(1)).exp()  # [Q + 1, E]
    tail = (pmf * (support.unsqueeze(1) >= counts)).sum(0)  # [E]
    return (tail < level).to(flagged.device)


def _without_outliers(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """:func:`fit_head` with the queries :func:`inlier_queries` keeps as the query set (the gate
    counts them alone); ``query_logits`` still cover every query. Episodes that keep as many
    queries are trained together."""
    keep = inlier_queries(rows, training.outlier_rate, training.relu)  # [E, Q]
    if training.outlier_alarm > 0:  # only where the flags say the queries hold outliers
        alarm = outlier_alarm(~keep, training.outlier_rate, training.outlier_alarm)
        keep = keep | ~alarm.unsqueeze(1)
    counts = keep.sum(1)
    plain = replace(training, outlier_rate=0.0)  # the gate still counts the unflagged of them
    parts, order = [], []
    for count in counts.unique().tolist():
        chosen = (counts == count).nonzero().squeeze(1)
        query = rows.query[chosen]  # [E', Q, D]
        kept = query[keep[chosen]].view(len(chosen), int(count), query.shape[-1])
        group = EpisodeRows(rows.support[chosen], rows.targets[chosen], kept, rows.ways)
        fitted = _fit_safeguarded(plain, group)
        with torch.no_grad():
            every = fitted.logits(query).float().cpu()  # [E', Q, K]
        parts.append(replace(fitted, query_logits=every))
        order.append(chosen.cpu())
    return FittedHead.concatenate(parts).take(torch.argsort(torch.cat(order)))


def _fit_safeguarded(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """:func:`fit_head` on the given queries."""
    inductive = training.inductive()
    fitted, fallback, gated = safeguarded(
        training, rows, inductive=lambda chosen: _fit(inductive, chosen)
    )
    return replace(fitted, fallback=fallback, gated=gated) if training.safeguards else fitted


def predicted_classes(query_logits: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """``[E, Q, K]`` logits -> ``[E]`` float: the effective number of classes the ``Q`` queries
    of each episode (those of the ``[E, Q]`` bool ``keep``, when given) are predicted to hold
    (:func:`anyshot.outliers.effective_classes` of the argmax)."""
    return effective_classes(query_logits.argmax(-1), query_logits.shape[-1], keep)


def gate_closes(
    min_queries_per_class: float,
    queries_per_shot: float,
    queries: int | torch.Tensor,
    shots: float,
    classes: torch.Tensor,
) -> torch.Tensor:
    """``[E]`` bool: whether :func:`safeguarded`'s gate answers each episode without its queries.

    ``queries`` = ``Q``, or ``[E]`` counts (the queries each episode's gate counts); ``shots``
    = labelled images per class (``S / K``); ``classes`` ``[E]`` = the effective number of
    classes the trained head predicts for the queries (:func:`predicted_classes`). The gate
    closes on fewer than ``m + s * shots`` queries per predicted class (``m`` =
    ``min_queries_per_class``, ``s`` = ``queries_per_shot``), or on at most one query, when
    ``m`` or ``s`` is positive.
    """
    if min_queries_per_class <= 0 and queries_per_shot <= 0:
        return torch.zeros(classes.shape, dtype=torch.bool)
    needed = min_queries_per_class + queries_per_shot * shots
    return (queries < needed * classes) | (queries <= 1)


def gate_shots(rows: EpisodeRows) -> float:
    """The labelled images per class the gate's per-shot term counts: ``S / K``."""
    return rows.support.shape[1] / rows.ways


def safeguarded(
    training: HeadTraining,
    rows: EpisodeRows,
    train: Callable[[EpisodeRows], FittedHead] | None = None,
    inductive: Callable[[EpisodeRows], FittedHead] | None = None,
) -> tuple[FittedHead, torch.Tensor, torch.Tensor]:
    """Head fine-tuning of ``rows`` (or ``train``), with another answer where the gate or the
    guard says so; returns ``(head, fallback, gated)``, ``[E]`` bool (CPU) masks of the episodes
    not answered by training and of those the gate answered (the others of ``fallback``: the
    guard).

    * gate (:func:`gate_closes`): an episode with fewer than ``min_queries_per_class +
      queries_per_shot * S / K`` queries per class that head fine-tuning of ``rows`` (the
      query terms on) predicts for them, or at most one query, keeps no answer trained with
      its queries: it gets ``inductive(its rows)`` (fine-tuning on the support alone; with
      ``gate_prior_share``, plus the class proportions its query predictions imply,
      :func:`with_query_prior`), or support-init's answer when ``inductive`` is ``None``. The
      trained head's class proportions let classes absent from the queries vanish, where
      support-init spreads its predictions over them when the backbone separates the classes
      poorly (``studies/present-gate/``). With fewer queries than one class needs, nothing is
      trained. With ``tsallis_head`` and ``tsallis_gated`` (scope ``head``: ``train`` is
      ``None`` and ``inductive`` given), a gated episode whose support-init predictions do
      not cover the classes (:func:`anyshot.outliers.covering`) gets the Tsallis head's
      answer where :func:`tsallis_against_gate` says so, and is no longer gated (the guard
      then sees it as trained);
    * guard: a trained episode whose predicted query classes agree with support-init's on
      fewer than a fraction ``min_agreement`` of its queries gets support-init's answer, where
      support-init's predictions cover the classes (:func:`anyshot.outliers.covering`: spread
      over at least 3/4 of them). On queries of a few of many classes support-init spreads
      over absent ones, so a correct trained head disagrees with it by design: there the
      guard only took good answers away (``studies/guard-scope/``). An episode without
      queries, or with fewer than 3/4 ``K`` (never covering), always passes: the gate answers
      small query sets.

    ``train`` (``None`` = that head fine-tuning itself, the answer of scope ``head``) and
    ``inductive`` get the rows of their episodes only (``E' <= E``). Support-init here is
    :func:`support_init_head` of ``rows`` at ``training``'s temperature and ReLU: an episode
    answered by it gets exactly its class-mean weights, zero bias and query logits. The heads
    are merged with :meth:`FittedHead.with_episodes_of` (every episode keeps its logits). With
    both safeguards off, this is the training alone.
    """
    episodes = rows.support.shape[0]
    if not training.safeguards:
        none = torch.zeros(episodes, dtype=torch.bool)
        return (_fit_either(training, rows) if train is None else train(rows)), none, none
    base = support_init_head(rows, training.temperature, training.relu)
    queries, shots = rows.query.shape[1], gate_shots(rows)
    m, s = training.min_queries_per_class, training.queries_per_shot
    counted: int | torch.Tensor = queries  # the queries the gate counts
    keep = None  # and which they are: all, or the unflagged
    if training.gate_outlier_rate > 0 and queries > 0 and (m > 0 or s > 0):
        keep = inlier_queries(rows, training.gate_outlier_rate, training.relu).cpu()
        counted = keep.sum(1)
    gated = gate_closes(m, s, counted, shots, torch.ones(episodes))  # even one class: too few
    probe = None  # head fine-tuning of the rows: the gate's class count, or the answer
    if not bool(gated.all()) and (m > 0 or s > 0 or train is None):
        probe = _fit_either(training, rows)  # the Tsallis head's where it answers (band too)
        classes = predicted_classes(probe.query_logits, keep)
        gated = gate_closes(m, s, counted, shots, classes)
    answer = base
    if inductive is not None and bool(gated.any()):
        fallback = inductive(_episodes(rows, gated))
        if training.gate_prior_share > 0 and queries > 1:
            fallback = with_query_prior(
                fallback, None if keep is None else keep[gated], training.gate_prior_share
            )
        if probe is not None and train is None and training.tsallis_head and training.tsallis_gated:
            probe, fallback, gated = _rescued(training, rows, base, probe, fallback, gated, keep)
        if bool(gated.any()):
            answer = base.with_episodes_of(fallback, gated)
    if bool(gated.all()):
        return answer, gated.clone(), gated
    kept = ~gated
    if train is None:
        assert probe is not None  # computed whenever the gate let an episode through
        trained = probe
    elif bool(kept.all()):
        trained = train(rows)
    else:
        trained = answer.with_episodes_of(train(_episodes(rows, kept)), kept)
    guard = torch.zeros(episodes, dtype=torch.bool)
    if queries > 0:
        nearest = base.query_logits.argmax(-1)  # [E, Q]
        agreement = (trained.query_logits.argmax(-1) == nearest).float().mean(1)
        guard = kept & covering(nearest, rows.ways) & (agreement < training.min_agreement)
    return trained.with_episodes_of(answer, gated | guard), gated | guard, gated


def tsallis_against_gate(
    training: HeadTraining,
    rows: EpisodeRows,
    answer: FittedHead,
    counted: int | torch.Tensor,
    keep: torch.Tensor | None,
) -> FittedHead:
    """The gate's ``answer`` of the episodes of ``rows`` (every one gated), challenged by the
    Tsallis head (:meth:`HeadTraining.tsallis`) as :func:`parsimonious` challenges the first
    head: the Tsallis head's answer where ``answer`` predicts fewer than ``tsallis_share`` of
    the ``K`` classes for the queries, the Tsallis head more than ``tsallis_margin`` fewer
    still, the gate opens on the Tsallis head's count (:func:`gate_closes` with ``counted``,
    ``[E]`` or one count of the queries it counts, ``keep`` ``[E, Q]`` bool, ``None`` = all),
    and the two answers agree on at least ``min_agreement`` of the queries. Class counts and
    agreement are over every query, the gate's test over the queries it counts, as the gate's
    own; :func:`safeguarded` challenges only the episodes whose support-init predictions do not
    cover the classes. The result's ``tsallis`` mask holds the episodes given the Tsallis
    head's answer.

    Why: the gate closes on the count of the head it was given, and the first head can spread
    its predictions over most classes where the queries hold a few of them (on val,
    mini-ImageNet 16-way one-shot with 5 present classes: 13.8 classes predicted in the gated
    episodes, 6.7 by the Tsallis head; ``studies/present-five/``). The agreement (the guard's
    share) keeps the gate's answer where the Tsallis head merges classes it keeps apart: on
    val, Omniglot 160-way one-shot (5 queries per class) fell below support-init without it,
    the Tsallis head agreeing on 44-45% of the queries in the two episodes it took there; the
    36 it took on mini-ImageNet 16-way one-shot with 3 or 5 present classes agreed on 52-87%."""
    shots = gate_shots(rows)

    def opens_and_agrees(candidates: torch.Tensor, rival: FittedHead) -> torch.Tensor:
        count = counted if isinstance(counted, int) else counted[candidates]
        classes = predicted_classes(rival.query_logits, None if keep is None else keep[candidates])
        m, s = training.min_queries_per_class, training.queries_per_shot
        own = answer.query_logits[candidates].argmax(-1)  # [E', Q]
        agreement = (rival.query_logits.argmax(-1) == own).float().mean(1)
        return ~gate_closes(m, s, count, shots, classes) & (agreement >= training.min_agreement)

    return parsimonious(
        answer,
        lambda mask: _fit_tsallis(training, _episodes(rows, mask)),
        training.tsallis_margin,
        training.tsallis_share,
        accept=opens_and_agrees,
    )


def _rescued(
    training: HeadTraining,
    rows: EpisodeRows,
    base: FittedHead,
    probe: FittedHead,
    fallback: FittedHead,
    gated: torch.Tensor,
    keep: torch.Tensor | None,
) -> tuple[FittedHead, FittedHead, torch.Tensor]:
    """:func:`safeguarded`'s ``(probe, fallback, gated)`` after :func:`tsallis_against_gate`
    challenged the gate's answers (``fallback``, of the ``[E]`` bool ``gated`` episodes) where
    support-init's predictions (``base``'s) do not cover the classes (:func:`covering`, the
    guard's test): the rule is for queries of a few of many classes, and where they hold most
    of them the Tsallis head can merge classes. An episode the probe already answered with the
    Tsallis head was gated on that head's own count and is not challenged again. The probe
    takes the Tsallis head's answers of the episodes it won, marked in its ``tsallis`` mask;
    they leave ``gated`` and ``fallback``."""
    eligible = gated & ~covering(base.query_logits.argmax(-1), rows.ways)  # [E]
    if probe.tsallis is not None:
        eligible = eligible & ~probe.tsallis
    if not bool(eligible.any()):
        return probe, fallback, gated
    within = eligible[gated]  # [G]: which gated episodes are eligible
    challenged = tsallis_against_gate(
        training,
        _episodes(rows, eligible),
        fallback.take(within.nonzero().squeeze(1)),
        rows.query.shape[1] if keep is None else keep[eligible].sum(1),
        None if keep is None else keep[eligible],
    )
    if challenged.tsallis is None or not bool(challenged.tsallis.any()):
        return probe, fallback, gated
    rescued = eligible.clone()
    rescued[eligible] = challenged.tsallis
    chosen = challenged.take(challenged.tsallis.nonzero().squeeze(1))
    probe = probe.with_episodes_of(chosen, rescued)
    probe = replace(probe, tsallis=rescued if probe.tsallis is None else probe.tsallis | rescued)
    left = ~rescued[gated]  # [G]
    return probe, fallback.take(left.nonzero().squeeze(1)), gated & ~rescued


#: EM steps of :func:`with_query_prior`.
PRIOR_STEPS = 20


def with_query_prior(head: FittedHead, keep: torch.Tensor | None, share: float) -> FittedHead:
    """``head`` with the class proportions its own query predictions imply added to its bias
    and query logits: ``pi`` re-estimated from the queries' posteriors under ``logits + log pi``
    (the EM of Saerens et al., Neural Computation 2002, for a shift of the class prior), with
    each episode's empirical-Bayes pseudo-count (:func:`estimated_log_prior`), so classes the
    queries do not hold lose weight and queries that cover the classes keep nearly uniform
    proportions. ``keep`` ``[E, Q]`` bool: the queries that count (``None`` = all). Only in
    episodes whose queries the head predicts to hold fewer than ``share`` of the ``K`` classes
    (:func:`anyshot.outliers.effective_classes`); elsewhere ``head`` is returned unchanged:
    where the predictions spread over most classes the proportions would only follow the
    head's own errors (on val, Omniglot 160-way one-shot fell below support-init at share 3/4,
    not at 1/2; ``studies/gate-prior/``)."""
    logits = head.query_logits.double()  # [E, Q, K]
    ways = logits.shape[-1]
    few = effective_classes(logits.argmax(-1), ways, keep) < share * ways  # [E]
    if not bool(few.any()):
        return head
    mask = torch.ones(logits.shape[:2], dtype=torch.bool) if keep is None else keep
    weight = mask.to(logits.dtype).unsqueeze(-1)  # [E, Q, 1]
    counted = weight.sum(1)  # [E, 1]
    log_pi = torch.zeros_like(logits[:, 0])  # [E, K]
    for _ in range(PRIOR_STEPS):
        posterior = (logits + log_pi.unsqueeze(1)).softmax(-1)
        soft_counts = (posterior * weight).sum(1)  # [E, K]
        log_pi = estimated_log_prior(soft_counts, counted, 0.0, empirical_bayes=True)
    # centred (softmax ignores a shift), and zero in the episodes left as they are
    log_pi = (log_pi - log_pi.mean(-1, keepdim=True)) * few.to(log_pi.dtype).unsqueeze(-1)
    bias = head.bias + log_pi.to(head.bias.device, head.bias.dtype)
    query_logits = (logits + log_pi.unsqueeze(1)).to(head.query_logits.dtype)
    return replace(head, bias=bias, query_logits=query_logits)


def _episodes(rows: EpisodeRows, mask: torch.Tensor) -> EpisodeRows:
    """The episodes of ``rows`` in the ``[E]`` bool mask."""
    picked = mask.to(rows.support.device)
    return EpisodeRows(rows.support[picked], rows.targets[picked], rows.query[picked], rows.ways)


def _fit_either(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """:func:`_fit`, or with ``tsallis_head`` the :func:`parsimonious` choice between it and
    the Tsallis head's fine-tuning, per episode."""
    fitted = _fit(training, rows)
    if not training.tsallis_head or rows.query.shape[1] == 0:
        return fitted
    shots = rows.support.shape[1] / rows.ways
    low, high = training.tsallis_band
    band = None
    if shots >= 2 and high > low:
        share = predicted_classes(fitted.query_logits) / rows.ways  # [E]
        band = (share >= low) & (share < high)
    return parsimonious(
        fitted,
        lambda mask: _fit_tsallis(training, _episodes(rows, mask)),
        training.tsallis_margin,
        training.tsallis_share,
        band=band,
    )


def class_counts(labels: torch.Tensor, ways: int) -> torch.Tensor:
    """``[E, N]`` class indices (labels or argmax predictions) -> ``[E, K]`` long counts."""
    return F.one_hot(labels, ways).sum(1)


def fewest_shots(rows: EpisodeRows) -> torch.Tensor:
    """``[E]`` long (CPU): the labelled images of each episode's smallest class."""
    return class_counts(rows.targets, rows.ways).amin(-1).cpu()


def _by_group(
    keys: torch.Tensor, rows: EpisodeRows, fit: Callable[[EpisodeRows, int], FittedHead]
) -> FittedHead:
    """``fit(episodes, first)`` for the episodes of each value of ``keys`` (``[E]``, CPU;
    ``first`` = the index of the group's first episode), put back in the episodes' order:
    episodes that cannot train together (different settings or shapes) train apart."""
    if bool((keys == keys[0]).all()):
        return fit(rows, 0)
    parts, index = [], []
    for key in keys.unique():
        members = (keys == key).nonzero().squeeze(1)
        parts.append(fit(_episodes(rows, keys == key), int(members[0])))
        index.append(members)
    return FittedHead.concatenate(parts).take(torch.cat(index).argsort())


def _fit_tsallis(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """The Tsallis head (:meth:`HeadTraining.tsallis`) of every episode of ``rows``, of the
    order its smallest class's labelled images set; episodes of one order train together."""
    fewest = fewest_shots(rows)
    orders = torch.tensor([tsallis_order(float(n)) for n in fewest])
    return _by_group(
        orders, rows, lambda chosen, first: _fit(training.tsallis(float(fewest[first])), chosen)
    )


def fills(training: HeadTraining) -> bool:
    """Whether a run fills up its support (:func:`with_shared_spread`): with ``shared_spread``,
    on uncentred rows. The main transductive head, centred, trains on the support as it is: on
    the val grid's unequal supports with balanced queries, filling it too cost up to 1.2
    points, where filling the others alone lowered none by more than 0.05
    (``studies/unbalanced-support/``)."""
    return training.shared_spread and not training.center


def _fit(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """Head fine-tuning of every episode of ``rows``, without the safeguards and the Tsallis
    head; where the run :func:`fills` its support, episodes whose largest classes differ in
    size train apart (:func:`with_shared_spread` fills them to different sizes)."""
    if not fills(training):
        return _fit_together(training, rows)
    largest = class_counts(rows.targets, rows.ways).amax(-1).cpu()
    return _by_group(largest, rows, lambda chosen, _: _fit_together(training, chosen))


def _fit_together(training: HeadTraining, rows: EpisodeRows) -> FittedHead:
    """:func:`_fit` of episodes that train together (where the run fills its support, their
    largest classes have equally many labelled images)."""
    first_on, second_on = run_centers(training.center_on)
    center, units, weight = _initial(training, rows, first_on)
    weights = training.weights
    if not (training.adaptive_balance and weights.balance > 0 and rows.query.shape[1] > 0):
        return _with_center(_train(training, weights, units, weight), center)
    first = _with_center(_train(training, replace(weights, balance=0.0), units, weight), center)
    balanced = queries_look_balanced(training, first.query_logits, rows)  # [E] bool, CPU
    if not bool(balanced.any()):
        return first
    picked = balanced.to(rows.support.device)
    if second_on == first_on:  # the same centre: the first run's rows, sliced
        again_center = None if center is None else center[picked]
        again_units = EpisodeRows(
            units.support[picked], units.targets[picked], units.query[picked], rows.ways
        )
        again_weight = weight[picked]
    else:
        chosen = EpisodeRows(
            rows.support[picked], rows.targets[picked], rows.query[picked], rows.ways
        )
        again_center, again_units, again_weight = _initial(training, chosen, second_on)
    again = _with_center(_train(training, weights, again_units, again_weight), again_center)
    merged = replace(
        first,
        weight=first.weight.clone(),
        bias=first.bias.clone(),
        center=None if first.center is None else first.center.clone(),
        query_logits=first.query_logits.clone(),
    )
    merged.weight[picked] = again.weight
    merged.bias[picked] = again.bias
    if merged.center is not None and again.center is not None:
        merged.center[picked] = again.center
    merged.query_logits[balanced] = again.query_logits
    return merged


def queries_look_balanced(
    training: HeadTraining, first_logits: torch.Tensor, rows: EpisodeRows
) -> torch.Tensor:
    """``[E]`` bool (CPU): whether the queries of each episode look class-balanced, so the
    balanced second run of ``adaptive_balance`` runs: the first run's predicted classes
    (``first_logits [E, Q, K]``) pass :func:`~anyshot.methods.balance.looks_balanced`, or, with
    ``unequal_balance_test`` in an episode whose classes hold unequal numbers of labelled
    images and whose first run was not centred on the episode, those of a run centred on the
    episode (without the balance term) do: centred on the support, the first run leans
    towards the classes of more images and fails the test on balanced queries. That run is a
    head run on ``rows`` (at the network scopes: on the frozen network's embeddings)."""
    balanced = looks_balanced(class_counts(first_logits.argmax(-1), rows.ways)).cpu()
    first_on = run_centers(training.center_on)[0]
    retests = training.unequal_balance_test and training.center and first_on != "episode"
    if not retests or rows.query.shape[1] == 0:
        return balanced
    shots = class_counts(rows.targets, rows.ways)  # [E, K]
    retest = (shots.amax(-1) != shots.amin(-1)).cpu() & ~balanced
    if not bool(retest.any()):
        return balanced
    _, units, weight = _initial(training, _episodes(rows, retest), "episode")
    run = _train(training, replace(training.weights, balance=0.0), units, weight)
    balanced[retest] = looks_balanced(class_counts(run.query_logits.argmax(-1), rows.ways))
    return balanced


def _initial(
    training: HeadTraining, rows: EpisodeRows, center_on: str
) -> tuple[torch.Tensor | None, EpisodeRows, torch.Tensor]:
    """``(centre [E, 1, D] or None, unit rows, initial class weights [E, K, D])`` of ``rows``
    (centred on ``center_on``'s centre when centring is on), the support filled up first
    where the run :func:`fills` it."""
    if fills(training):
        rows = with_shared_spread(rows)
    if not training.center:
        support = unit_embeddings(rows.support, relu=training.relu)
        query = unit_embeddings(rows.query, relu=training.relu)
        weight = class_means(rows.support, rows.targets, rows.ways, relu=training.relu)
        return None, EpisodeRows(support, rows.targets, query, rows.ways), weight
    center = transductive_center(
        center_on, rows.support, rows.targets, rows.query, rows.ways, relu=training.relu
    )
    support = unit_embeddings(rows.support, relu=training.relu, center=center)
    query = unit_embeddings(rows.query, relu=training.relu, center=center)
    weight = class_means(support, rows.targets, rows.ways, relu=False)
    return center, EpisodeRows(support, rows.targets, query, rows.ways), weight


def with_shared_spread(rows: EpisodeRows) -> EpisodeRows:
    """The support of every episode with each class filled up to its largest class's count:
    class ``k`` gets ``n_max - n_k`` rows ``m_k + (x_j - m_c(j))``, ``m`` the class means of
    the embeddings and ``x_j`` the rows of classes of two or more, taken in turn (no random
    draw): the within-class spread the classes share, which class means assume, moved to the
    classes that have too few rows to show it. Fine-tuned on the support as it is, a head
    widens the classes of many labelled images over the few-image classes' queries; filled
    up, every class is as wide (on val, the inductive head went from 2.0-3.8 points below
    support-init to 1.9-6.2 above on mini-ImageNet's unequal supports, and from -0.1..+2.5 to
    +1.7..+3.6 on Omniglot's: ``studies/unbalanced-support/gate_answer.py``).

    The offsets a class receives need not average to zero, so the filled rows' mean (a
    filled run's starting weight) moves a little from the class mean; balancing them was not
    tried. The rows are filled before rectification and normalisation (filling the unit rows
    gained much less on val).

    ``rows``: ``E`` episodes whose largest classes have equally many rows (``[E, S, D]``
    support, raw embeddings) -> ``[E, K n_max, D]`` support, the filled rows after the
    labelled ones; an episode whose classes have equally many is returned as it is (then all
    are). Raises ``ValueError`` for episodes whose largest classes differ (group them)."""
    ways = rows.ways
    counts = class_counts(rows.targets, ways)  # [E, K]
    largest = int(counts.amax())
    if bool((counts.amax(-1) != largest).any()):
        raise ValueError("episodes whose largest classes differ in size are filled apart")
    if bool((counts == largest).all()):
        return rows
    one_hot = F.one_hot(rows.targets, ways).to(rows.support.dtype)  # [E, S, K]
    means = one_hot.transpose(1, 2) @ rows.support / counts.unsqueeze(-1)  # [E, K, D]
    own = torch.gather(means, 1, rows.targets.unsqueeze(-1).expand_as(rows.support))
    residual = rows.support - own  # [E, S, D]
    supports, targets = [], []
    for e in range(rows.support.shape[0]):
        donors = (counts[e, rows.targets[e]] >= 2).nonzero().squeeze(1)  # [M]
        fill = largest - counts[e]  # [K]
        labels = torch.repeat_interleave(torch.arange(ways, device=counts.device), fill)
        picked = donors[torch.arange(len(labels), device=donors.device) % len(donors)]
        supports.append(torch.cat([rows.support[e], means[e, labels] + residual[e, picked]]))
        targets.append(torch.cat([rows.targets[e], labels]))
    return EpisodeRows(torch.stack(supports), torch.stack(targets), rows.query, ways)


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
    optimizer = Adam([weight] if likelihood else [weight, bias], lr=training.lr)
    log_prior = uniform_log_prior((episodes,), ways, weight.device)
    class_weights = (
        class_balanced_weights(units.targets, ways) if training.balanced_support else None
    )

    def logits_of(rows: torch.Tensor) -> torch.Tensor:
        return cosine_logits(rows, weight, bias, training.temperature, normalize_weight=likelihood)

    for _ in range(training.epochs):
        optimizer.zero_grad()
        support_loss(logits_of(units.support), units.targets, n_support, class_weights).backward()
        optimizer.step()
        if weights.any and n_query > 0:
            optimizer.zero_grad()
            loss, responsibilities = query_loss(logits_of(units.query), weights, n_query, log_prior)
            loss.backward()
            optimizer.step()
            if likelihood:
                log_prior = estimated_log_prior(
                    responsibilities,
                    n_query,
                    training.prior_count,
                    empirical_bayes=training.empirical_bayes,
                )

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
