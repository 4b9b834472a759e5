"""Fine-tuning and transductive fine-tuning (Dhillon et al., sections 3.2-3.3), any scope.

From the support-based initialisation, minimise

    CE(support) + lambda * mean_{x in query} H(softmax(logits(x)))

with Adam. Each epoch is one step on the support cross-entropy, then (transductive only) one
step on the query entropy. Each step's gradient is accumulated over mini-batches (chunks), so a
support of any size fits in bounded memory and gives the same step as one big batch would (up
to batch-norm statistics, which are per chunk in training mode).

``scope`` chooses what trains:

* ``all``: every backbone parameter and the classifier (the paper). Batch-norm in training
  mode, augmentation on by default.
* ``last``: the backbone's last stage and the classifier. The frozen trunk's activations are
  computed once per episode (eval mode, no augmentation) and reused every epoch.
* ``head``: the classifier only, on embeddings computed once per episode: milliseconds.

The caller's backbone is never modified: training happens on a copy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from anyshot.data.augment import Augmentation
from anyshot.data.images import Preprocessing
from anyshot.episodes import Episode, Images, image_batches
from anyshot.errors import ConfigurationError
from anyshot.methods.balance import looks_balanced
from anyshot.methods.cosine import (
    CosineClassifier,
    episode_center,
    normalized_class_means,
    unit_embeddings,
)
from anyshot.methods.frozen import frozen_forward, resolve_device, working_copy

__all__ = [
    "SCOPES",
    "FineTuned",
    "FineTuning",
    "TransductiveFineTuning",
    "estimated_log_prior",
    "prediction_entropy",
]

SCOPES = ("all", "last", "head")


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)``: ``[B, K] -> [B]``."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


#: Smallest class proportion of the likelihood term's estimate (keeps ``log pi`` finite).
MIN_PROPORTION = 1e-4


def estimated_log_prior(
    responsibilities: torch.Tensor, n_query: int, prior_count: float
) -> torch.Tensor:
    """``log pi`` from summed query responsibilities ``[..., K]`` and a pseudo-count per class.

    ``pi_k = (r_k + c) / (Q + K c)``, floored at :data:`MIN_PROPORTION` and renormalised.
    """
    ways = responsibilities.shape[-1]
    pi = (responsibilities + prior_count) / (n_query + ways * prior_count)
    pi = pi.clamp_min(MIN_PROPORTION)
    return torch.log(pi / pi.sum(-1, keepdim=True))


@dataclass(frozen=True)
class FineTuned:
    """What :meth:`FineTuning.fit` produced: the trained model, not only its query logits.

    Attributes:
        classifier: the trained cosine classifier (weights ``[K, D]``, bias ``[K]``), on the
            training device.
        network: the trained copy of the backbone (scope ``last`` / ``all``), or ``None`` for
            scope ``head`` (the backbone was not trained). Its ``training`` flags are whatever
            training left; call ``.eval()`` before embedding.
        query_logits: ``[Q, K]`` logits of the episode's query images (CPU, float32).
    """

    classifier: CosineClassifier
    network: nn.Module | None
    query_logits: torch.Tensor


@dataclass(frozen=True)
class FineTuning:
    """Support-based initialisation, then fine-tuning on the support cross-entropy.

    Args:
        scope: ``"all"`` (paper), ``"last"`` (last stage + head) or ``"head"`` (classifier).
        epochs: number of epochs (one support step, plus one query step if transductive).
        lr: Adam learning rate.
        temperature: ``T`` of the cosine logits.
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
        center: transductive centring: subtract the mean unit embedding of the episode's
            support and query images (computed once before training, eval mode) and
            renormalise, before the cosine classifier.
        batch_size: images (or cached rows) per chunk of a step.
        augment: apply the pre-training augmentations to support and query images while
            training; ``None`` = on for scope ``all``, off otherwise (cached scopes cannot).
        flip: include horizontal flips in the augmentation.
        seed: seed of the augmentation and chunk-order draws.
        device: where to train; default the backbone's device.
    """

    scope: str = "all"
    epochs: int = 25
    lr: float = 5e-5
    temperature: float = 1.0
    relu: bool = True
    entropy_weight: float = 0.0
    balance_weight: float = 0.0
    likelihood_weight: float = 0.0
    prior_count: float = 0.0
    adaptive_balance: bool = False
    center: bool = False
    batch_size: int = 64
    augment: bool | None = None
    flip: bool = True
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigurationError(f"scope must be one of {SCOPES}, got {self.scope!r}")
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
        if self.temperature <= 0:
            raise ConfigurationError(f"temperature must be positive, got {self.temperature}")

    @property
    def transductive(self) -> bool:
        """Whether the query step runs."""
        return self.entropy_weight > 0 or self.balance_weight > 0 or self.likelihood_weight > 0

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor:
        """Query logits ``[Q, K]`` (CPU, float32), columns in ``episode.classes`` order."""
        return self.fit(backbone, episode).query_logits

    def fit(self, backbone: nn.Module, episode: Episode) -> FineTuned:
        """Fine-tune on ``episode``; return the trained classifier, network and query logits.

        The same computation as calling the method; use it to keep the trained model (e.g. to
        classify new images later without the support set).
        """
        device = resolve_device(backbone, self.device)
        generator = torch.Generator().manual_seed(self.seed)
        targets = episode.support_targets.to(device)
        augment = self.augment if self.augment is not None else self.scope == "all"

        # Inputs of the trainable part and the function that maps them to embeddings.
        encode: Callable[[torch.Tensor, bool], torch.Tensor]
        support_inputs: Images
        query_inputs: Images
        if self.scope == "head":
            support_inputs = frozen_forward(
                backbone, episode.support, batch_size=self.batch_size, device=device
            )
            query_inputs = (
                frozen_forward(backbone, episode.query, batch_size=self.batch_size, device=device)
                if len(episode.query)
                else support_inputs[:0]
            )
            trainable: list[nn.Parameter] = []
            model: nn.Module | None = None

            def encode(inputs: torch.Tensor, training: bool) -> torch.Tensor:
                return inputs

        elif self.scope == "last":
            for name in ("forward_trunk", "forward_last", "last_stage_parameters"):
                if not hasattr(backbone, name):
                    raise ConfigurationError(
                        f"scope='last' needs an anyshot Backbone (with {name}); "
                        f"{type(backbone).__name__} is a plain module: use scope 'all' or 'head'"
                    )

            def trunk(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
                return m.forward_trunk(x)  # type: ignore[operator]

            support_inputs = frozen_forward(
                backbone, episode.support, batch_size=self.batch_size, device=device, function=trunk
            )
            query_inputs = (
                frozen_forward(
                    backbone,
                    episode.query,
                    batch_size=self.batch_size,
                    device=device,
                    function=trunk,
                )
                if len(episode.query)
                else support_inputs[:0]
            )
            model = working_copy(backbone, device)
            last_ids = {id(p) for p in model.last_stage_parameters()}  # type: ignore[operator]
            trainable = [p for p in model.parameters() if id(p) in last_ids]
            for param in model.parameters():
                param.requires_grad_(id(param) in last_ids)
            last_modules = list(model.last_stage_modules())  # type: ignore[operator]
            forward_last: Callable[[torch.Tensor], torch.Tensor] = model.forward_last  # type: ignore[assignment]

            def encode(inputs: torch.Tensor, training: bool) -> torch.Tensor:
                for module in last_modules:
                    module.train(training)
                return forward_last(inputs)

        else:  # all
            model = working_copy(backbone, device)
            trainable = list(model.parameters())
            preprocessing = getattr(backbone, "preprocessing", None)
            if augment and not isinstance(preprocessing, Preprocessing):
                raise ConfigurationError(
                    "augmentation needs the backbone's preprocessing (mean/std); "
                    "use an anyshot Backbone or pass augment=False"
                )
            augmentation = Augmentation(flip=self.flip)
            network = model
            support_inputs, query_inputs = episode.support, episode.query

            def encode(inputs: torch.Tensor, training: bool) -> torch.Tensor:
                network.train(training)
                if training and augment:
                    assert isinstance(preprocessing, Preprocessing)
                    inputs = augmentation(inputs, preprocessing, generator)
                output: torch.Tensor = network(inputs)
                return output

        # Support-based initialisation from un-augmented embeddings, eval mode.
        n_support, n_query = len(support_inputs), len(query_inputs)
        center = None
        with torch.no_grad():
            init = torch.cat(
                [
                    encode(b.to(device), False)
                    for b in image_batches(support_inputs, self.batch_size)
                ]
            )
            if self.center:
                seen = [init]
                if n_query:
                    seen += [
                        encode(b.to(device), False)
                        for b in image_batches(query_inputs, self.batch_size)
                    ]
                center = episode_center(torch.cat(seen), relu=self.relu)
        if center is None:
            init_weight = normalized_class_means(init, targets, episode.ways, relu=self.relu)
        else:
            unit = unit_embeddings(init, relu=self.relu, center=center)
            init_weight = normalized_class_means(unit, targets, episode.ways, relu=False)
        ways = episode.ways
        likelihood = self.likelihood_weight > 0
        two_runs = self.adaptive_balance and self.balance_weight > 0 and n_query > 0
        # scope last / all train ``model`` in place: a second run starts from the same weights
        initial_state = (
            {k: v.detach().clone() for k, v in model.state_dict().items()}
            if two_runs and model is not None
            else None
        )

        def train(balance_weight: float) -> tuple[CosineClassifier, torch.Tensor]:
            """One training run from the initialisation; the classifier and query logits."""
            query_step = self.entropy_weight > 0 or balance_weight > 0 or likelihood
            generator.manual_seed(self.seed)
            if initial_state is not None:
                assert model is not None
                model.load_state_dict(initial_state)
            classifier = CosineClassifier(
                init_weight,
                temperature=self.temperature,
                relu=self.relu,
                center=center,
                normalize_weight=likelihood,
            ).to(device)
            head_params = [classifier.weight] if likelihood else list(classifier.parameters())
            classifier.bias.requires_grad_(not likelihood)
            optimizer = torch.optim.Adam([*trainable, *head_params], lr=self.lr)
            log_prior = torch.full((ways,), -math.log(ways), device=device)

            for _ in range(self.epochs):
                optimizer.zero_grad(set_to_none=True)
                order = torch.randperm(n_support, generator=generator)
                for batch_order in order.split(self.batch_size):
                    batch = next(image_batches(support_inputs, len(batch_order), batch_order))
                    logits = classifier(encode(batch.to(device), True))
                    loss = F.cross_entropy(logits, targets[batch_order.to(device)], reduction="sum")
                    (loss / n_support).backward()
                optimizer.step()
                if query_step and n_query > 0:
                    optimizer.zero_grad(set_to_none=True)
                    order = torch.randperm(n_query, generator=generator)
                    chunks = order.split(self.batch_size)
                    balance_grad = None
                    if balance_weight > 0 and len(chunks) > 1:
                        # d H(mean p) / d p_i = -(log mean p + 1) / Q: a no-grad pass gives mean p
                        with torch.no_grad():
                            mean_p = torch.cat(
                                [
                                    F.softmax(classifier(encode(b.to(device), True)), dim=1)
                                    for b in image_batches(query_inputs, self.batch_size, order)
                                ]
                            ).mean(0)
                        balance_grad = -(torch.log(mean_p.clamp_min(1e-12)) + 1)
                    responsibilities = torch.zeros(ways, device=device)
                    for batch_order in chunks:
                        batch = next(image_batches(query_inputs, len(batch_order), batch_order))
                        logits = classifier(encode(batch.to(device), True))
                        loss = self.entropy_weight * prediction_entropy(logits).sum() / n_query
                        if likelihood:
                            joint = logits + log_prior
                            log_likelihood = torch.logsumexp(joint, dim=1).sum() / n_query
                            loss = loss - self.likelihood_weight * log_likelihood
                            responsibilities += F.softmax(joint.detach(), dim=1).sum(0)
                        if balance_weight > 0:
                            p = F.softmax(logits, dim=1)
                            if balance_grad is None:  # one chunk: the exact marginal entropy
                                marginal = p.mean(0)
                                balance = -(marginal * torch.log(marginal.clamp_min(1e-12))).sum()
                            else:
                                balance = (p * balance_grad).sum() / n_query
                            loss = loss - balance_weight * balance
                        loss.backward()
                    optimizer.step()
                    if likelihood:
                        log_prior = estimated_log_prior(responsibilities, n_query, self.prior_count)

            if likelihood:
                with torch.no_grad():
                    classifier.bias.copy_(log_prior)
            if n_query == 0:
                logits = torch.empty(0, episode.ways)
            else:
                with torch.no_grad():
                    logits = torch.cat(
                        [
                            classifier(encode(b.to(device), False)).float().cpu()
                            for b in image_batches(query_inputs, self.batch_size)
                        ]
                    )
            return classifier, logits

        if two_runs:
            classifier, logits = train(0.0)
            counts = torch.bincount(logits.argmax(1), minlength=ways)
            if not bool(looks_balanced(counts)):
                return FineTuned(classifier=classifier, network=model, query_logits=logits)
        classifier, logits = train(self.balance_weight)
        return FineTuned(classifier=classifier, network=model, query_logits=logits)


@dataclass(frozen=True)
class TransductiveFineTuning(FineTuning):
    """Fine-tuning plus the query-entropy step (``entropy_weight`` = lambda = 1 by default)."""

    entropy_weight: float = 1.0
