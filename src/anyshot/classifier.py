"""The practitioner's estimator: :class:`FewShotClassifier`, scikit-learn style.

    clf = FewShotClassifier().fit(paths, labels, unlabeled=more_paths)
    clf.predict(new_paths)          # -> list of labels ("unknown" for none of the classes)
    clf.predict_proba(new_paths)    # -> numpy [N, K], columns in clf.classes_ order
    clf.outlier_score(new_paths)    # -> numpy [N], higher = more likely none of the classes
    clf.save("model.pt"); FewShotClassifier.load("model.pt")

Any number of shots in bounded memory: images are decoded, embedded and dropped ``batch_size`` at a
time; only the ``[N, D]`` embeddings are kept, and the default method (transductive fine-tuning of
the cosine head, :data:`anyshot.methods.presets.RECOMMENDED`) trains on them. A fitted
model is the backbone plus the trained :class:`~anyshot.methods.cosine.CosineClassifier` (weights
``[K, D]``, bias ``[K]``, temperature, ReLU): prediction needs no support images.

Scopes ``last`` and ``all`` fine-tune (part of) the backbone too; the fitted model then holds the
fine-tuned copy, and :meth:`FewShotClassifier.save` stores its weights.

Embedding is the fast path of :class:`~anyshot.feature_cache.FeatureCache`: bfloat16 where the
CPU has it (``precision="auto"``), channels-last, inference mode, and a feature cache: image
files already embedded by the same network (same weights, preprocessing, precision and layout)
are read back instead of embedded again, from this process's memory and from the folder
``cache_dir`` (default :func:`~anyshot.feature_cache.default_cache_dir`). A fine-tuned network
has other weights, hence other keys: its features never come from the frozen network's rows.

"None of these": :meth:`FewShotClassifier.outlier_score` is an image's cosine distance to the
nearest class mean of the labelled images (:func:`anyshot.outliers.outlier_distance`): when the
query / unlabelled images cover the classes, the mean of that distance with every row centred
on the mean of the images given to the fit (labelled, query and unlabelled:
:func:`anyshot.outliers.covering_centre`) and without; not centred otherwise. With
``unknown="auto"``
:meth:`~FewShotClassifier.predict` answers ``unknown_label`` above the threshold that
:func:`anyshot.outliers.unknown_threshold` sets from the labelled images alone (left-out
images, no outlier examples) for the target ``false_alarm_rate``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from anyshot.backbones.base import Backbone
from anyshot.backbones.preprocessing import resolve_preprocessing
from anyshot.deferred_network import DeferredNetwork, NamedBackbone, embed_with_both
from anyshot.embedding import (
    ImageList,
    OnUnreadable,
    Unreadable,
    as_images,
    check_images,
    memory_batch_size,
    native_side,
    select_images,
)
from anyshot.episodes import Episode
from anyshot.errors import ConfigurationError, DatasetError, EmptyClassError, EpisodeError
from anyshot.feature_cache import FeatureCache, default_cache_dir, fastest_dtype
from anyshot.methods.cosine import CosineClassifier, cross_class_similarity
from anyshot.methods.features import answer_of, fallback_of
from anyshot.methods.finetune import FineTuning
from anyshot.methods.presets import NETWORK, RECOMMENDED, Method
from anyshot.methods.registry import method_from_dict, method_to_dict
from anyshot.methods.scope_rule import (
    ScopeChoice,
    ScopeRule,
    network_image_size,
    probe_episode,
)
from anyshot.methods.support_init import SupportBasedInit
from anyshot.model_file import RegistryNetwork, SavedModel, load_model_file, save_model_file
from anyshot.outliers import (
    UnknownReference,
    class_means,
    covering_centre,
    mean_outlier_distance,
    unknown_reference,
)
from anyshot.threads import torch_threads

__all__ = ["DEFAULT_METHOD_REPR", "PRECISIONS", "UNKNOWN_MODES", "FewShotClassifier"]

#: How ``repr`` shows ``method=None``: what it resolves to.
DEFAULT_METHOD_REPR = "None (default: ScopeRule(), head RECOMMENDED / network NETWORK)"

#: ``precision`` values: ``"auto"`` (bfloat16 on a CPU with native bfloat16, else float32).
PRECISIONS = ("auto", "float32", "bfloat16")
#: ``unknown`` values: ``"auto"`` (flag images above the outlier threshold) or ``"off"``.
UNKNOWN_MODES = ("auto", "off")
#: The estimator's parameters (the keywords of ``__init__``), for get_params / set_params.
_PARAMS = (
    "backbone", "method", "image_size", "batch_size", "device", "seed", "show_progress",
    "cache_dir", "precision", "channels_last", "unknown", "unknown_label", "false_alarm_rate",
)  # fmt: skip


class _Fit(NamedTuple):
    """What one fit yields.

    Attributes:
        classifier: the trained cosine classifier.
        network: the embedding network (fine-tuned for scopes last / all; loaded only if an
            image had to be embedded, for the head).
        logits: ``[n_i, K]`` logits of each extra image set's readable images.
        kept_sets: positions of each extra set's readable images.
        kept: positions of the readable labelled images.
        fallback: which safeguard of a transductive method answered instead, if any.
        support_rows: ``[S', D]`` embeddings of the readable labelled images by the outlier
            network (``outlier_network``, else ``network``).
        targets: ``[S']`` their class indices.
        outlier_network: the untrained network when ``network`` was fine-tuned (outlier
            scores use its embeddings: the fine-tuned one fits the labelled images too
            closely for their distances to set a threshold); ``None`` otherwise.
        epochs: the epochs the network trained (``None`` at scope head).
        answer: which head of the transductive method answered (scope head:
            :func:`~anyshot.methods.features.answer_of`), or ``None``.
        other_rows: ``[U, D]`` embeddings of the extra sets' readable images (queries,
            unlabelled) by the network of ``support_rows``, or ``None`` (no extra sets).
    """

    classifier: CosineClassifier
    network: DeferredNetwork
    logits: list[torch.Tensor]
    kept_sets: list[list[int]]
    kept: list[int]
    fallback: str | None
    support_rows: torch.Tensor
    targets: torch.Tensor
    outlier_network: DeferredNetwork | None = None
    epochs: int | None = None
    answer: str | None = None
    other_rows: torch.Tensor | None = None


def _saved_outlier_network(
    network: DeferredNetwork | None,
) -> Backbone | RegistryNetwork | None:
    """What a model file keeps of the outlier scores' untrained network: its registry name
    when it is built from one with shipped weights (the same network again from the name and
    the installed package), else the network (a random initialisation may change with the
    torch version)."""
    if network is None:
        return None
    named = network.registry_name()
    loaded = network.network()
    if named is None or not getattr(loaded, "pretrained", False):
        return loaded
    return RegistryNetwork(named.spec, named.image_size, named.seed, network.digest)


def _covering_centre(
    rows: torch.Tensor, targets: torch.Tensor, other: torch.Tensor | None, ways: int
) -> torch.Tensor | None:
    """``[D]`` centre of the labelled ``rows`` ``[S, D]`` and the ``other`` rows ``[U, D]``
    where those cover the classes (:func:`~anyshot.outliers.covering_centre`), else ``None``
    (not centred)."""
    if other is None or len(other) == 0:
        return None
    centre, covered = covering_centre(rows[None], targets[None], other.float().cpu()[None], ways)
    return centre[0] if bool(covered[0]) else None


def _plain_label(label: Any) -> Hashable:
    """numpy scalars -> Python values (``np.int64(3)`` -> ``3``), everything else unchanged."""
    if isinstance(label, np.generic):
        value: Hashable = label.item()
        return value
    if not isinstance(label, Hashable):
        raise EpisodeError(f"labels must be hashable values, got a {type(label).__name__}")
    return label


def _plain_labels(labels: Any) -> list[Hashable]:
    if isinstance(labels, torch.Tensor | np.ndarray):
        if labels.ndim != 1:
            raise EpisodeError(f"labels must be one-dimensional, got shape {tuple(labels.shape)}")
        return [_plain_label(v) for v in labels.tolist()]
    if isinstance(labels, str | bytes):
        raise EpisodeError("labels must be a sequence with one label per image, not a string")
    return [_plain_label(v) for v in labels]


class FewShotClassifier:
    """A few-shot image classifier for any number of labelled images per class.

    Args:
        backbone: a registry name (``"efficientnet-lite0"``: ImageNet weights, offline;
            ``"conv4"``, ``"resnet12"``, ``"wrn28-10"``), a backbone checkpoint file, or an
            anyshot :class:`~anyshot.backbones.base.Backbone` (copied, never changed).
        method: :class:`~anyshot.methods.SupportBasedInit`, :class:`~anyshot.methods.FineTuning`
            or :class:`~anyshot.methods.TransductiveFineTuning` (any scope), or a
            :class:`~anyshot.methods.scope_rule.ScopeRule` that chooses one from the labelled
            images; ``None`` = ``ScopeRule()``: the recommended transductive fine-tuning of the
            head (validation-tuned settings) when the frozen backbone tells the classes apart,
            else every parameter of the network (:data:`~anyshot.methods.presets.NETWORK`)
            within a time budget (see :mod:`anyshot.methods.scope_rule`).
        image_size: input side in pixels (default: the backbone's, whatever the images'
            size: on validation classes small images enlarged to EfficientNet-Lite0's 224 px
            were classified better than at their own 84 px / 105 px,
            ``benchmarks/image_size_probe.py``).
        batch_size: images decoded and embedded at once (bounds memory); lowered for large
            inputs to :data:`~anyshot.embedding.BATCH_VALUES` values (32 images at 224 px).
        device: ``"cpu"``, ``"cuda"``, ... (default: CPU).
        seed: seeds the method (chunk order, augmentation) and a randomly initialised backbone.
        show_progress: progress bars on stderr while embedding (images, rate, ETA).
        cache_dir: where embeddings of image files are kept between runs: ``None`` (default)
            the user's cache folder (:func:`~anyshot.feature_cache.default_cache_dir`:
            ``$XDG_CACHE_HOME/anyshot/features`` or ``~/.cache/anyshot/features``), a folder,
            or ``False``: nothing on disk. Either way the embeddings of files seen in this
            process are kept in memory (``predict`` then ``predict_proba`` on the same files
            embeds once). Images given in memory (PIL images, tensors) are embedded each time.
        precision: of the embedding forward pass: ``"auto"`` (bfloat16 on a CPU with native
            bfloat16 instructions, ~3-4x the images/s; float32 elsewhere), ``"float32"`` or
            ``"bfloat16"``. Fine-tuning (scopes last/all) trains in float32 regardless.
        channels_last: feed the network channels-last batches (faster on a CPU).
        unknown: ``"auto"`` (default): :meth:`predict` answers ``unknown_label`` for an image
            whose :meth:`outlier_score` lies above :attr:`unknown_threshold_`; ``"off"``:
            every image gets one of the classes. :meth:`predict_proba` is the same either way.
        unknown_label: the label of an image of none of the classes (default ``"unknown"``;
            it must not be one of the classes).
        false_alarm_rate: the target share of images of the classes that ``"auto"`` flags
            (default 0.05); it sets :attr:`unknown_threshold_` from the labelled images (see
            :func:`anyshot.outliers.unknown_threshold`; with one image per class the rate is
            approximated, not controlled). May be changed after fitting.

    Attributes (after :meth:`fit`):
        classes_: the class labels, in column order of :meth:`predict_proba`.
        classifier_: the trained cosine classifier (weights ``[K, D]``, bias ``[K]``).
        network_: the embedding network (eval mode; fine-tuned for scopes last/all). A fit
            whose images were all in the feature cache never loads it; it is loaded on first
            use (saving, embedding a new image).
        preprocessing_: how images are prepared for ``network_``.
        method_: the method used (the one a ScopeRule chose).
        fit_info_: ``{"class_counts": {...}, "unlabeled_images": n, "skipped": n,
            "fallback": None | "gate" | "guard", "tsallis_head": bool,
            "scope": "head" | "last" | "all",
            "scope_reason": None | why a ScopeRule chose it, "epochs": the network's epochs
            (scopes last / all; ``None`` at scope head), "backbone": arch, "seconds": s}``;
            ``fallback``: which safeguard of the transductive method left the unlabelled images
            out (the gate: too few for the classes they appear to hold; the head is fine-tuned
            on the labelled images alone) or answered with support-init's class means (the
            guard: a trained classifier that disagreed with the class means);
            ``tsallis_head``: the transductive method's Tsallis head answered (the unlabelled
            images appear to hold a few of the classes; see ``FineTuning.tsallis_head``).
        class_means_: ``[K, D]`` unit class means of the labelled images' embeddings (centred
            on ``outlier_centre_``).
        raw_class_means_: ``[K, D]`` the same, uncentred, where ``outlier_centre_`` is set
            (:meth:`outlier_score` averages the distances to both), else ``None`` (also for a
            centred model file written before them: the centred distance alone).
        outlier_centre_: ``[D]`` the mean of the unit embeddings of the images given to the fit
            (:func:`anyshot.outliers.outlier_centre`), or ``None``: half of
            :meth:`outlier_score` is the distance of rows centred on it, only where the query /
            unlabelled images covered the classes (:func:`anyshot.outliers.covers_classes`; not with
            labelled images alone, a folder of a few of the classes, or a model file written
            before it). Outlier scores of a fine-tuned network's fit use the untrained
            network's embeddings, the centre too.
        unknown_reference_: the labelled images' left-out distances behind the threshold.
        unknown_threshold_: the outlier score above which an image is unknown (a property of
            ``false_alarm_rate``; ``None`` for a model file written before outlier scores).
    """

    def __init__(
        self,
        backbone: str | os.PathLike[str] | Backbone = "efficientnet-lite0",
        method: Method | ScopeRule | None = None,
        *,
        image_size: int | None = None,
        batch_size: int = 64,
        device: str | None = None,
        seed: int = 0,
        show_progress: bool = False,
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
        precision: str = "auto",
        channels_last: bool = True,
        unknown: str = "auto",
        unknown_label: Hashable = "unknown",
        false_alarm_rate: float = 0.05,
    ) -> None:
        self.backbone = backbone
        self.method = method
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.show_progress = show_progress
        self.cache_dir = cache_dir
        self.precision = precision
        self.channels_last = channels_last
        self.unknown = unknown
        self.unknown_label = unknown_label
        self.false_alarm_rate = false_alarm_rate

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn convention; ``deep`` is accepted and
        changes nothing: no parameter is itself an estimator)."""
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> FewShotClassifier:
        """Set constructor parameters by name; returns ``self``.

        Raises:
            ConfigurationError: a name that is not a parameter.
        """
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise ConfigurationError(f"unknown parameters {unknown}; known: {list(_PARAMS)}")
        for name, value in params.items():
            setattr(self, name, value)
        return self

    # --- embedding ----------------------------------------------------------------------
    def _feature_cache(self) -> FeatureCache:
        """This estimator's feature cache for the current settings (made once per settings,
        so rows seen in this process are reused).

        Raises:
            ConfigurationError: an unknown ``precision``.
        """
        if self.precision not in PRECISIONS:
            raise ConfigurationError(
                f"precision must be one of {PRECISIONS}, got {self.precision!r}"
            )
        dtype = fastest_dtype(self.device) if self.precision == "auto" else self.precision
        if self.cache_dir is False:
            directory: Path | None = None
        elif self.cache_dir is None:
            directory = default_cache_dir()
        else:
            directory = Path(self.cache_dir)
        settings = (directory, dtype, bool(self.channels_last))
        held = getattr(self, "_features", None)
        if held is None or held[0] != settings:
            cache = FeatureCache(
                directory,
                dtype=dtype,
                channels_last=bool(self.channels_last),
                fold_batch_norm=True,
            )
            self._features = (settings, cache)
            return cache
        current: FeatureCache = held[1]
        return current

    # --- configuration ------------------------------------------------------------------
    def _resolved_method(self) -> Method | ScopeRule:
        method = self.method
        if method is None:
            method = ScopeRule(
                head=dataclasses.replace(RECOMMENDED, seed=self.seed),
                network=dataclasses.replace(NETWORK, seed=self.seed),
            )
        if isinstance(method, ScopeRule):
            network = self._on_device(method.network)
            assert isinstance(network, FineTuning)
            return dataclasses.replace(method, head=self._on_device(method.head), network=network)
        if not isinstance(method, SupportBasedInit | FineTuning):
            raise ConfigurationError(
                f"method must be SupportBasedInit, FineTuning, TransductiveFineTuning or "
                f"ScopeRule (they yield a trained classifier), got {type(method).__name__}"
            )
        return self._on_device(method)

    def _on_device(self, method: Method) -> Method:
        """``method`` on this estimator's device (unless it names its own), with a progress
        bar of its epochs when it trains the network and progress is shown."""
        updates: dict[str, Any] = {}
        if method.device is None and self.device is not None:
            updates["device"] = self.device
        if isinstance(method, FineTuning) and method.scope != "head" and self.show_progress:
            updates["show_progress"] = True
        return dataclasses.replace(method, **updates)

    def _initial_network(self, image_size: int | None = None) -> DeferredNetwork:
        """The network to fit (a copy or a fresh load, eval mode, on the device), loaded only
        when it must embed something (a name or checkpoint file whose digest the feature cache
        remembers; see :mod:`anyshot.deferred_network`).

        ``image_size`` (the argument, else the estimator's; ``None``: the backbone's own) goes
        through
        :func:`~anyshot.backbones.preprocessing.resolve_preprocessing` in every case: for a
        Backbone object here, for a name or checkpoint inside :func:`load_backbone`.
        """
        if self.batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {self.batch_size}")
        device = torch.device(self.device or "cpu")
        cache = self._feature_cache()
        size = self.image_size if image_size is None else image_size
        if isinstance(self.backbone, Backbone):
            network = copy.deepcopy(self.backbone)
            network.preprocessing = resolve_preprocessing(  # the copy's: augmentation reads it
                network.preprocessing, image_size=size
            )
            return DeferredNetwork(network.to(device).eval(), cache)
        if isinstance(self.backbone, nn.Module):
            raise ConfigurationError(
                f"backbone must be an anyshot Backbone (it is saved with the model), got "
                f"{type(self.backbone).__name__}"
            )
        source = NamedBackbone(os.fspath(self.backbone), size, self.seed, str(device))
        return DeferredNetwork(source, cache)

    # --- fitting ------------------------------------------------------------------------
    def fit(
        self,
        images: Any,
        labels: Any,
        unlabeled: Any = None,
        *,
        on_unreadable: OnUnreadable | None = None,
    ) -> FewShotClassifier:
        """Fit on labelled images (and, transductively, unlabeled ones).

        Args:
            images: ``N`` labelled images: file paths, PIL images, or a float tensor
                ``[N, C, H, W]`` already in model space.
            labels: ``N`` labels (str, int, ...: one type), at least 2 distinct classes.
            unlabeled: images without labels; with a transductive method they enter the
                prediction-entropy term, otherwise they are ignored.
            on_unreadable: if given, unreadable images are left out and reported to it (a class
                left without images is an error); by default the first one raises.

        Returns:
            ``self``.

        Raises:
            DatasetError: fewer than 2 classes, or labels and images of different lengths.
            EmptyClassError: every image of a class was unreadable.
            ImageReadError: an unreadable image, without ``on_unreadable``.
        """
        extra = [] if unlabeled is None else [("unlabeled", unlabeled)]
        self._fit(images, labels, extra, on_unreadable)
        return self

    def classify(
        self,
        images: Any,
        labels: Any,
        query: Any,
        unlabeled: Any = None,
        *,
        on_unreadable: OnUnreadable | None = None,
    ) -> tuple[np.ndarray, list[int]]:
        """Fit on the support transductively over ``query`` (+ ``unlabeled``); classify ``query``.

        One few-shot episode: the query images enter the entropy term of a transductive method.
        The classifier stays fitted afterwards (it can be saved).

        Returns:
            ``(probabilities [Q', K] float64 in classes_ order, positions in query of the Q'
            readable query images)``; ``Q' = Q`` without ``on_unreadable``.
        """
        extra = [("query", query)]
        if unlabeled is not None:
            extra.append(("unlabeled", unlabeled))
        logits, kept = self._fit(images, labels, extra, on_unreadable)
        return _softmax(logits[0]), kept[0]

    def _fit(
        self,
        images: Any,
        labels: Any,
        extra: list[tuple[str, Any]],
        on_unreadable: OnUnreadable | None,
    ) -> tuple[list[torch.Tensor], list[list[int]]]:
        """Train; return the logits and kept positions of each ``extra`` image set."""
        start = time.perf_counter()
        label_list = _plain_labels(labels)
        classes = _check_classes(label_list)
        if len(images) != len(label_list):
            raise DatasetError(f"{len(images)} images but {len(label_list)} labels")
        method = self._resolved_method()
        network = self._initial_network()
        preprocessing = network.preprocessing
        support = as_images(images, preprocessing)
        sets = [(role, as_images(items, preprocessing)) for role, items in extra]
        skipped: list[Unreadable] = []

        def record(item: Unreadable) -> None:
            skipped.append(item)
            assert on_unreadable is not None
            on_unreadable(item)

        report = record if on_unreadable is not None else None
        self._check_unknown(classes)
        choice, embedded = None, None
        if isinstance(method, ScopeRule):
            choice, resized, embedded = self._choose_scope(
                method, network, images, support, label_list, classes, sets, start, report
            )
            method = choice.method
            if resized is not None:  # the network trains at the images' own size
                network, preprocessing = resized, resized.preprocessing
                support = as_images(images, preprocessing)
                sets = [(role, as_images(items, preprocessing)) for role, items in extra]
        args = (network, support, label_list, classes, sets, report, embedded)
        if isinstance(method, SupportBasedInit) or method.scope == "head":
            fit = self._fit_head(method, *args)
        else:
            fit = self._fit_network(method, *args)
        self.classes_ = classes
        self.classifier_ = fit.classifier.cpu().eval()
        self._network = fit.network
        self._outlier_network = fit.outlier_network
        self.preprocessing_ = preprocessing
        self.method_ = method
        rows, targets, ways = fit.support_rows.cpu(), fit.targets.cpu(), len(classes)
        centre = _covering_centre(rows, targets, fit.other_rows, ways)
        self.outlier_centre_: torch.Tensor | None = centre
        batched = None if centre is None else centre[None]
        means = class_means(rows[None], targets[None], ways, centre=batched)[0]
        self.class_means_: torch.Tensor | None = means
        raw = None if centre is None else class_means(rows[None], targets[None], ways)[0]
        self.raw_class_means_: torch.Tensor | None = raw
        self.unknown_reference_: UnknownReference | None = unknown_reference(
            rows, targets, ways, centre=centre
        )
        counts = Counter(label_list[i] for i in fit.kept)
        self.fit_info_ = {
            "class_counts": {str(c): int(counts[c]) for c in classes},
            **{f"{r}_images": len(k) for (r, _), k in zip(sets, fit.kept_sets, strict=True)},
            "skipped": len(skipped),
            "fallback": fit.fallback,
            "tsallis_head": fit.answer == "tsallis",
            "scope": getattr(method, "scope", "head"),
            "scope_reason": None if choice is None else choice.reason,
            "epochs": fit.epochs,
            "backbone": fit.network.arch,
            "seconds": time.perf_counter() - start,
        }
        return fit.logits, fit.kept_sets

    def _choose_scope(
        self,
        rule: ScopeRule,
        network: DeferredNetwork,
        images: Any,
        support: torch.Tensor | ImageList,
        labels: list[Hashable],
        classes: tuple[Hashable, ...],
        sets: list[tuple[str, torch.Tensor | ImageList]],
        started: float,
        on_unreadable: OnUnreadable | None,
    ) -> tuple[ScopeChoice, DeferredNetwork | None, tuple[torch.Tensor, list[int]]]:
        """What ``rule`` trains for these images: the head when the frozen embeddings of the
        labelled images tell the classes apart, else the network within the time budget (a
        training pass on a few labelled images is timed), at the images' own size
        (:func:`~anyshot.methods.scope_rule.network_image_size`) unless ``image_size`` was
        given; with that network when it is another size, and the labelled images' frozen
        embeddings ``[S', D]`` with their positions (unreadable ones reported here, once), for
        the fit to reuse."""
        embeddings, kept = self._embed(network, support, on_unreadable, "support")
        _check_kept(classes, labels, [labels[i] for i in kept])
        index = {label: k for k, label in enumerate(classes)}
        targets = torch.tensor([index[labels[i]] for i in kept], dtype=torch.long)
        head = rule.domain_choice(embeddings, targets)
        if head is not None:
            return head, None, (embeddings, kept)
        resized = None
        size = None if self.image_size is not None else network_image_size(native_side(support))
        if size is not None and size != network.preprocessing.image_size:
            resized = self._initial_network(size)
            support = as_images(images, resized.preprocessing)
        readable = select_images(support, kept)
        episode = Episode(readable, [labels[i] for i in kept], select_images(readable, []))
        trained = resized or network
        seconds = rule.network.seconds_per_image(trained.network(), probe_episode(episode))
        choice = rule.network_choice(
            cross_class_similarity(embeddings, targets),
            len(kept),
            sum(len(items) for _, items in sets),
            len(classes),
            seconds,
            time.perf_counter() - started,
        )
        if choice.scope == "head":
            return choice, None, (embeddings, kept)
        at = f"; at {trained.preprocessing.image_size} px"
        return dataclasses.replace(choice, reason=choice.reason + at), resized, (embeddings, kept)

    def _embed(
        self,
        network: DeferredNetwork,
        images: torch.Tensor | ImageList,
        on_unreadable: OnUnreadable | None,
        desc: str,
    ) -> tuple[torch.Tensor, list[int]]:
        """Embeddings ``[n, D]`` of the readable images and their positions, through the
        feature cache (read where cached, computed and stored otherwise; the network is
        loaded only for the latter)."""
        return network.embed(
            self._feature_cache(),
            images,
            batch_size=memory_batch_size(self.batch_size, _image_shape(images)),
            on_unreadable=on_unreadable,
            show_progress=self.show_progress,
            desc=desc,
        )

    def _fit_head(
        self,
        method: Method,
        network: DeferredNetwork,
        support: torch.Tensor | ImageList,
        labels: list[Hashable],
        classes: tuple[Hashable, ...],
        sets: list[tuple[str, torch.Tensor | ImageList]],
        on_unreadable: OnUnreadable | None,
        embedded: tuple[torch.Tensor, list[int]] | None = None,
    ) -> _Fit:
        """Support-init or head-scope fine-tuning on cached embeddings ``[N, D]`` (the labelled
        images': ``embedded`` when the scope rule computed them already)."""
        if embedded is None:
            embedded = self._embed(network, support, on_unreadable, "support")
        embeddings, kept = embedded
        kept_labels = [labels[i] for i in kept]
        _check_kept(classes, labels, kept_labels)
        extra = [self._embed(network, images, on_unreadable, role) for role, images in sets]
        dim = embeddings.shape[1]
        pool = torch.cat([e.reshape(-1, dim) for e, _ in extra]) if extra else None
        index = {label: k for k, label in enumerate(classes)}
        targets = torch.tensor([index[label] for label in kept_labels])
        query = pool if pool is not None else embeddings[:0]
        with torch_threads(1):  # [N, D] features: one thread (see anyshot.threads)
            fitted = method.fit_features(embeddings, targets, query, ways=len(classes))
        logits = list(fitted.query_logits[0].split([len(k) for _, k in extra])) if extra else []
        kept_sets = [k for _, k in extra]
        return _Fit(
            fitted.classifier(0), network, logits, kept_sets, kept, fallback_of(fitted),
            embeddings, targets, answer=answer_of(fitted), other_rows=query,
        )  # fmt: skip

    def _fit_network(
        self,
        method: FineTuning,
        network: DeferredNetwork,
        support: torch.Tensor | ImageList,
        labels: list[Hashable],
        classes: tuple[Hashable, ...],
        sets: list[tuple[str, torch.Tensor | ImageList]],
        on_unreadable: OnUnreadable | None,
        embedded: tuple[torch.Tensor, list[int]] | None = None,
    ) -> _Fit:
        """Scope ``last`` / ``all``: one episode over the images; the backbone copy is trained
        (or kept untrained when a safeguard answers with support-init's). ``embedded``: the
        scope rule's embeddings of the labelled images, whose positions say which are
        readable (already reported)."""

        def readable(images: torch.Tensor | ImageList, desc: str) -> list[int]:
            if on_unreadable is None:
                return list(range(len(images)))
            return check_images(
                images,
                on_unreadable=on_unreadable,
                batch_size=self.batch_size,
                show_progress=self.show_progress,
                desc=desc,
            )

        kept = readable(support, "checking support") if embedded is None else embedded[1]
        kept_labels = [labels[i] for i in kept]
        _check_kept(classes, labels, kept_labels)
        kept_sets = [readable(images, f"checking {role}") for role, images in sets]
        parts = [select_images(images, k) for (_, images), k in zip(sets, kept_sets, strict=True)]
        query = _concat(parts, support)
        episode = Episode(select_images(support, kept), kept_labels, query, classes=classes)
        fitted = method.fit(network.network(), episode)
        assert isinstance(fitted.network, Backbone)
        trained = DeferredNetwork(fitted.network, network.cache)
        logits = list(fitted.query_logits.split([len(k) for k in kept_sets])) if sets else []
        outliers = network if fitted.fallback is None else None  # a fallback is untrained
        rows, _ = self._embed(outliers or trained, select_images(support, kept), None, "support")
        targets = torch.tensor([classes.index(label) for label in kept_labels])
        # the other images by the same network, for the outlier centre (classify scores the
        # queries with it next: their rows are then in the cache's memory)
        other = self._embed(outliers or trained, query, None, "images")[0] if sets else None
        return _Fit(
            fitted.classifier, trained, logits, kept_sets, kept, fitted.fallback, rows, targets,
            outliers, fitted.epochs, other_rows=other,
        )  # fmt: skip

    # --- prediction ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise ConfigurationError(
                "this FewShotClassifier is not fitted yet: call fit() or FewShotClassifier.load()"
            )

    def _check_unknown(self, classes: Sequence[Hashable]) -> None:
        """Refuse an unknown ``unknown`` mode, a rate outside (0, 1), a class named like
        ``unknown_label``."""
        if self.unknown not in UNKNOWN_MODES:
            raise ConfigurationError(
                f"unknown must be one of {UNKNOWN_MODES}, got {self.unknown!r}"
            )
        if not 0.0 < float(self.false_alarm_rate) < 1.0:
            raise ConfigurationError(
                f"false_alarm_rate must lie strictly between 0 and 1, got {self.false_alarm_rate}"
            )
        if self.unknown == "auto" and self.unknown_label in set(classes):
            raise ConfigurationError(
                f"a class is named {self.unknown_label!r}, the label of images of none of the "
                "classes: choose another one (--unknown-label NAME; unknown_label= in Python) "
                "or turn the decision off (--unknown off; unknown='off')"
            )

    @property
    def network_(self) -> Backbone:
        """The embedding network (eval mode; fine-tuned for scopes last / all). After a fit
        whose images were all cached it is loaded here, on first use."""
        self._check_fitted()
        return self._network.network()

    @property
    def unknown_threshold_(self) -> float | None:
        """The outlier score above which :meth:`predict` answers ``unknown_label`` (for the
        current ``false_alarm_rate``); ``None`` for a model file without outlier scores."""
        self._check_fitted()
        reference: UnknownReference | None = self.unknown_reference_
        return None if reference is None else reference.threshold(float(self.false_alarm_rate))

    def _embeddings(
        self, images: Any, on_unreadable: OnUnreadable | None
    ) -> tuple[torch.Tensor, list[int]]:
        """Embeddings ``[N', D]`` of the readable images (in order) and their positions."""
        self._check_fitted()
        data = as_images(images, self.preprocessing_)
        return self._embed(self._network, data, on_unreadable, "images")

    def _both_embeddings(
        self, images: Any, on_unreadable: OnUnreadable | None
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """``(classifier's embeddings [N', D], outlier scores' [N', D'], positions)`` of the
        readable images, each decoded once: the same rows unless the network was fine-tuned
        (then the untrained network's for the outlier scores, see :meth:`outlier_score`)."""
        self._check_fitted()
        if self._outlier_network is None:
            embeddings, kept = self._embeddings(images, on_unreadable)
            return embeddings, embeddings, kept
        data = as_images(images, self.preprocessing_)
        return embed_with_both(
            self._network,
            self._outlier_network,
            self._feature_cache(),
            data,
            width=int(self.classifier_.weight.shape[-1]),
            batch_size=memory_batch_size(self.batch_size, _image_shape(data)),
            on_unreadable=on_unreadable,
            show_progress=self.show_progress,
            desc="images",
        )

    def _logits(self, images: Any, on_unreadable: OnUnreadable | None) -> torch.Tensor:
        """Logits ``[N', K]`` (CPU float32) of the readable images, in order."""
        embeddings, _ = self._embeddings(images, on_unreadable)
        return self._logits_of(embeddings)

    def _logits_of(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` embeddings -> ``[N, K]`` logits (CPU float32)."""
        if len(embeddings) == 0:
            return torch.empty(0, len(self.classes_))
        with torch.inference_mode():
            return self.classifier_(embeddings.to(_device_of(self.classifier_))).float().cpu()

    def _outlier_means(self) -> torch.Tensor:
        """``class_means_`` ``[K, D]``.

        Raises:
            ConfigurationError: a model file written before outlier scores.
        """
        if self.class_means_ is None:
            raise ConfigurationError(
                "this model was saved by an anyshot without outlier scores: fit it again"
            )
        return self.class_means_

    def _scores_of(self, embeddings: torch.Tensor) -> np.ndarray:
        """``[N, D]`` embeddings -> ``[N]`` outlier scores (float64)."""
        means = self._outlier_means()
        if len(embeddings) == 0:
            return np.empty(0)
        centre = getattr(self, "outlier_centre_", None)  # absent: pickled before the centre
        raw_means = getattr(self, "raw_class_means_", None)  # absent: pickled before them
        with torch.inference_mode():
            scores = mean_outlier_distance(
                means[None],
                embeddings.float().cpu()[None],
                centre=None if centre is None else centre[None],
                raw_means=None if raw_means is None else raw_means[None],
            )
        return scores[0].double().numpy()

    def outlier_score(
        self, images: Any, *, on_unreadable: OnUnreadable | None = None
    ) -> np.ndarray:
        """How unlike every class each image is: ``[N]`` float64 in ``[0, 2]``.

        The cosine distance from the image's embedding to the nearest class mean of the
        labelled images (:func:`anyshot.outliers.outlier_distance`); when
        :attr:`outlier_centre_` is set (fixed at fit: an image's score does not depend on the
        other images of the call), the mean of that distance with the rows centred on it and
        without; higher = more likely none of the classes. When the
        network was fine-tuned (scopes last / all) the embeddings
        are the untrained network's: the fine-tuned one fits the labelled images too closely for
        their distances to set a threshold. ``on_unreadable`` as for :meth:`predict_proba`.

        Raises:
            ConfigurationError: not fitted, or a model file written before outlier scores.
        """
        self._check_fitted()
        self._outlier_means()  # a model without outlier scores fails before embedding
        if self._outlier_network is None:
            embeddings, _ = self._embeddings(images, on_unreadable)
        else:
            data = as_images(images, self.preprocessing_)
            embeddings, _ = self._embed(self._outlier_network, data, on_unreadable, "images")
        return self._scores_of(embeddings)

    def unknown_mask(self, scores: np.ndarray) -> np.ndarray:
        """``[N]`` bool: which :meth:`outlier_score` values :meth:`predict` calls unknown (all
        ``False`` with ``unknown="off"`` or a model without outlier scores)."""
        self._check_unknown(self.classes_)
        threshold = self.unknown_threshold_
        if self.unknown == "off" or threshold is None:
            return np.zeros(len(scores), dtype=bool)
        return np.asarray(scores) > threshold

    def decision_function(
        self, images: Any, *, on_unreadable: OnUnreadable | None = None
    ) -> np.ndarray:
        """Logits ``[N, K]`` (float32), columns in :attr:`classes_` order.

        ``on_unreadable`` as for :meth:`predict_proba`.
        """
        return self._logits(images, on_unreadable).numpy()

    def predict_proba(
        self, images: Any, *, on_unreadable: OnUnreadable | None = None
    ) -> np.ndarray:
        """Class probabilities ``[N, K]`` (float64), columns in :attr:`classes_` order.

        Args:
            images: file paths, PIL images, or a float tensor ``[N, C, H, W]`` in model space.
            on_unreadable: if given, unreadable images are left out and reported to it (each
                :class:`~anyshot.embedding.Unreadable` has the image's position); the rows then
                follow the remaining images in order. By default the first one raises.

        Raises:
            ConfigurationError: not fitted.
            ImageReadError: an unreadable image, without ``on_unreadable``.
        """
        return _softmax(self._logits(images, on_unreadable))

    def predict_proba_and_outlier_score(
        self, images: Any, *, on_unreadable: OnUnreadable | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_proba` ``[N, K]`` and :meth:`outlier_score` ``[N]`` of the same
        images, each image decoded once (and at scope head embedded once) for both; the scores
        are ``None`` for a model file written before outlier scores. ``on_unreadable`` as for
        :meth:`predict_proba` (both arrays then follow the readable images)."""
        self._check_fitted()
        if self.class_means_ is None:
            return self.predict_proba(images, on_unreadable=on_unreadable), None
        embeddings, outlier_rows, _ = self._both_embeddings(images, on_unreadable)
        return _softmax(self._logits_of(embeddings)), self._scores_of(outlier_rows)

    def predict(self, images: Any) -> list[Hashable]:
        """The most probable label of each image (``N`` labels of the fitted type), or
        ``unknown_label`` where :meth:`unknown_mask` flags its :meth:`outlier_score`."""
        self._check_fitted()
        if self.unknown == "off" or self.class_means_ is None:
            embeddings, _ = self._embeddings(images, None)
            return [self.classes_[int(k)] for k in self._logits_of(embeddings).argmax(1)]
        probabilities, scores = self.predict_proba_and_outlier_score(images)
        assert scores is not None
        labels = [self.classes_[int(k)] for k in probabilities.argmax(1)]
        flagged = self.unknown_mask(scores)
        return [
            self.unknown_label if f else label for f, label in zip(flagged, labels, strict=True)
        ]

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model (backbone, classifier, classes, settings) atomically.

        Raises:
            ConfigurationError: not fitted.
            ModelFileError: labels of a type the file cannot store (str, int, float, bool can).
        """
        self._check_fitted()
        network = self.network_
        if not isinstance(network, Backbone):
            raise ConfigurationError("only a model with an anyshot Backbone can be saved")
        options = {
            "batch_size": int(self.batch_size),
            "seed": int(self.seed),
            "unknown": self.unknown,
            "unknown_label": self.unknown_label,
            "false_alarm_rate": float(self.false_alarm_rate),
        }
        fitted = self.method_
        if isinstance(fitted, FineTuning):  # how long this machine could train: not a setting
            fitted = dataclasses.replace(fitted, time_budget=None, show_progress=False)
        method = method_to_dict(fitted)
        method["settings"]["device"] = None  # where it trained is not where it will run
        save_model_file(
            SavedModel(
                network=network,
                preprocessing=self.preprocessing_,
                classifier=self.classifier_,
                classes=self.classes_,
                method=method,
                options=options,
                info=_plain_info(self.fit_info_),
                class_means=self.class_means_,
                unknown_reference=self.unknown_reference_,
                outlier_centre=getattr(self, "outlier_centre_", None),
                raw_class_means=getattr(self, "raw_class_means_", None),
                outlier_network=_saved_outlier_network(self._outlier_network),
            ),
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | None = None) -> FewShotClassifier:
        """Read a model written by :meth:`save` (loads on the CPU, then moves to ``device``).

        Raises:
            ModelFileError: not an anyshot model file, corrupt, or a newer format.
        """
        saved = load_model_file(path)
        options = saved.options
        method = method_from_dict(saved.method)
        model = cls(
            backbone=saved.network,
            method=method,
            image_size=saved.preprocessing.image_size,
            batch_size=int(options.get("batch_size", 64)),
            device=device,
            seed=int(options.get("seed", 0)),
            unknown=str(options.get("unknown", "auto")),
            unknown_label=options.get("unknown_label", "unknown"),
            false_alarm_rate=float(options.get("false_alarm_rate", 0.05)),
        )
        target = torch.device(device or "cpu")
        model.classes_ = saved.classes
        model.classifier_ = saved.classifier.eval()
        model._network = DeferredNetwork(saved.network.to(target).eval(), model._feature_cache())
        model.preprocessing_ = saved.preprocessing
        model.method_ = method
        model.fit_info_ = saved.info
        model.class_means_ = saved.class_means
        model.unknown_reference_ = saved.unknown_reference
        model.outlier_centre_ = saved.outlier_centre
        model.raw_class_means_ = saved.raw_class_means
        model._outlier_network = None
        named = saved.outlier_network
        if isinstance(named, RegistryNetwork):  # rebuilt from its name on first need
            source = NamedBackbone(named.name, named.image_size, named.seed, str(target))
            model._outlier_network = DeferredNetwork(
                source, model._feature_cache(), expected_digest=named.digest
            )
        elif named is not None:
            model._outlier_network = DeferredNetwork(
                named.to(target).eval(), model._feature_cache()
            )
        return model

    def __repr__(self) -> str:
        backbone = (
            self.backbone.arch if isinstance(self.backbone, Backbone) else os.fspath(self.backbone)
        )
        fitted = f", classes={list(self.classes_)}" if hasattr(self, "classes_") else ""
        method = DEFAULT_METHOD_REPR if self.method is None else repr(self.method)
        return f"FewShotClassifier(backbone={backbone!r}, method={method}{fitted})"


# --- helpers ------------------------------------------------------------------------------
def _image_shape(images: torch.Tensor | ImageList) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images (decoded size)."""
    if isinstance(images, torch.Tensor):
        channels, height, width = images.shape[1:]
        return int(channels), int(height), int(width)
    return images.image_shape


def _softmax(logits: torch.Tensor) -> np.ndarray:
    """``[N, K]`` logits -> float64 probabilities (numpy)."""
    return torch.softmax(logits.double(), dim=1).numpy()


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _check_classes(labels: list[Hashable]) -> tuple[Hashable, ...]:
    """The sorted classes; refuse fewer than 2 and mixed label types."""
    if not labels:
        raise DatasetError("no labelled images: give at least one image for each of 2+ classes")
    # Episode checks label types and orders classes; borrow it on a dummy support.
    probe = Episode(torch.zeros(len(labels), 1, 1, 1), labels, torch.zeros(0, 1, 1, 1))
    classes = tuple(probe.classes or ())
    if len(classes) < 2:
        raise DatasetError(
            f"only one class ({classes[0]!r}, {len(labels)} images): a classifier needs at "
            "least 2 classes. Add images of at least one other class (one folder per class)."
        )
    return classes


def _check_kept(
    classes: tuple[Hashable, ...], labels: list[Hashable], kept_labels: list[Hashable]
) -> None:
    """Refuse a class whose every image was unreadable."""
    left = Counter(kept_labels)
    lost = [c for c in classes if left[c] == 0]
    if lost:
        total = Counter(labels)
        names = ", ".join(f"{c!r} ({total[c]} images)" for c in lost)
        raise EmptyClassError(
            f"no readable image left in class {names}: every image of it was skipped as "
            "unreadable. Replace the files or remove the class."
        )


def _concat(
    parts: Sequence[torch.Tensor | ImageList], like: torch.Tensor | ImageList
) -> torch.Tensor | ImageList:
    """One image collection from several (an empty one shaped like ``like`` if none)."""
    if not parts:
        if isinstance(like, torch.Tensor):
            return like[:0]
        return ImageList([], like.preprocessing)
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(list(parts))  # type: ignore[arg-type]
    items: list[Any] = []
    preprocessing = next(p.preprocessing for p in parts if isinstance(p, ImageList))
    for part in parts:
        items.extend(part.items if isinstance(part, ImageList) else list(part))
    return ImageList(items, preprocessing)


def _plain_info(info: dict[str, Any]) -> dict[str, Any]:
    """JSON-like copy of ``fit_info_`` (floats and ints as Python values)."""

    def convert(value: Any) -> Any:
        return value.item() if isinstance(value, np.generic) else value

    return {
        k: ({str(a): convert(b) for a, b in v.items()} if isinstance(v, dict) else convert(v))
        for k, v in info.items()
    }
