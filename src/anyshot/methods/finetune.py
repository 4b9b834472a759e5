"""Fine-tuning and transductive fine-tuning (Dhillon et al., sections 3.2-3.3), any scope.

From the support-based initialisation, minimise

    CE(support) + lambda * mean_{x in query} H(softmax(logits(x)))

with Adam. Each epoch is one step on the support cross-entropy, then (transductive only) one
step on the query entropy. Each step's gradient is accumulated over mini-batches (chunks), so a
support of any size fits in bounded memory and gives the same step as one big batch would (up
to batch-norm statistics, which are per chunk in training mode).

``scope`` chooses what trains:

* ``all``: every backbone parameter and the classifier (the paper). Augmentation on by
  default; batch-norm on the backbone's stored statistics unless ``norm_statistics`` says
  otherwise (the paper's training mode is ``"batch"``).
* ``last``: the backbone's last stage and the classifier. The frozen trunk's activations are
  computed once per episode (eval mode, no augmentation) and reused every epoch.
* ``head``: the classifier only, on embeddings computed once per episode: milliseconds.

The caller's backbone is never modified: training happens on a copy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError
from anyshot.methods.cosine import (
    CENTERS,
    check_temperatures,
    class_mean_similarity,
    shots_temperature,
)
from anyshot.methods.features import (
    EpisodeRows,
    FittedHead,
    RowBatch,
    answer_of,
    episode_rows,
    fallback_of,
)
from anyshot.methods.frozen import frozen_forward, resolve_device
from anyshot.methods.head import HeadTraining, fit_head, inlier_queries
from anyshot.methods.network import (
    FineTuned,
    NetworkTraining,
    seconds_per_image,
    train_network,
    trainable_network,
)
from anyshot.methods.objective import QueryWeights

__all__ = [
    "NORM_STATISTICS",
    "QUERYLESS_CONFIDENCE",
    "QUERY_FIELDS",
    "SCOPES",
    "FineTuned",
    "FineTuning",
    "TransductiveFineTuning",
]

SCOPES = ("all", "last", "head")

#: Where scope ``all``'s batch-norm layers take their statistics (see :class:`FineTuning`'s
#: ``norm_statistics``).
NORM_STATISTICS = ("pretrained", "episode", "batch")


#: ``h`` of the calibration rule for an episode without queries (``confidence_query_slope``):
#: the mean over val episodes of the default's head (``studies/calibration-rule/``).
QUERYLESS_CONFIDENCE = 0.89


@dataclass(frozen=True)
class FineTuning:
    """Support-based initialisation, then fine-tuning on the support cross-entropy.

    Args:
        scope: ``"all"`` (paper), ``"last"`` (last stage + head) or ``"head"`` (classifier).
        epochs: number of epochs (one support step, plus one query step if transductive).
        lr: Adam learning rate (of the head, and of the network unless ``network_lr``).
        network_lr: Adam learning rate of the network's parameters at scopes ``last`` /
            ``all``; ``None`` = ``lr``. A cosine head at ``T = 0.1`` wants about 1e-2, far more
            than pre-trained weights stand (``studies/scope-probe/``).
        temperature: ``T`` of the cosine logits.
        confidence_temperature: ``tau``, calibration of the confidences: a trained
            classifier's final logits are divided by it (its temperature becomes ``T tau``, its
            bias ``b / tau``) after training and the safeguards, so only the softmax
            confidences change, never the predictions. 1 = as trained.
        fallback_temperature: the same for an episode a safeguard answered with support-based
            initialisation (the guard; at scopes ``last`` / ``all`` the gate too; see
            ``min_queries_per_class``), whose logits are those of
            :class:`~anyshot.methods.SupportBasedInit` and are calibrated as its are: ``tau`` is
            ``fallback_temperature * shots ** fallback_shots_power`` (``shots`` = ``S / K``).
        fallback_shots_power: see ``fallback_temperature`` (support-init's
            ``confidence_shots_power``); 0 = the same ``tau`` at any shots.
        confidence_shots_power: ``b`` of the calibration rule: at scope ``head`` a trained
            episode's ``tau`` is ``confidence_temperature * shots ** b * exp(c * s)``, ``shots``
            = labelled images per class (``S / K``) and ``s`` = the mean cosine between the
            support's class means (:func:`anyshot.methods.cosine.class_mean_similarity`): a
            function of the support (see ``confidence_query_slope`` for the queries' part).
            0 = no dependence on the shots. See ``confidence_query_slope`` too.
        confidence_similarity_slope: ``c`` of the rule (see ``confidence_shots_power``): classes
            the backbone sees as alike get softer confidences. 0 = no dependence.
        confidence_query_slope: ``d`` of the rule: ``tau`` is also multiplied by
            ``exp(d * h)``, ``h`` = the trained head's mean largest softmax probability over
            the episode's queries before calibration (:data:`QUERYLESS_CONFIDENCE` without
            queries). 0 = no dependence. Scopes ``last`` / ``all`` use
            ``confidence_temperature * shots ** confidence_shots_power`` (no ``s``, no ``h``).
        relu: rectify embeddings before normalising.
        entropy_weight: ``lambda``, weight of the query-entropy step; 0 = inductive.
        balance_weight: weight of a class-balance term subtracted in the query step: the
            entropy of the mean query prediction (as in TIM). 0 = the paper. It stops the
            query entropy from collapsing every query onto one class, but assumes roughly
            balanced queries.
        likelihood_weight: weight of the query log-likelihood term (anyshot): the queries'
            mean ``log sum_k pi_k exp(logit_k)`` is maximised, a mixture of the classes with
            proportions ``pi`` re-estimated after every query step (see ``prior_count``).
            Unlike the entropy it moves the class directions toward the queries' clusters
            without forcing confident or balanced predictions, so it neither collapses nor
            assumes balanced queries. When positive, class weights are unit vectors, the
            bias is not trained, and the final logits add ``log pi`` (stored as the bias).
        prior_count: pseudo-count per class of the proportions' estimate,
            ``pi_k = (sum_i p_ik + c) / (Q + K c)``: 0 = maximum likelihood, large = nearly
            uniform (a Dirichlet prior pulling toward balanced classes).
        adaptive_balance: use ``balance_weight`` only when the queries look balanced: a
            first run without the balance term predicts the query classes; if their counts
            pass :func:`anyshot.methods.balance.looks_balanced`, training is repeated from
            the initialisation with it (the result is then exactly that of
            ``adaptive_balance=False``), otherwise the first run's result is kept.
        center: transductive centring: subtract a mean unit embedding of the episode (see
            ``center_on``; computed once before training, eval mode) and renormalise, before
            the cosine classifier.
        unequal_balance_test: with ``adaptive_balance``, ``center`` (a first run not centred on
            the episode) and a support whose classes have unequal numbers of labelled images,
            the balanced second run also starts when a head run centred on the episode, without
            the balance term (at scopes ``last`` / ``all``: on the frozen network's embeddings),
            predicts balanced-looking query classes
            (:func:`anyshot.methods.head.queries_look_balanced`): a first run centred on the
            support leans towards the classes of more images and fails the test on balanced
            queries. No change where the classes have equally many.
        center_on: what the centre is the mean of (only used with ``center``): ``"episode"``
            = the unit embeddings of the support and query images; ``"support"`` = the
            support's unit class means (support-based initialisation's weights), so each class
            counts once and the centre does not depend on which classes the queries hold;
            ``"adaptive"`` = the support's centre, and the episode's for the balanced second run
            of ``adaptive_balance`` (its queries looked balanced, so they cover the classes and
            their mean is a neutral origin).
        empirical_bayes: estimate the proportions' pseudo-count per episode, after every query
            step, from the soft class counts of the queries (the symmetric Dirichlet prior that
            explains them best, :func:`anyshot.methods.balance.dirichlet_concentration`)
            instead of using ``prior_count``: near-uniform proportions for evenly spread
            queries, free ones for a few dominant classes.
        min_queries_per_class: the gate: an episode with fewer than ``m + s * shots`` queries
            per class its queries appear to hold (``m`` = this, ``s`` = ``queries_per_shot``,
            ``shots`` = labelled images per class, ``S / K``; the classes are the effective
            number head fine-tuning predicts for the queries, at scopes ``last`` / ``all`` on
            the frozen backbone's embeddings), or with a single query (when ``m`` or ``s`` is
            positive), keeps no answer trained with its queries: too little query evidence for
            the query terms to beat the labelled images. At scope ``head`` it gets
            :meth:`inductive`'s answer (fine-tuning on the support alone: many labelled images
            then still train the head); at scopes ``last`` / ``all`` support-based
            initialisation's (same ``temperature`` and ``relu``; no training). 0 = off.
        queries_per_shot: the gate's ``s`` (see ``min_queries_per_class``). 0 = off.
        min_agreement: the guard: after training, an episode whose predicted query classes
            agree with support-based initialisation's on fewer than this fraction of its
            queries gets support-init's answer instead, where support-init's predictions spread
            over at least 3/4 of the classes (on queries of a few of many classes a correct
            head disagrees with support-init by design). 0 = off. At scopes ``last`` / ``all``
            both safeguards compare with support-init on the frozen backbone's embeddings, and
            a fallen-back episode's network is the untrained copy (see
            :func:`anyshot.methods.network.train_network`).
        gate_outlier_rate: the gate (``min_queries_per_class``) counts only the queries the
            unknown rule does not flag at this false-alarm rate (see ``outlier_rate``): images
            of none of the classes are no evidence for training on the queries. 0 = every
            query counts. With ``outlier_rate``, it counts the unflagged among the queries that
            rule keeps.
        shared_spread: where the classes have unequal numbers of labelled images, a head
            trained on uncentred embeddings (the inductive head, so the gate's answer, and the
            Tsallis head; not the centred transductive head: :func:`anyshot.methods.head.fills`)
            trains on a support whose classes of fewer images are filled up to the largest
            class's count with rows of the within-class spread the classes share
            (:func:`anyshot.methods.head.with_shared_spread`): fine-tuned on the support as it
            is, a head widens the classes of many images over the queries of the others, which
            class means do not. No change where the classes have equally many. Scope ``head``
            only (the network scopes train on the images).
        gate_prior_share: an episode the gate answers with the inductive head, whose queries
            that head predicts to hold fewer than this share of the classes (the effective
            number of predicted classes), gets the class proportions those predictions imply
            added to its logits (:func:`anyshot.methods.head.with_query_prior`): the support's
            class directions, the queries' prior. Queries of a few of many classes then leave
            the absent classes little weight without enough of them to train on. Scope
            ``head`` only (at ``last`` / ``all`` the gate answers as support-init does). 0 = off.
        balanced_support: every class weighs the same in the support cross-entropy whatever
            its number of labelled images (:func:`anyshot.methods.objective.
            class_balanced_weights`): a class of one image among classes of twenty is not
            learnt as twenty times rarer. No change where the classes have equally many. Kept
            by :meth:`inductive` (it is about the labelled images).
        outlier_rate: the query terms (and the gate's count) leave out the queries the unknown
            rule flags at this false-alarm rate: farther from every support class mean than
            :func:`anyshot.outliers.unknown_threshold` sets from the support (images of none of
            the classes would otherwise pull the classifier); their logits are still given.
            Scope ``head`` only. 0 = off.
        outlier_alarm: with ``outlier_rate``, leave those queries out only in an episode whose
            queries are flagged significantly more often than ``outlier_rate`` (one-sided
            binomial test at this level, :func:`anyshot.methods.head.outlier_alarm`), so that
            query sets without outliers keep every query. 0 = leave them out always.
        tsallis_head: scope ``head`` (and the safeguards' class count at scopes ``last`` /
            ``all``): also fine-tune a second head with alpha-TIM's query terms (the mean
            prediction entropy and the balance term, weight 1 each, as Tsallis entropies of
            order 2 at one labelled image per class, 7 from five; uncentred rows, no likelihood
            term; orders as alpha-TIM's code, 5 between; labelled images per class = ``S / K``:
            :meth:`~anyshot.methods.head.HeadTraining.tsallis`) and answer an episode
            with it when this head predicts fewer than ``tsallis_share`` of the ``K`` classes
            for the queries and it more than ``tsallis_margin`` fewer still (effective numbers
            of predicted classes, :func:`~anyshot.methods.head.predicted_classes`): where the
            queries hold a few of many support classes it lets the absent classes go, which the
            likelihood term's proportions do not when the backbone separates the classes
            poorly; where they cover the classes it could merge some, which the share rules out.
            At scopes ``last`` / ``all`` it only changes the safeguards' class count (their
            head fine-tuning on the frozen embeddings); it needs a query term.
        tsallis_margin: see ``tsallis_head`` (classes).
        tsallis_share: see ``tsallis_head`` (a fraction of ``K``).
        tsallis_band: ``(low, high)``: with ``tsallis_head``, an episode of at least 2 labelled
            images per class where this head predicts a share of the classes in
            ``[low, high)`` takes the Tsallis head's answer whatever its class count
            (``studies/five-shot-tsallis/``); ``(0, 0)`` = none.
        tsallis_gated: with ``tsallis_head`` (no effect without), scope ``head``: an
            episode the gate answers (``min_queries_per_class``) is given the Tsallis head's
            answer instead where the gate's answer predicts fewer than ``tsallis_share`` of
            the classes for the queries, the Tsallis head more than ``tsallis_margin`` fewer
            still, the gate opens on the Tsallis head's count, the two answers agree on at
            least ``min_agreement`` of the queries and support-init's predictions do not cover
            the classes (:func:`anyshot.methods.head.safeguarded`; where the queries hold most
            classes the Tsallis head can merge some). Why: the first head can spread its
            predictions over most of the classes where the queries hold a few, and so close
            the gate.
        tsallis_confidence_temperature: ``tau`` of an episode the Tsallis head answered (scope
            ``head``), times ``shots ** tsallis_confidence_shots_power``; ``None`` = the trained
            head's (``confidence_temperature`` and its rule). That head trains with other terms
            and sharper confidences than the first (``studies/tsallis-calibration/``).
        tsallis_confidence_shots_power: see ``tsallis_confidence_temperature``.
        batch_size: images (or cached rows) per chunk of a step.
        augment: apply the pre-training augmentations to support and query images while
            training; ``None`` = on for scope ``all``, off otherwise (cached scopes cannot).
        flip: include horizontal flips in the augmentation.
        norm_statistics: scope ``all``'s batch-norm (the other scopes always use the stored
            statistics). ``"pretrained"`` (default): every batch-norm layer keeps the
            backbone's stored statistics while training, so initialisation, training and
            prediction normalise alike. ``"episode"``: training mode (each chunk normalised by
            its own statistics), then the statistics re-estimated on the episode's support and
            query images, so prediction normalises as training did; the classifier still
            starts from class means under the stored statistics. ``"batch"``: training mode
            with batch-norm's own running averages (the paper's); in 25 steps
            EfficientNet-Lite0's (momentum 0.01) hardly move, so prediction normalises
            differently from training. On val episodes of Omniglot (84 px) and digits (64 px),
            T 0.1, Adam 1e-2 / 1e-3 (``studies/scope-curve/``): ``"batch"`` lost 14 to 38
            points (cell means) to ``"pretrained"`` with 1 and 5 labelled images per class;
            ``"episode"`` lost 6.0 to it on 20-way 1-shot Omniglot and won by 8.5 and 14.5
            with 20 and 100 digits per class.
        time_budget: scopes ``last`` / ``all``: seconds the network's epochs may take, from
            the start of the first (the forward passes before and after them are not counted);
            an epoch starts only if, as long as the mean epoch so far, it ends within the
            budget, so fewer than ``epochs`` may run (the first always does). ``None`` = no
            limit. The result then depends on the machine's speed.
        show_progress: scopes ``last`` / ``all``: a progress bar of the epochs on stderr.
        seed: seed of the augmentation and chunk-order draws.
        device: where to train; default the backbone's device.
    """

    scope: str = "all"
    epochs: int = 25
    lr: float = 5e-5
    network_lr: float | None = None
    temperature: float = 1.0
    confidence_temperature: float = 1.0
    fallback_temperature: float = 1.0
    fallback_shots_power: float = 0.0
    confidence_shots_power: float = 0.0
    confidence_similarity_slope: float = 0.0
    confidence_query_slope: float = 0.0
    relu: bool = True
    entropy_weight: float = 0.0
    balance_weight: float = 0.0
    likelihood_weight: float = 0.0
    prior_count: float = 0.0
    adaptive_balance: bool = False
    center: bool = False
    center_on: str = "episode"
    empirical_bayes: bool = False
    min_queries_per_class: float = 0.0
    queries_per_shot: float = 0.0
    min_agreement: float = 0.0
    gate_outlier_rate: float = 0.0
    gate_prior_share: float = 0.0
    shared_spread: bool = False
    balanced_support: bool = False
    unequal_balance_test: bool = False
    outlier_rate: float = 0.0
    outlier_alarm: float = 0.0
    tsallis_head: bool = False
    tsallis_margin: float = 0.5
    tsallis_share: float = 0.75
    tsallis_band: tuple[float, float] = (0.0, 0.0)
    tsallis_gated: bool = False
    tsallis_confidence_temperature: float | None = None
    tsallis_confidence_shots_power: float = 0.0
    batch_size: int = 64
    augment: bool | None = None
    flip: bool = True
    norm_statistics: str = "pretrained"
    time_budget: float | None = None
    show_progress: bool = False
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigurationError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.norm_statistics not in NORM_STATISTICS:
            raise ConfigurationError(
                f"norm_statistics must be one of {NORM_STATISTICS}, got {self.norm_statistics!r}"
            )
        if self.norm_statistics != "pretrained" and self.scope != "all":
            raise ConfigurationError(
                f"norm_statistics={self.norm_statistics!r} needs scope='all': scope "
                f"{self.scope!r} always uses the stored statistics"
            )
        if self.augment and self.scope != "all":
            raise ConfigurationError(
                f"augment=True needs scope='all': scope={self.scope!r} reuses features "
                "computed once from un-augmented images"
            )
        weights = (self.entropy_weight, self.balance_weight, self.likelihood_weight)
        if min(self.epochs, self.lr, self.prior_count, *weights) < 0:
            raise ConfigurationError(
                "epochs, lr, entropy_weight, balance_weight, likelihood_weight and prior_count "
                "must be non-negative"
            )
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.time_budget is not None and not 0 < self.time_budget < math.inf:
            raise ConfigurationError(
                f"time_budget must be a positive number of seconds or None, got {self.time_budget}"
            )
        check_temperatures(
            temperature=self.temperature,
            confidence_temperature=self.confidence_temperature,
            fallback_temperature=self.fallback_temperature,
        )
        if self.tsallis_confidence_temperature is not None:
            check_temperatures(tsallis_confidence_temperature=self.tsallis_confidence_temperature)
        for name in (
            "fallback_shots_power",
            "confidence_shots_power",
            "confidence_similarity_slope",
            "confidence_query_slope",
            "tsallis_confidence_shots_power",
        ):
            if not math.isfinite(getattr(self, name)):
                raise ConfigurationError(
                    f"{name} must be a finite number, got {getattr(self, name)}"
                )
        if self.center_on not in CENTERS:
            raise ConfigurationError(f"center_on must be one of {CENTERS}, got {self.center_on!r}")
        if not 0 <= self.min_queries_per_class < math.inf:
            raise ConfigurationError(
                "min_queries_per_class must be a finite number >= 0, got "
                f"{self.min_queries_per_class}"
            )
        if not 0 <= self.queries_per_shot < math.inf:
            raise ConfigurationError(
                f"queries_per_shot must be a finite number >= 0, got {self.queries_per_shot}"
            )
        if not 0 <= self.min_agreement <= 1:
            raise ConfigurationError(
                f"min_agreement must be a fraction in [0, 1], got {self.min_agreement}"
            )
        if self.network_lr is not None and not 0 < self.network_lr < math.inf:
            raise ConfigurationError(
                f"network_lr must be a positive number or None, got {self.network_lr}"
            )
        if not 0 <= self.outlier_rate < 1:
            raise ConfigurationError(f"outlier_rate must lie in [0, 1), got {self.outlier_rate}")
        if not 0 <= self.gate_outlier_rate < 1:
            raise ConfigurationError(
                f"gate_outlier_rate must lie in [0, 1), got {self.gate_outlier_rate}"
            )
        if not 0 <= self.gate_prior_share <= 1:
            raise ConfigurationError(
                f"gate_prior_share must be a fraction in [0, 1], got {self.gate_prior_share}"
            )
        if not 0 <= self.outlier_alarm < 1:
            raise ConfigurationError(f"outlier_alarm must lie in [0, 1), got {self.outlier_alarm}")
        if self.tsallis_head and not self.query_weights.any:
            raise ConfigurationError(
                "tsallis_head needs a query term (entropy_weight, balance_weight or "
                "likelihood_weight above 0): it chooses between two transductive heads"
            )
        if not 0 <= self.tsallis_margin < math.inf:
            raise ConfigurationError(
                f"tsallis_margin must be a finite number >= 0, got {self.tsallis_margin}"
            )
        # a list from a settings file becomes a tuple
        object.__setattr__(self, "tsallis_band", share_band(self.tsallis_band))
        if not 0 <= self.tsallis_share <= 1:
            raise ConfigurationError(
                f"tsallis_share must be a fraction in [0, 1], got {self.tsallis_share}"
            )
        self._check_head_only()

    def _check_head_only(self) -> None:
        """Raise :class:`~anyshot.errors.ConfigurationError` for a setting of scope ``head``
        alone at another scope."""
        if self.scope == "head":
            return
        if self.outlier_rate > 0:
            raise ConfigurationError(
                f"outlier_rate applies to scope 'head' only, got scope {self.scope!r}"
            )
        gate_answer = {
            "tsallis_gated": self.tsallis_gated,
            "gate_prior_share": self.gate_prior_share,
        }
        for name, value in gate_answer.items():
            if value:
                raise ConfigurationError(
                    f"{name} applies to scope 'head' only (at scopes last / all the gate "
                    f"answers as support-init does), got scope {self.scope!r}"
                )
        if self.shared_spread:
            raise ConfigurationError(
                "shared_spread applies to scope 'head' only (it fills up rows of embeddings; "
                f"scopes last / all train on the images), got scope {self.scope!r}"
            )

    @property
    def transductive(self) -> bool:
        """Whether the query step runs."""
        return self.query_weights.any

    @property
    def query_weights(self) -> QueryWeights:
        """The query terms' weights."""
        return QueryWeights(self.entropy_weight, self.balance_weight, self.likelihood_weight)

    @property
    def head_training(self) -> HeadTraining:
        """The settings of the head loop (:func:`anyshot.methods.head.fit_head`)."""
        return HeadTraining(
            temperature=self.temperature,
            relu=self.relu,
            lr=self.lr,
            epochs=self.epochs,
            weights=self.query_weights,
            prior_count=self.prior_count,
            adaptive_balance=self.adaptive_balance,
            center=self.center,
            center_on=self.center_on,
            empirical_bayes=self.empirical_bayes,
            min_queries_per_class=self.min_queries_per_class,
            queries_per_shot=self.queries_per_shot,
            min_agreement=self.min_agreement,
            gate_outlier_rate=self.gate_outlier_rate,
            gate_prior_share=self.gate_prior_share,
            shared_spread=self.shared_spread,
            balanced_support=self.balanced_support,
            unequal_balance_test=self.unequal_balance_test,
            outlier_rate=self.outlier_rate,
            outlier_alarm=self.outlier_alarm,
            tsallis_head=self.tsallis_head,
            tsallis_margin=self.tsallis_margin,
            tsallis_share=self.tsallis_share,
            tsallis_band=self.tsallis_band,
            tsallis_gated=self.tsallis_gated,
        )

    def inductive(self) -> FineTuning:
        """The same settings without any query term (plain fine-tuning on the support), so
        without the safeguards and their ``fallback_temperature``, and with the default
        calibration (``confidence_temperature`` 1, no rule: the rule's numbers are fitted for
        the transductive head)."""
        return FineTuning(
            **{
                **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                **{name: field_default(FineTuning, name) for name in SAFEGUARDED_FIELDS},
            }
        )

    def fit_features(
        self,
        support: RowBatch,
        support_targets: RowBatch,
        query: RowBatch,
        *,
        ways: int | None = None,
        episodes_per_chunk: int = 64,
    ) -> FittedHead:
        """Head fine-tuning of ``E`` episodes of embeddings (scope ``head`` only).

        ``batch_size`` and ``seed`` do not change the result: every row of an episode is in
        each step, and the head draws no augmentation.

        Args:
            support: ``[E, S, D]`` support embeddings (``[S, D]`` = one episode).
            support_targets: ``[E, S]`` class indices in ``0..K-1``; every episode has every class.
            query: ``[E, Q, D]`` query embeddings (``Q`` may be 0).
            ways: ``K``; default ``max(support_targets) + 1``.
            episodes_per_chunk: episodes trained together; only speed and memory depend on it.

        Returns:
            The fitted classifiers; ``query_logits`` is ``[E, Q, K]`` (CPU, float32).

        Raises:
            ConfigurationError: a scope other than ``head`` (it trains the network, which
                embeddings do not have), or shapes that are not a batch of episodes.
        """
        if self.scope != "head":
            raise ConfigurationError(
                f"scope={self.scope!r} trains the network, so it cannot run on embeddings; use "
                "scope 'head' (or run the method on images)"
            )
        rows = episode_rows(support, support_targets, query, ways=ways, device=self.device)
        training = self.head_training
        fitted = FittedHead.concatenate(
            [fit_head(training, chunk) for chunk in rows.split(episodes_per_chunk)]
        )
        keep = None
        if self.outlier_rate > 0 and rows.query.shape[1] > 0 and self.confidence_query_slope:
            keep = inlier_queries(rows, self.outlier_rate, self.relu).cpu()
        tau = self.confidence_temperatures(rows, fitted.query_logits, keep)
        shots = rows.support.shape[1] / rows.ways
        return fitted.calibrated(tau, self.fallback_tau(shots), self.tsallis_temperature(rows))

    def fallback_tau(self, shots: float) -> float:
        """``tau`` of a support-init answer for ``shots`` labelled images per class (see
        ``fallback_temperature``)."""
        return shots_temperature(self.fallback_temperature, self.fallback_shots_power, shots)

    def tsallis_temperature(self, rows: EpisodeRows) -> float | None:
        """``tau`` of the episodes of ``rows`` the Tsallis head answers:
        ``tsallis_confidence_temperature * shots ** tsallis_confidence_shots_power`` (``shots``
        = ``S / K``), or ``None`` (the trained head's) when that temperature is ``None``."""
        if self.tsallis_confidence_temperature is None:
            return None
        shots = rows.support.shape[1] / rows.ways
        return shots_temperature(
            self.tsallis_confidence_temperature, self.tsallis_confidence_shots_power, shots
        )

    def confidence_temperatures(
        self,
        rows: EpisodeRows,
        query_logits: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[E]`` float64 (CPU): each episode's ``tau`` for a trained head at scope ``head``,
        ``confidence_temperature * shots ** b * exp(c * s + d * h)`` (``b`` =
        ``confidence_shots_power``, ``c`` = ``confidence_similarity_slope``, ``d`` =
        ``confidence_query_slope``; ``shots`` = ``S / K``; ``s [E]`` =
        :func:`~anyshot.methods.cosine.class_mean_similarity` of the support rows; ``h [E]`` =
        the mean over queries of the largest softmax probability of ``query_logits [E, Q, K]``,
        the trained head's uncalibrated logits, over the queries of the ``[E, Q]`` bool mask
        ``keep`` when given (the inliers of ``outlier_rate``, so flagged outliers change no other
        logit); :data:`QUERYLESS_CONFIDENCE` for an episode without (kept) queries or when
        ``query_logits`` is ``None``)."""
        episodes = rows.support.shape[0]
        shots = rows.support.shape[1] / rows.ways
        base = shots_temperature(self.confidence_temperature, self.confidence_shots_power, shots)
        log_tau = torch.full((episodes,), math.log(base), dtype=torch.float64)
        if self.confidence_similarity_slope != 0:
            similarity = class_mean_similarity(
                rows.support, rows.targets, rows.ways, relu=self.relu
            )
            log_tau += self.confidence_similarity_slope * similarity
        if self.confidence_query_slope != 0:
            confidence = torch.full((episodes,), QUERYLESS_CONFIDENCE, dtype=torch.float64)
            if query_logits is not None and query_logits.shape[1] > 0:
                top = query_logits.double().softmax(-1).amax(-1).cpu()  # [E, Q]
                kept = torch.ones_like(top) if keep is None else keep.to(top)
                count = kept.sum(1)
                mean = (top * kept).sum(1) / count.clamp_min(1)
                confidence = torch.where(count > 0, mean, confidence)
            log_tau += self.confidence_query_slope * confidence
        return log_tau.exp()

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor:
        """Query logits ``[Q, K]`` (CPU, float32), columns in ``episode.classes`` order."""
        return self.fit(backbone, episode).query_logits

    def fit(self, backbone: nn.Module, episode: Episode) -> FineTuned:
        """Fine-tune on ``episode``; return the trained classifier, network and query logits.

        The same computation as calling the method; use it to keep the trained model (e.g. to
        classify new images later without the support set).
        """
        device = resolve_device(backbone, self.device)
        if self.scope == "head":
            support = frozen_forward(
                backbone, episode.support, batch_size=self.batch_size, device=device
            )
            query = (
                frozen_forward(backbone, episode.query, batch_size=self.batch_size, device=device)
                if len(episode.query)
                else support[:0]
            )
            fitted = replace(self, device=str(device)).fit_features(
                support, episode.support_targets, query, ways=episode.ways
            )
            return FineTuned(
                fitted.classifier(0), None, fitted.query_logits[0], fallback_of(fitted),
                answer=answer_of(fitted),
            )  # fmt: skip
        settings = self.network_training()
        network = trainable_network(settings, backbone, episode, device)
        tuned = train_network(settings, network, episode.support_targets.to(device), episode.ways)
        if tuned.network is not None:  # trained channels-last on a CPU; handed back as usual
            tuned.network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        shots = len(episode.support_targets) / episode.ways
        tau = shots_temperature(self.confidence_temperature, self.confidence_shots_power, shots)
        return tuned.calibrated(tau, self.fallback_tau(shots))

    def network_training(self) -> NetworkTraining:
        """The settings of the network loop (scopes ``last`` / ``all``)."""
        return NetworkTraining(
            scope=self.scope,
            head=self.head_training,
            batch_size=self.batch_size,
            augment=self.augment if self.augment is not None else self.scope == "all",
            flip=self.flip,
            norm_statistics=self.norm_statistics if self.scope == "all" else "pretrained",
            seed=self.seed,
            network_lr=self.lr if self.network_lr is None else self.network_lr,
            time_budget=self.time_budget,
            show_progress=self.show_progress,
        )

    def seconds_per_image(self, backbone: nn.Module, episode: Episode) -> float:
        """Measured seconds per support image of one training pass at this scope (forward and
        backward, on a chunk of up to ``batch_size`` of ``episode``'s support images; see
        :func:`anyshot.methods.network.seconds_per_image`). ``backbone`` is not changed.

        Raises:
            ConfigurationError: scope ``head`` (nothing of the network trains).
        """
        if self.scope == "head":
            raise ConfigurationError("scope 'head' trains no network: nothing to time")
        device = resolve_device(backbone, self.device)
        probe = trainable_network(self.network_training(), backbone, episode, device)
        return seconds_per_image(probe, self.batch_size)


@dataclass(frozen=True)
class TransductiveFineTuning(FineTuning):
    """Fine-tuning plus the query-entropy step (``entropy_weight`` = lambda = 1 by default)."""

    entropy_weight: float = 1.0


#: The settings that use the query (unlabelled) images; :meth:`FineTuning.inductive` resets them.
QUERY_FIELDS = (
    "entropy_weight",
    "balance_weight",
    "likelihood_weight",
    "prior_count",
    "adaptive_balance",
    "unequal_balance_test",
    "center",
    "center_on",
    "empirical_bayes",
    "min_queries_per_class",
    "queries_per_shot",
    "min_agreement",
    "gate_outlier_rate",
    "outlier_rate",
    "outlier_alarm",
    "tsallis_head",
    "tsallis_margin",
    "tsallis_share",
    "tsallis_band",
    "tsallis_gated",
    "gate_prior_share",
)


#: Settings of scope ``head`` alone that read no query image (kept by :meth:`FineTuning.inductive`):
#: ``--scope auto`` gives them to its head, not to the network it may train instead.
HEAD_ONLY_FIELDS = ("shared_spread",)


#: What :meth:`FineTuning.inductive` resets: the query settings and the calibration (the
#: fallback's, and the trained head's rule, fitted for the transductive head's confidences).
SAFEGUARDED_FIELDS = (
    *QUERY_FIELDS,
    "fallback_temperature",
    "fallback_shots_power",
    "confidence_temperature",
    "confidence_shots_power",
    "confidence_similarity_slope",
    "confidence_query_slope",
    "tsallis_confidence_temperature",
    "tsallis_confidence_shots_power",
)


def share_band(band: Any) -> tuple[float, float]:
    """``tsallis_band`` as a ``(low, high)`` tuple of floats.

    Raises:
        ConfigurationError: not two numbers with ``0 <= low <= high <= 1``.
    """
    try:
        low, high = (float(x) for x in band)
    except (TypeError, ValueError):
        low, high = 1.0, 0.0  # rejected below
    if not 0 <= low <= high <= 1:
        raise ConfigurationError(
            f"tsallis_band must be (low, high) with 0 <= low <= high <= 1, got {band}"
        )
    return low, high


def field_default(cls: type, name: str) -> Any:
    """The default value of dataclass ``cls``'s field ``name``."""
    (field,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return field.default
