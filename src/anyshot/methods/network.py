"""Fine-tuning through the network: scopes ``last`` (last stage + head) and ``all`` (the paper).

The objective is that of :mod:`anyshot.methods.objective`, as in the head loop, but images (or
the frozen trunk's activations) pass through a trainable copy of the backbone, so each step's
gradient is accumulated over chunks of ``batch_size`` inputs: a support of any size fits in
bounded memory and gives the same step as one big batch would (up to batch-norm statistics,
which are per chunk in training mode). With several query chunks the balance term is
linearised around the whole query set's mean prediction (its exact gradient).

* ``all``: every parameter trains, augmentation optional; batch-norm keeps the stored
  statistics (``norm_statistics="pretrained"``) or normalises each chunk by its own (training
  mode), the statistics then re-estimated on the episode's images (``"episode"``) or left as
  batch-norm's running averages (``"batch"``).
* ``last``: the frozen trunk's activations are computed once (eval mode, no augmentation) and
  only the last stage trains, its batch-norm layers in eval mode (the pre-trained statistics:
  a few-shot support is too small and skewed for batch statistics, and with the stage's weights
  standing still the result is the head's; in training mode the same episodes lost 7.5 points,
  ``studies/scope-probe/``).

The caller's backbone is never modified: training happens on a copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from anyshot.data.augment import Augmentation
from anyshot.data.images import Preprocessing
from anyshot.episodes import Episode, Images, image_batches
from anyshot.errors import ConfigurationError
from anyshot.methods.cosine import (
    CosineClassifier,
    class_means,
    run_centers,
    transductive_center,
    unit_embeddings,
)
from anyshot.methods.features import EpisodeRows, FittedHead
from anyshot.methods.frozen import evaluation_mode, frozen_forward, working_copy
from anyshot.methods.head import HeadTraining, queries_look_balanced, safeguarded
from anyshot.methods.objective import (
    QueryWeights,
    class_balanced_weights,
    estimated_log_prior,
    marginal_entropy_gradient,
    query_loss,
    support_loss,
    uniform_log_prior,
)
from anyshot.progress import progress_bar

__all__ = [
    "FineTuned",
    "NetworkTraining",
    "TrainableNetwork",
    "episode_statistics",
    "seconds_per_image",
    "train_network",
    "trainable_network",
]

#: Batch-norm layers (kept in eval mode at scope ``last``, and at ``all`` unless
#: ``norm_statistics`` says otherwise).
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)

#: ``encode(inputs [B, ...], training) -> embeddings [B, D]``.
Encoder = Callable[[torch.Tensor, bool], torch.Tensor]


@dataclass(frozen=True)
class FineTuned:
    """What fine-tuning produced: the trained model, not only its query logits.

    Attributes:
        classifier: the trained cosine classifier (weights ``[K, D]``, bias ``[K]``).
        network: the trained copy of the backbone (scope ``last`` / ``all``), or ``None`` for
            scope ``head`` (the backbone was not trained). Its ``training`` flags are whatever
            training left; call ``.eval()`` before embedding.
        query_logits: ``[Q, K]`` logits of the episode's query images (CPU, float32).
        fallback: which safeguard answered instead of the transductive fit: ``"gate"`` (too
            few queries: at scope ``head`` the inductive head, at ``last`` / ``all``
            support-based initialisation, untrained), ``"guard"`` (the trained answer disagreed:
            support-based initialisation), or ``None``.
        epochs: the epochs the network trained (scopes ``last`` / ``all``; fewer than asked
            when the time budget stopped it; 0 when a safeguard answered), ``None`` at scope
            ``head``.
        answer: scope ``head``: which head answered (:func:`anyshot.methods.features.answer_of`:
            ``"first"``, ``"tsallis"``, ``"gate"``, ``"guard"``, or ``None``); ``None`` at
            scopes ``last`` / ``all`` (see ``fallback``).
    """

    classifier: CosineClassifier
    network: nn.Module | None
    query_logits: torch.Tensor
    fallback: str | None = None
    epochs: int | None = None
    answer: str | None = None

    def calibrated(self, confidence_temperature: float, fallback_temperature: float) -> FineTuned:
        """The same result with the classifier's logits divided by ``fallback_temperature``
        when a safeguard answered, else by ``confidence_temperature``
        (:meth:`anyshot.methods.features.FittedHead.calibrated`)."""
        tau = confidence_temperature if self.fallback is None else fallback_temperature
        if tau == 1.0:
            return self
        head = _as_fitted(self).calibrated(tau, tau)
        return replace(self, classifier=head.classifier(0), query_logits=head.query_logits[0])


@dataclass(frozen=True)
class NetworkTraining:
    """Settings of network fine-tuning: the head's, plus what images need.

    Attributes:
        scope: ``"last"`` or ``"all"``.
        head: the objective and optimiser settings (shared with the head loop).
        batch_size: inputs per chunk of a step.
        augment: apply the pre-training augmentations while training (scope ``all``).
        flip: include horizontal flips in the augmentation.
        norm_statistics: scope ``all``'s batch-norm: ``"pretrained"``
            (eval mode while training), ``"episode"`` (training mode, then
            :func:`episode_statistics`) or ``"batch"`` (training mode).
        seed: seed of the augmentation and chunk-order draws.
        network_lr: Adam learning rate of the network's parameters (the head's: ``head.lr``).
        time_budget: seconds the epochs of :func:`train_network` may take, from the start of
            the first: an epoch starts only if the mean epoch so far would end within it (the
            first always runs); the forward passes before and after the epochs (statistics,
            frozen and query embeddings) are not counted. ``None`` = no limit.
        show_progress: a progress bar of the epochs (rate, ETA) on stderr.
    """

    scope: str
    head: HeadTraining
    batch_size: int
    augment: bool
    flip: bool
    norm_statistics: str
    seed: int
    network_lr: float
    time_budget: float | None = None
    show_progress: bool = False


@dataclass
class TrainableNetwork:
    """The trainable part of a backbone and its inputs for one episode.

    Attributes:
        model: the trained copy of the backbone.
        parameters: the parameters that train (the classifier's are added).
        support: inputs of the support images (images, or trunk activations for ``last``).
        query: inputs of the query images.
        encode: ``encode(inputs, training) -> [B, D]`` embeddings.
        device: where training happens.
        generator: the seeded source of augmentation and chunk-order draws.
        deadline: ``time.monotonic()`` value after which no epoch starts (``None``: none);
            set by :func:`train_network` from the settings' ``time_budget``.
        epochs_run: epochs the last training run ran (fewer than asked when the deadline
            stopped it).
    """

    model: nn.Module
    parameters: list[nn.Parameter]
    support: Images
    query: Images
    encode: Encoder
    device: torch.device
    generator: torch.Generator
    deadline: float | None = None
    epochs_run: int = 0


def trainable_network(
    settings: NetworkTraining, backbone: nn.Module, episode: Episode, device: torch.device
) -> TrainableNetwork:
    """A trainable copy of ``backbone`` for ``episode`` at scope ``last`` or ``all``."""
    generator = torch.Generator().manual_seed(settings.seed)
    if settings.scope == "last":
        return _last_stage(settings, backbone, episode, device, generator)
    model = channels_last(working_copy(backbone, device), device)
    preprocessing = getattr(backbone, "preprocessing", None)
    if settings.augment and not isinstance(preprocessing, Preprocessing):
        raise ConfigurationError(
            "augmentation needs the backbone's preprocessing (mean/std); "
            "use an anyshot Backbone or pass augment=False"
        )
    augmentation = Augmentation(flip=settings.flip)
    pretrained = settings.norm_statistics == "pretrained"  # else training mode
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORM)] if pretrained else []

    def encode(inputs: torch.Tensor, training: bool) -> torch.Tensor:
        model.train(training)
        for norm in norms:  # the stored statistics, whatever the mode
            norm.eval()
        if training and settings.augment:
            assert isinstance(preprocessing, Preprocessing)
            inputs = augmentation(inputs, preprocessing, generator)
        output: torch.Tensor = model(channels_last(inputs, device))
        return output

    return TrainableNetwork(
        model, list(model.parameters()), episode.support, episode.query, encode, device, generator
    )


def _last_stage(
    settings: NetworkTraining,
    backbone: nn.Module,
    episode: Episode,
    device: torch.device,
    generator: torch.Generator,
) -> TrainableNetwork:
    """Scope ``last``: frozen trunk activations once, the last stage trainable."""
    for name in ("forward_trunk", "forward_last", "last_stage_parameters"):
        if not hasattr(backbone, name):
            raise ConfigurationError(
                f"scope='last' needs an anyshot Backbone (with {name}); "
                f"{type(backbone).__name__} is a plain module: use scope 'all' or 'head'"
            )

    def trunk(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m.forward_trunk(x)  # type: ignore[operator]

    def activations(images: Images) -> torch.Tensor:
        return frozen_forward(
            backbone, images, batch_size=settings.batch_size, device=device, function=trunk
        )

    support = activations(episode.support)
    query = activations(episode.query) if len(episode.query) else support[:0]
    model = channels_last(working_copy(backbone, device), device)
    last_ids = {id(p) for p in model.last_stage_parameters()}  # type: ignore[operator]
    for param in model.parameters():
        param.requires_grad_(id(param) in last_ids)
    last_modules = list(model.last_stage_modules())  # type: ignore[operator]
    forward_last: Callable[[torch.Tensor], torch.Tensor] = model.forward_last  # type: ignore[assignment]

    norms = [m for stage in last_modules for m in stage.modules() if isinstance(m, _BATCH_NORM)]

    def encode(inputs: torch.Tensor, training: bool) -> torch.Tensor:
        for module in last_modules:
            module.train(training)
        for norm in norms:  # the pre-trained statistics, whatever the mode
            norm.eval()
        return forward_last(channels_last(inputs, device))

    trainable = [p for p in model.parameters() if id(p) in last_ids]
    return TrainableNetwork(model, trainable, support, query, encode, device, generator)


Layout = TypeVar("Layout", nn.Module, torch.Tensor)


def channels_last(value: Layout, device: torch.device) -> Layout:
    """``value`` (a module, or a 4-d input batch) in channels-last memory layout on a CPU, and
    unchanged on other devices: on a 2-core CPU a 20-way 5-shot EfficientNet-Lite0 fit at 105 px
    ran 1.58 times faster so, a training pass 1.1-2 times from 84 to 224 px
    (``benchmarks/network_training_speed.py``; bfloat16 autocast slowed channels-last down).
    The same numbers in another layout: each step agrees to float rounding, which over many
    steps moves individual predictions (not the accuracy)."""
    if device.type != "cpu":
        return value
    if isinstance(value, torch.Tensor):
        return value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
    return value.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def episode_statistics(network: TrainableNetwork, batch_size: int) -> None:
    """Re-estimate every batch-norm layer's statistics of ``network.model`` on the episode's
    support and query images (un-augmented, no gradients; only the batch-norm layers in
    training mode), each layer's mean and variance the average over chunks of ``batch_size``
    images weighted by their sizes. A chunk of one image (batch-norm cannot normalise it) is
    skipped; with no larger chunk the statistics stay as they were."""
    model = network.model
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORM)]
    momenta = [norm.momentum for norm in norms]
    seen = 0
    with torch.no_grad(), evaluation_mode(model):
        for norm in norms:
            norm.train()
        for inputs in (network.support, network.query):
            for batch in image_batches(inputs, batch_size):
                if len(batch) < 2:
                    continue
                seen += len(batch)
                for norm in norms:  # the running value becomes the size-weighted average
                    norm.momentum = len(batch) / seen
                model(batch.to(network.device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum


def seconds_per_image(network: TrainableNetwork, batch_size: int) -> float:
    """Measured seconds of one training pass (forward and backward, training mode, as an epoch
    runs them) per support image of ``network``: the second of two passes over a chunk of up
    to ``batch_size`` support images (the first warms up). ``network`` is a probe: its
    gradients are cleared after, but its generator and (in training mode) its batch-norm
    statistics have moved, so train a fresh :func:`trainable_network`."""
    batch = next(image_batches(network.support, batch_size)).to(network.device)
    seconds = 0.0
    for _ in range(2):
        began = time.perf_counter()
        network.encode(batch, True).float().square().mean().backward()
        if network.device.type == "cuda":
            torch.cuda.synchronize(network.device)
        seconds = time.perf_counter() - began
    for param in network.parameters:
        param.grad = None
    return seconds / len(batch)


def _embed(network: TrainableNetwork, inputs: Images, batch_size: int) -> torch.Tensor:
    """``[N, D]`` embeddings of ``inputs`` in eval mode, without gradients."""
    with torch.no_grad():
        return torch.cat(
            [network.encode(b.to(network.device), False) for b in image_batches(inputs, batch_size)]
        )


def train_network(
    settings: NetworkTraining, network: TrainableNetwork, targets: torch.Tensor, ways: int
) -> FineTuned:
    """Fine-tune ``network`` and a cosine head on the support (and queries); see the module doc.

    The gate and the guard of :func:`anyshot.methods.head.safeguarded` (``min_queries_per_class``,
    ``min_agreement``) compare with support-based initialisation on the frozen backbone's
    embeddings (the untrained copy in eval mode, as the initialisation uses). When the episode
    falls back, the result is that classifier and its query logits, and ``network.model`` is
    left untrained: the gate (which counts the query classes with head fine-tuning on those
    frozen embeddings) trains nothing, the guard restores the initial state (so the returned
    network embeds as the caller's backbone does). With ``norm_statistics="episode"`` the
    statistics are re-estimated on the episode first, so those frozen embeddings and a
    fallen-back network carry the episode's statistics.

    Args:
        settings: the scope's settings.
        network: from :func:`trainable_network`; its ``model`` is trained in place.
        targets: ``[S]`` support class indices (on ``network.device``).
        ways: ``K``.
    """
    head = settings.head
    if settings.norm_statistics == "episode":  # initialise under the statistics it trains with
        episode_statistics(network, settings.batch_size)
    frozen = _frozen_rows(settings, network, targets, ways)
    if settings.time_budget is not None:  # the epochs' share, from the first epoch
        network.deadline = time.monotonic() + settings.time_budget
    two_runs = head.adaptive_balance and head.weights.balance > 0 and len(network.query) > 0
    initial_state = None
    if two_runs or head.min_agreement > 0:
        initial_state = {k: v.detach().clone() for k, v in network.model.state_dict().items()}
    trained: list[FineTuned] = []

    def train(rows: EpisodeRows) -> FittedHead:
        trained.append(_train_runs(settings, network, rows, initial_state if two_runs else None))
        return _as_fitted(trained[-1])

    fitted, fallback, gated = safeguarded(head, frozen, train)
    if not bool(fallback[0]):
        return replace(trained[0], epochs=network.epochs_run)
    if trained:
        assert initial_state is not None
        network.model.load_state_dict(initial_state)
    reason = "gate" if bool(gated[0]) else "guard"
    return FineTuned(fitted.classifier(0), network.model, fitted.query_logits[0], reason, 0)


def _frozen_rows(
    settings: NetworkTraining, network: TrainableNetwork, targets: torch.Tensor, ways: int
) -> EpisodeRows:
    """The untrained network's embeddings (eval mode) as one episode ``E = 1``; the query rows
    only when the centre or a safeguard needs them (otherwise none)."""
    head = settings.head
    support = _embed(network, network.support, settings.batch_size)
    query = support[:0]
    centred = head.center and (head.center_on != "support" or head.unequal_balance_test)
    wanted = head.safeguards or centred
    if wanted and len(network.query):
        query = _embed(network, network.query, settings.batch_size)
    return EpisodeRows(support[None], targets[None], query[None], ways)


def _train_runs(
    settings: NetworkTraining,
    network: TrainableNetwork,
    frozen: EpisodeRows,
    initial_state: dict[str, torch.Tensor] | None,
) -> FineTuned:
    """Training from the initialisation on ``frozen`` (:func:`_frozen_rows`): one run, or with
    ``initial_state`` (adaptive balance) a run without the balance term and, when its
    predictions look balanced, a second one with it from ``initial_state``."""
    head = settings.head
    first_on, second_on = run_centers(head.center_on)
    weights = head.weights
    if initial_state is not None:
        run = _initial_run(settings, network, frozen, first_on)
        classifier, logits = run(replace(weights, balance=0.0))
        if not bool(queries_look_balanced(head, logits[None], frozen)[0]):
            return FineTuned(classifier, network.model, logits)
        network.model.load_state_dict(initial_state)
        classifier, logits = _initial_run(settings, network, frozen, second_on)(weights)
        return FineTuned(classifier, network.model, logits)
    classifier, logits = _initial_run(settings, network, frozen, first_on)(weights)
    return FineTuned(classifier, network.model, logits)


def _initial_run(
    settings: NetworkTraining, network: TrainableNetwork, frozen: EpisodeRows, center_on: str
) -> _Run:
    """A training run from support-based initialisation on the frozen embeddings, centred on
    ``center_on``'s centre when centring is on."""
    head = settings.head
    init, center = frozen.support[0], None
    if head.center:
        center = transductive_center(
            center_on,
            frozen.support,
            frozen.targets,
            frozen.query,
            frozen.ways,
            relu=head.relu,
        )[0, 0]  # [D]
        init = unit_embeddings(init, relu=head.relu, center=center)
    init_weight = class_means(
        init[None], frozen.targets, frozen.ways, relu=head.relu and center is None
    )
    return _Run(settings, network, frozen.targets[0], init_weight[0], center)


def _as_fitted(fine_tuned: FineTuned) -> FittedHead:
    """A trained classifier and its query logits as a :class:`FittedHead` of one episode (its
    logits are those of the trained network's embeddings)."""
    classifier = fine_tuned.classifier
    center = classifier.center
    return FittedHead(
        classifier.weight.detach()[None],
        classifier.bias.detach()[None],
        None if center is None else center[None, None],
        classifier.temperature,
        classifier.relu,
        classifier.normalize_weight,
        fine_tuned.query_logits[None],
    )


@dataclass
class _Run:
    """One training run from the initialisation (callable with the query weights to use)."""

    settings: NetworkTraining
    network: TrainableNetwork
    targets: torch.Tensor
    init_weight: torch.Tensor
    center: torch.Tensor | None

    def __call__(self, weights: QueryWeights) -> tuple[CosineClassifier, torch.Tensor]:
        """``(trained classifier, query logits [Q, K] CPU float32)``."""
        head, net = self.settings.head, self.network
        net.generator.manual_seed(self.settings.seed)
        likelihood = weights.likelihood > 0
        classifier = CosineClassifier(
            self.init_weight,
            temperature=head.temperature,
            relu=head.relu,
            center=self.center,
            normalize_weight=likelihood,
        ).to(net.device)
        classifier.bias.requires_grad_(not likelihood)
        head_params = [classifier.weight] if likelihood else list(classifier.parameters())
        optimizer = torch.optim.Adam(
            [
                {"params": list(net.parameters), "lr": self.settings.network_lr},
                {"params": head_params, "lr": head.lr},
            ]
        )
        log_prior = uniform_log_prior((), classifier.weight.shape[0], net.device)
        net.epochs_run = 0
        bar = progress_bar(
            total=head.epochs, desc="fine-tuning", unit="epoch", enabled=self.settings.show_progress
        )
        class_weights = None
        if head.balanced_support:
            class_weights = class_balanced_weights(self.targets, classifier.weight.shape[0])
        began = time.monotonic()
        for epoch in range(head.epochs):
            if epoch and not self._time_left(epoch, began):
                break
            optimizer.zero_grad(set_to_none=True)
            self._support_step(classifier, class_weights)
            optimizer.step()
            if weights.any and len(net.query) > 0:
                optimizer.zero_grad(set_to_none=True)
                responsibilities = self._query_step(classifier, weights, log_prior)
                optimizer.step()
                if likelihood:
                    log_prior = estimated_log_prior(
                        responsibilities,
                        len(net.query),
                        head.prior_count,
                        empirical_bayes=head.empirical_bayes,
                    )
            net.epochs_run += 1
            bar.update()
        bar.close()
        if likelihood:
            with torch.no_grad():
                classifier.bias.copy_(log_prior)
        if self.settings.norm_statistics == "episode":
            episode_statistics(net, self.settings.batch_size)
        logits = torch.empty(0, classifier.weight.shape[0])
        if len(net.query):
            with torch.no_grad():
                logits = classifier(_embed(net, net.query, self.settings.batch_size)).float().cpu()
        return classifier, logits

    def _time_left(self, epochs_done: int, began: float) -> bool:
        """Whether another epoch, as long as the mean of the ``epochs_done`` so far (begun at
        ``began``), ends before the network's deadline (always, without one)."""
        deadline = self.network.deadline
        if deadline is None:
            return True
        now = time.monotonic()
        return now + (now - began) / epochs_done <= deadline

    def _order(self, count: int) -> list[torch.Tensor]:
        """Positions ``0..count-1`` in a seeded random order, split into chunks."""
        order = torch.randperm(count, generator=self.network.generator)
        return list(order.split(self.settings.batch_size))

    def _batches(self, inputs: Images, parts: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The chunks ``parts`` of ``inputs``, one at a time, on the training device."""
        for part in parts:
            yield next(image_batches(inputs, len(part), part)).to(self.network.device)

    def _support_step(self, classifier: CosineClassifier, weights: torch.Tensor | None) -> None:
        """Accumulate the support cross-entropy's gradient over chunks; ``weights`` ``[K]``:
        the whole support's class weights (:func:`class_balanced_weights`) or ``None``."""
        net = self.network
        parts = self._order(len(net.support))
        for positions, batch in zip(parts, self._batches(net.support, parts), strict=True):
            logits = classifier(net.encode(batch, True))
            target = self.targets[positions.to(net.device)]
            support_loss(logits, target, len(net.support), weights).backward()

    def _query_step(
        self, classifier: CosineClassifier, weights: QueryWeights, log_prior: torch.Tensor
    ) -> torch.Tensor:
        """Accumulate the query terms' gradient over chunks; the summed responsibilities."""
        net = self.network
        parts = self._order(len(net.query))
        balance_gradient = None
        if weights.balance > 0 and len(parts) > 1:
            # d H(mean p) / d p_i = H'(mean p) / Q: a no-grad pass gives mean p
            with torch.no_grad():
                mean_p = torch.cat(
                    [
                        F.softmax(classifier(net.encode(b, True)), dim=1)
                        for b in self._batches(net.query, parts)
                    ]
                ).mean(0)
            balance_gradient = marginal_entropy_gradient(mean_p, weights.order)
        responsibilities = torch.zeros_like(log_prior)
        for batch in self._batches(net.query, parts):
            logits = classifier(net.encode(batch, True))
            loss, part = query_loss(
                logits, weights, len(net.query), log_prior, balance_gradient=balance_gradient
            )
            loss.backward()
            responsibilities += part
        return responsibilities
