"""What to train, chosen from the labelled images: the scope rule behind ``--scope auto``.

The rule (``studies/scope-curve/``, val classes of mini-ImageNet, Omniglot and scikit-learn's
digits, 1 to 200 labelled images per class, beside a logistic regression on frozen features
and full fine-tuning with a standard transfer recipe):

1. **Domain.** When the frozen backbone already tells the classes apart (the mean cosine
   between embeddings of labelled images of different classes,
   :func:`~anyshot.methods.cosine.cross_class_similarity`, below ``far_domain_similarity``:
   0.32-0.38 on mini-ImageNet), the head is trained on frozen embeddings (``head``, by
   default :data:`~anyshot.methods.presets.RECOMMENDED`): training the network lost to it there
   at every count of labelled images measured (1 to 200 per class). When the classes look
   alike to it (0.54-0.61 on Omniglot and digits), every parameter is trained (``network``,
   by default :data:`~anyshot.methods.presets.NETWORK`): up to 24 points above the head with
   one image per class.
2. **Batch-norm statistics.** At scope ``all`` with at least ``episode_statistics_shots``
   labelled images per class, batch-norm statistics are re-estimated on the episode's images
   (``norm_statistics="episode"``): 8.5 and 14.5 points above the stored ones on 20 and 100
   digits per class, 6 points below them on 1-shot Omniglot.
3. **Time.** The network's training time is estimated from a measured training pass before it
   starts; when it would not fit the time budget the epochs are cut to fit, and when fewer
   than ``min_epoch_fraction`` of them would fit, the head is trained instead. Training then
   stops at the budget whatever the estimate said (:class:`~anyshot.methods.FineTuning`'s
   ``time_budget``).
4. **Input size.** The network trains at the images' own size within :data:`NETWORK_SIDES`
   (:func:`network_image_size`; the estimator does it unless given an ``image_size``), as the
   study did: small images are not enlarged to 224 px for it.

The rule is a method like the others (``rule(backbone, episode) -> query logits``, on the
episode's images as given: step 4 is the estimator's, which reads the image files);
:meth:`ScopeRule.domain_choice` and :meth:`ScopeRule.network_choice` are the decision in two
pure steps, which :meth:`ScopeRule.choose` and :class:`~anyshot.classifier.FewShotClassifier`
(embeddings from its feature cache, the timing pass at the images' own size) both call.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError
from anyshot.methods.cosine import cross_class_similarity
from anyshot.methods.finetune import FineTuning
from anyshot.methods.frozen import frozen_forward, resolve_device
from anyshot.methods.presets import NETWORK, RECOMMENDED
from anyshot.methods.support_init import SupportBasedInit

__all__ = [
    "FEW_SHOTS",
    "FEW_SHOT_BUDGET",
    "MANY_SHOT_BUDGET",
    "NETWORK_SIDES",
    "ScopeChoice",
    "ScopeRule",
    "network_image_size",
]

#: Default time budget (seconds) with at most 5 labelled images per class, and above: a few
#: labels are answered within a minute, many within ten minutes.
FEW_SHOT_BUDGET, MANY_SHOT_BUDGET = 60.0, 600.0

#: Labelled images per class up to which :data:`FEW_SHOT_BUDGET` applies.
FEW_SHOTS = 5

#: Images of the support whose training pass is timed.
PROBE_IMAGES = 16

#: The input sides (pixels) the network trains within: the images' own size, clamped.
NETWORK_SIDES = (64, 224)


def network_image_size(native_side: int | None) -> int | None:
    """The input side the network trains at for images whose longer side is ``native_side``
    (``None``: unknown, keep the backbone's): their own size within :data:`NETWORK_SIDES`. The
    val study trained at 84 px for Omniglot's 105 px characters and 64 px for 8 px digits;
    a training pass costs about 4 times more at 224 px than at 84 (EfficientNet-Lite0,
    channels-last, a 2-core CPU: ``benchmarks/network_training_speed.py``), so small images
    are not enlarged for it."""
    if native_side is None:
        return None
    low, high = NETWORK_SIDES
    return min(high, max(low, native_side))


@dataclass(frozen=True)
class ScopeChoice:
    """What :meth:`ScopeRule.choose` decided.

    Attributes:
        method: the method to run (a candidate of the rule, its epochs and statistics set).
        reason: why, in a sentence for the user.
        similarity: the labelled images' cross-class similarity.
        estimated_seconds: the network's estimated training time (``None`` when not
            estimated: the head was chosen on the domain alone).
    """

    method: SupportBasedInit | FineTuning
    reason: str
    similarity: float
    estimated_seconds: float | None = None

    @property
    def scope(self) -> str:
        """``"head"`` (support-init too) or the network's scope."""
        return getattr(self.method, "scope", "head")


@dataclass(frozen=True)
class ScopeRule:
    """Train the head or the network, by the labelled images' domain, count and time.

    Args:
        head: the method on frozen embeddings (scope ``head`` or support-init).
        network: the method that trains the network (scope ``last`` or ``all``).
        far_domain_similarity: cross-class similarity from which the network trains.
        episode_statistics_shots: labelled images per class from which scope ``all``
            re-estimates batch-norm statistics on the episode (``inf`` = never).
        time_budget: seconds a fit that trains the network may take (the estimate decides the
            epochs, and the epochs stop at what is left of it; see step 3); ``None`` =
            :data:`FEW_SHOT_BUDGET` up to 5 labelled images per class,
            :data:`MANY_SHOT_BUDGET` above.
        min_epoch_fraction: the least share of the network's epochs worth running within
            the budget; with fewer the head trains.
    """

    head: SupportBasedInit | FineTuning = RECOMMENDED
    network: FineTuning = NETWORK
    far_domain_similarity: float = 0.46
    episode_statistics_shots: float = 5.0
    time_budget: float | None = None
    min_epoch_fraction: float = 0.4

    def __post_init__(self) -> None:
        if isinstance(self.head, FineTuning) and self.head.scope != "head":
            raise ConfigurationError(f"head must train scope 'head', got {self.head.scope!r}")
        if self.network.scope == "head":
            raise ConfigurationError("network must train scope 'last' or 'all', got 'head'")
        if self.time_budget is not None and not 0 < self.time_budget < math.inf:
            raise ConfigurationError(
                f"time_budget must be a positive number of seconds or None, got {self.time_budget}"
            )
        if not 0 <= self.min_epoch_fraction <= 1:
            raise ConfigurationError(
                f"min_epoch_fraction must lie in [0, 1], got {self.min_epoch_fraction}"
            )

    def budget(self, shots: float) -> float:
        """The time budget in seconds for ``shots`` labelled images per class."""
        if self.time_budget is not None:
            return self.time_budget
        return FEW_SHOT_BUDGET if shots <= FEW_SHOTS else MANY_SHOT_BUDGET

    def domain_choice(self, support: torch.Tensor, targets: torch.Tensor) -> ScopeChoice | None:
        """The head's choice when the frozen embeddings ``[S, D]`` of the labelled images
        (``targets [S]``) tell the classes apart; ``None`` when the network should train."""
        similarity = cross_class_similarity(support, targets)
        if similarity >= self.far_domain_similarity:
            return None
        reason = (
            f"head: the frozen backbone tells the classes apart (cross-class similarity "
            f"{similarity:.2f} < {self.far_domain_similarity:g}), where training the network "
            "lost to the head on validation classes"
        )
        return ScopeChoice(self.head, reason, similarity)

    def network_choice(
        self,
        similarity: float,
        support: int,
        query: int,
        ways: int,
        seconds_per_image: float,
        spent: float = 0.0,
    ) -> ScopeChoice:
        """The choice for a domain where the network should train, from a measured training
        pass (``seconds_per_image``), ``support`` labelled and ``query`` other images of
        ``ways`` classes, and the ``spent`` seconds of the fit so far."""
        shots = support / ways
        network = self.network
        if network.scope == "all" and shots >= self.episode_statistics_shots:
            network = dataclasses.replace(network, norm_statistics="episode")
        budget = self.budget(shots)
        steps = 2 if network.transductive else 1
        per_epoch = seconds_per_image * (support if steps == 1 else support + query)
        passes = 2 + (2 if network.norm_statistics == "episode" else 0)
        overhead = seconds_per_image / 3 * (support + query) * passes  # forward passes only
        estimate = overhead + per_epoch * network.epochs
        left = budget - spent - overhead
        fitting = min(network.epochs, int(left // per_epoch)) if left > 0 else 0
        alike = (
            f"the classes look alike to the frozen backbone (cross-class similarity "
            f"{similarity:.2f} >= {self.far_domain_similarity:g})"
        )
        if fitting < max(1, math.ceil(self.min_epoch_fraction * network.epochs)):
            reason = (
                f"head: {alike}, but training the network would take about {estimate:.0f} s, "
                f"over the time budget of {budget:.0f} s"
            )
            return ScopeChoice(self.head, reason, similarity, estimate)
        statistics = (
            "batch-norm statistics of these images"
            if network.norm_statistics == "episode"
            else "the stored batch-norm statistics"
        )
        epochs = f"{network.epochs} epoch{'s' if network.epochs != 1 else ''}"
        if fitting < network.epochs:
            epochs = f"{fitting} of {network.epochs} epochs (the time budget of {budget:.0f} s)"
            network = dataclasses.replace(network, epochs=fitting)
        # the forward passes around the epochs (statistics, query logits, the caller's
        # embeddings of the labelled images) are kept out of the epochs' share of the budget
        network = dataclasses.replace(network, time_budget=max(1.0, left))
        reason = (
            f"{network.scope}: {alike}, where training the network beat the head on "
            f"validation classes; {epochs}, {statistics}, about {estimate:.0f} s"
        )
        return ScopeChoice(network, reason, similarity, estimate)

    def choose(self, backbone: nn.Module, episode: Episode) -> ScopeChoice:
        """The choice for ``episode`` (embeds the support once, times a training pass when
        the domain calls for the network)."""
        began = time.monotonic()
        device = resolve_device(backbone, self.network.device)
        embeddings = frozen_forward(
            backbone, episode.support, batch_size=self.network.batch_size, device=device
        )
        head = self.domain_choice(embeddings, episode.support_targets)
        if head is not None:
            return head
        seconds = self.network.seconds_per_image(backbone, probe_episode(episode))
        return self.network_choice(
            cross_class_similarity(embeddings, episode.support_targets),
            len(episode.support),
            len(episode.query),
            episode.ways,
            seconds,
            time.monotonic() - began,
        )

    def __call__(self, backbone: nn.Module, episode: Episode) -> torch.Tensor:
        """Query logits ``[Q, K]`` (CPU, float32) of the chosen method."""
        return self.choose(backbone, episode).method(backbone, episode)


def probe_episode(episode: Episode) -> Episode:
    """The first :data:`PROBE_IMAGES` labelled images of ``episode`` as an episode of their
    own (``[P, C, H, W]``, no query images), for timing a training pass."""
    count = min(PROBE_IMAGES, len(episode.support))
    support = episode.support
    images = (
        support[:count]
        if isinstance(support, torch.Tensor)
        else torch.stack([support[i] for i in range(count)])
    )
    return Episode(images, episode.support_labels[:count], images[:0])
