"""Frozen-backbone features of dataset items, computed once and kept on disk.

:class:`FeatureCache` embeds each requested dataset item once (eval mode,
``torch.inference_mode``, channels-last input, float32 as the network computes it, or bfloat16
on request) and stores the rows in a folder, so head-scope methods and evaluations over many
episodes reuse them.

**The key.** A row is stored under ``sha256`` of the JSON of

* ``model``: the *model digest*, ``sha256`` of the JSON of ``{"arch", "config", "embedding",
  "preprocessing"}`` (the backbone's registry name, its constructor ``config()``, its embedding
  mode ``"features"`` / ``"logits"`` and the :meth:`Preprocessing.to_dict` used to decode images)
  followed by every ``state_dict`` entry's name, dtype, shape and raw bytes (so any change of a
  weight or buffer changes the digest);
* ``content``: the ``sha256`` of the bytes of the file behind the item (the file itself, or the
  zip archive of ``"<archive>.zip:<member>..."``; :mod:`anyshot.file_digests`, which reads a
  file again only when its path, size, modification or change time or inode changed) and
  ``part``: what of the source string follows that file (``""``, or ``":<member>@rotDDD"`` for
  an Omniglot item). The path is not part of the key: a copied, moved, touched or re-downloaded
  file with the same bytes keeps its rows. A source that is not a file or a zip member (an
  in-memory dataset, tiered-ImageNet's and CIFAR-FS's ``"<file>[i]"`` items) is keyed by its
  ``source`` string instead (a rewritten pickle is not noticed: delete the cache folder);
* ``channels_last``: whether batches were fed channels-last (see :class:`FeatureCache`);
* ``dtype``: only when it is not ``"float32"``: the precision the network computed in (see
  :class:`FeatureCache`);
* ``freeze``: only when true: the network ran as a frozen TorchScript trace (see
  :class:`FeatureCache`);
* ``fold``: only when true: the network ran with its batch-norms folded into the convolutions
  (``fold_batch_norm``, see :class:`FeatureCache`);
* ``decode``: ``"reduced"`` for images decoded for their target size (a large JPEG at 1/2, 1/4 or
  1/8 scale: :func:`~anyshot.data.decode_image`): the files of an
  :class:`~anyshot.embedding.ImageList` (the practitioner's images) and of a
  :class:`~anyshot.data.FolderDataset` (``decode_for_size``); absent for the benchmark sets'
  items, decoded fully.

A changed preprocessing, weight, embedding mode or file content thus gives a different key: a
miss, recomputed (a file is read again when its path, size, modification or change time or
inode changed: a rewrite always changes the change time). Nothing is ever overwritten;
stale rows are simply never asked for again (delete the folder to reclaim the space). Files'
digests are remembered in ``DIRECTORY/files/``.

**On disk.** ``DIRECTORY/<model digest[:16]>/shard-<time>-<random>.pt``, each a
``torch.save`` of ``{"keys": [str, ...], "features": FloatTensor [n, D]}``, written to a
temporary file and renamed (:func:`anyshot.io.atomic_write_bytes`). Missing rows are computed
``shard_size`` items at a time and each shard is written as soon as it is done, so an interrupted
run loses at most the shard in progress. Several processes may share a folder: shard names never
collide, and a row computed twice is merely stored twice. A folder that cannot be written gives
one warning and the rows stay in memory only.

**Models remembered.** :meth:`FeatureCache.remember_model` stores, under a caller's *identity*
of a network (e.g. a registry name or a checkpoint file with its size and modification time, see
:mod:`anyshot.deferred_network`), the network's model digest, preprocessing and architecture
name as ``DIRECTORY/models/<sha256(identity)[:32]>.json``; :meth:`FeatureCache.remembered_model`
reads it back and :meth:`FeatureCache.stored` returns the rows of images that are all cached,
so a caller can use cached features without loading the network at all.

**In memory.** An object keeps the rows it was asked for (and an index of the shards it has
read), so asking again in the same process reads nothing; with ``directory=None`` that is all it
does (no disk). :meth:`FeatureCache.embed` takes image sequences (file paths, PIL images,
tensors, with an ``on_unreadable`` callback): images without a file behind them (PIL images,
tensors) cannot be keyed by file identity and are embedded every time, never stored. The
practitioner commands and :class:`~anyshot.classifier.FewShotClassifier` keep their folder in
:func:`default_cache_dir` unless told otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import time
import uuid
import warnings
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.embedding import (
    DTYPES,
    ImageList,
    Images,
    OnUnreadable,
    Unreadable,
    embedding_batches,
    inference_network,
    model_input,
)
from anyshot.errors import ConfigurationError
from anyshot.file_digests import FileDigests, file_of
from anyshot.io import atomic_write_bytes, atomic_write_text
from anyshot.methods.frozen import evaluation_mode, module_device
from anyshot.progress import progress_bar

__all__ = [
    "FeatureCache",
    "RememberedModel",
    "canonical_source",
    "default_cache_dir",
    "fastest_dtype",
    "file_identity",
    "model_digest",
]

#: CPU flags (``/proc/cpuinfo``) of native bfloat16 arithmetic.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def fastest_dtype(device: str | None = None, cpuinfo: str = "/proc/cpuinfo") -> str:
    """``"bfloat16"`` on a CPU with native bfloat16 instructions, else ``"float32"``.

    On a 2-core AVX512-BF16 CPU a bfloat16 forward ran ~3.5x (84 px) to ~4.6x (224 px) the
    images/s of float32 while few-shot accuracy moved by less than its noise
    (``benchmarks/speed.py``). Other devices (and CPUs without the flags, or where the flags
    cannot be read) get ``"float32"``.
    """
    if device is not None and not str(device).startswith("cpu"):
        return "float32"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return "float32"
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = {word for line in lines for word in line.split()}
    return "bfloat16" if any(flag in flags for flag in BF16_CPU_FLAGS) else "float32"


def default_cache_dir() -> Path:
    """The user's feature cache folder: ``$XDG_CACHE_HOME/anyshot/features`` when that variable
    holds an absolute path (the XDG base-directory rule), else ``~/.cache/anyshot/features``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "anyshot" / "features"


def model_digest(backbone: nn.Module, preprocessing: Preprocessing) -> str:
    """Hex ``sha256`` of what determines a backbone's embedding of a decoded image.

    Covers the architecture name (``arch``, else the class's qualified name), ``config()`` when
    the module has one, the ``embedding`` mode, ``preprocessing.to_dict()`` and every
    ``state_dict`` entry (name, dtype, shape, bytes). A ``pretrained`` flag in the config says
    only where the weights came from (the bundled ImageNet file, or a model or checkpoint file
    that stores them), and the weights themselves are hashed: it is hashed as ``True`` either
    way, so a backbone loaded from a saved model shares the features of the one it was saved
    from (``fit`` then ``predict`` on the same images embeds nothing).
    """
    config_fn = getattr(backbone, "config", None)
    config = dict(config_fn()) if callable(config_fn) else None
    if config is not None and "pretrained" in config:
        config["pretrained"] = True
    header = {
        "arch": str(getattr(backbone, "arch", type(backbone).__qualname__)),
        "class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "config": config,
        "embedding": getattr(backbone, "embedding", None),
        "preprocessing": preprocessing.to_dict(),
    }
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode("utf-8"))
    for name, tensor in backbone.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_identity(source: str) -> tuple[int | None, int | None]:
    """``(size, mtime_ns)`` of the file behind a dataset source string (the source itself, or
    the archive of ``"<archive>.zip:<member>..."``: :func:`~anyshot.file_digests.file_of`), or
    ``(None, None)``."""
    path, _ = file_of(source)
    try:
        stat = os.stat(path) if path is not None else None
    except OSError:
        stat = None
    return (None, None) if stat is None else (int(stat.st_size), int(stat.st_mtime_ns))


def canonical_source(source: str) -> str:
    """``source`` with its file part (the source itself, or the archive of
    ``"<archive>.zip:<member>..."``) made absolute and free of symlinks, when that file exists.

    The same file then gets the same key from any working directory or path spelling.
    """
    path, rest = file_of(source)
    return source if path is None else path + rest


def _item_key(
    model: str,
    source: str,
    channels_last: bool,
    dtype: str = "float32",
    freeze: bool = False,
    fold: bool = False,
    content: tuple[str, str] | None = None,
    reduced: bool = False,
) -> str:
    """The key of a row (see the module doc); ``content``: ``(sha256 of the file behind
    ``source``, the rest of ``source``)``, or ``None`` to key by ``source`` alone;
    ``reduced``: the file was decoded for its target size (an item of a sequence whose
    ``decode_for_size`` is true, see :func:`~anyshot.data.decode_image`)."""
    record: dict[str, Any] = {"model": model, "channels_last": channels_last}
    if content is None:
        record["source"] = source
    else:
        record["content"], record["part"] = content
    if dtype != "float32":  # default keys stay those of the versions without these options
        record["dtype"] = dtype
    if freeze:
        record["freeze"] = True
    if fold:
        record["fold"] = True
    if reduced:
        record["decode"] = "reduced"
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


def _traced_and_frozen(network: nn.Module, example: torch.Tensor) -> nn.Module:
    """``torch.jit.freeze(torch.jit.trace(network, example))`` of an eval-mode network."""
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Python numbers computed from the input's shape (e.g. "same" padding) become
            # constants of the trace: right for every batch of one call (one image size).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # torch 2.13 marks torch.jit deprecated (in favour of torch.compile), not removed.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.jit")
            traced = torch.jit.trace(network, example, check_trace=False)
            frozen: nn.Module = torch.jit.freeze(traced)
    except Exception as error:  # torch.jit raises many types; say what to do instead
        raise ConfigurationError(
            f"freeze=True: torch.jit could not trace and freeze {type(network).__name__} "
            f"({type(error).__name__}: {error}); use FeatureCache(freeze=False)"
        ) from error
    return frozen


class _Subset(Sequence[torch.Tensor]):
    """Positions ``positions`` of an image sequence (or a tensor ``[N, C, H, W]``), read on access;
    ``source`` follows the original's."""

    def __init__(self, images: Images, positions: Sequence[int]) -> None:
        self.images = images
        self.positions = list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, position: int) -> torch.Tensor:  # type: ignore[override]
        return self.images[self.positions[position]]

    def is_file(self, position: int) -> bool:
        """The original's ``is_file`` (see :func:`anyshot.embedding.embedding_batches`)."""
        is_file = getattr(self.images, "is_file", None)
        return bool(is_file(self.positions[position])) if callable(is_file) else False

    def source(self, position: int) -> str:
        original = self.images
        source = getattr(original, "source", None)
        index = self.positions[position]
        return str(source(index)) if callable(source) else f"image #{index}"


def _read_shard(path: Path) -> dict[str, Any] | None:
    """The ``{"keys": [n], "features": [n, D]}`` of a shard file (memory-mapped), or ``None``
    with a warning when it cannot be read (cut short by a full disk, damaged): its images are
    then embedded again, and their rows stored in a new shard."""
    try:
        data = torch.load(path, weights_only=True, mmap=True)
        if len(data["keys"]) != int(data["features"].shape[0]):
            raise ValueError(f"{len(data['keys'])} keys for {data['features'].shape[0]} rows")
    except Exception as error:  # torch.load raises many types; a cache must never stop a run
        warnings.warn(
            f"feature cache: ignoring the unreadable file {path} ({type(error).__name__}: "
            f"{_first_sentence(str(error))}); its images are embedded again. Delete it to stop "
            "this warning.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return data


def _first_sentence(text: str) -> str:
    """The first sentence of an error message (torch's go on for several), or "no detail"."""
    first = text.strip().split(". ")[0].splitlines()
    return first[0].rstrip(".") if first else "no detail"


def _file_source(images: Images, position: int) -> str | None:
    """The source string that keys image ``position``, or ``None`` for an in-memory image.

    Items of an :class:`~anyshot.embedding.ImageList` are keyed only when they are file paths;
    other sequences with a ``source`` (a dataset's ``LazyImages``) always; a tensor never.
    """
    if isinstance(images, torch.Tensor):
        return None
    if isinstance(images, ImageList):
        item = images.items[position]
        return os.fspath(item) if isinstance(item, str | os.PathLike) else None
    source = getattr(images, "source", None)
    return str(source(position)) if callable(source) else None


class RememberedModel(NamedTuple):
    """What :meth:`FeatureCache.remember_model` keeps of a network: its :func:`model_digest`,
    the :class:`Preprocessing` the digest was taken with, and its architecture name."""

    digest: str
    preprocessing: Preprocessing
    arch: str


class FeatureCache:
    """Frozen-backbone features of images, kept in memory and (unless ``directory`` is ``None``)
    on disk; see the module doc for the key.

    Args:
        directory: where the shards live (created on first write); ``None``: this object's
            memory only (rows are still reused within the process, never written).
        shard_size: items embedded and written per shard (bounds what a crash can lose).
        channels_last: feed the network channels-last batches (faster convolutions on CPU;
            the features differ from a contiguous-input forward by float rounding, ~1e-6).
            ``False`` reproduces :func:`~anyshot.methods.frozen.frozen_forward` bit for bit.
            Part of the key, so the two never mix.
        dtype: precision of the forward pass. ``"float32"`` (default) runs the backbone as
            given. ``"bfloat16"`` runs a bfloat16 copy of it (weights and inputs converted;
            channels-last weights too when ``channels_last``). On a 2-core AVX512-BF16 CPU
            EfficientNet-Lite0 ran ~3x the images/s of float32 at 224 px but only ~1.3x at
            84 px (~4x with ``freeze`` too); features differ from float32 by ~0.5% (min cosine
            similarity ~0.995); ``benchmarks/speed.py`` measures both and the effect on
            accuracy. Rows are stored as float32 either way. Part of the key (float32 and
            bfloat16 rows never mix); the caller's backbone is not modified.
        freeze: run a ``torch.jit.trace``-d, ``torch.jit.freeze``-d copy of the backbone
            (batch-norm folded into the convolutions, weights as constants; channels-last
            weights when ``channels_last``), traced on each call's first batch: ~2x the
            images/s of eager float32 for EfficientNet-Lite0 at 84 px on a CPU, features equal
            up to float rounding (~1e-5). A trace records the operations of one forward pass,
            so it is only right for a backbone whose forward does not branch on the input
            *values* (every anyshot backbone qualifies; the image size, fixed by the
            preprocessing within a call, may be baked in). Costs a few seconds per call that
            computes anything. ``torch.jit`` is deprecated (not removed) in recent torch
            releases in favour of ``torch.compile``. Part of the key.
        fold_batch_norm: run a copy whose batch-norms are folded into the convolutions before
            them (:func:`~anyshot.embedding.fold_batch_norm`; backbones that list them in
            ``batch_norm_after_conv``, e.g. EfficientNet-Lite0): about 1.3x the images/s on a
            CPU, features equal up to float rounding. Part of the key (only when true, so the
            keys of earlier versions stay valid).

    Memory: only the rows asked for are kept (plus an index of ~250 bytes per row on disk), so
    a large folder costs little; computing streams ``batch_size`` images at a time.

    Raises:
        ConfigurationError: ``shard_size`` below 1, or an unknown ``dtype``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        shard_size: int = 1024,
        channels_last: bool = True,
        dtype: str = "float32",
        freeze: bool = False,
        fold_batch_norm: bool = False,
    ) -> None:
        if shard_size < 1:
            raise ConfigurationError(f"shard_size must be at least 1, got {shard_size}")
        if dtype not in DTYPES:
            raise ConfigurationError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.freeze = bool(freeze)
        self.fold_batch_norm = bool(fold_batch_norm)
        self.directory = None if directory is None else Path(directory)
        self.shard_size = int(shard_size)
        self.channels_last = bool(channels_last)
        #: Rows computed (not read from memory or disk) by this object, over all calls.
        self.computed = 0
        self._rows: dict[str, torch.Tensor] = {}  # key -> row [D] (those asked for)
        # model folder -> (shards already indexed, key -> (shard name, row position))
        self._index: dict[Path, tuple[set[str], dict[str, tuple[str, int]]]] = {}
        self._models: dict[str, RememberedModel] = {}
        self._writable = True
        self._files = FileDigests(None if self.directory is None else self.directory / "files")
        #: (the backbone, its digest, device and versions, its converted copy): see
        #: :meth:`_inference_network`
        self._converted: tuple[weakref.ref[nn.Module], tuple[Any, ...], nn.Module] | None = None

    # ------------------------------------------------------------------ public
    def features(
        self,
        backbone: nn.Module,
        dataset: ImageDataset,
        indices: Iterable[int] | np.ndarray | torch.Tensor,
        *,
        batch_size: int = 64,
        show_progress: bool = False,
        preprocessing: Preprocessing | None = None,
        desc: str = "embedding",
    ) -> torch.Tensor:
        """Features of ``dataset`` items ``indices``: ``[N, D]`` float32 on the CPU, in that order.

        Rows already cached are read; only the missing items are decoded and embedded
        (``batch_size`` images per forward pass, on the backbone's device) and then stored.

        Args:
            backbone: maps ``[B, C, H, W]`` to ``[B, D]``; not modified (eval mode only inside).
            dataset: where the items come from.
            indices: ``N`` item indices (repeats allowed; negative counts from the end).
            batch_size: images per forward pass.
            show_progress: draw a progress bar over the items being embedded.
            preprocessing: how to decode; default ``backbone.preprocessing``.
            desc: the progress bar's label.

        Raises:
            ConfigurationError: no preprocessing (a plain module without ``.preprocessing``
                and none given), ``batch_size`` below 1, or (``freeze``) a backbone that
                ``torch.jit`` cannot trace.
            IndexError: an index outside the dataset.
            ImageReadError: an item cannot be decoded.
        """
        chosen = _preprocessing_of(backbone, preprocessing)
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        items = [dataset.check_index(int(i)) for i in np.asarray(list(indices)).reshape(-1)]
        unique = list(dict.fromkeys(items))
        rows, _ = self.embed(
            backbone,
            dataset.images(unique, chosen),
            preprocessing=chosen,
            batch_size=batch_size,
            show_progress=show_progress,
            desc=desc,
        )
        where = {item: position for position, item in enumerate(unique)}
        if not items:
            return rows
        return rows[torch.tensor([where[item] for item in items], dtype=torch.long)]

    def embed(
        self,
        backbone: nn.Module,
        images: Images,
        *,
        preprocessing: Preprocessing | None = None,
        batch_size: int = 64,
        on_unreadable: OnUnreadable | None = None,
        show_progress: bool = False,
        desc: str = "embedding",
        digest: str | None = None,
        store: bool = True,
    ) -> tuple[torch.Tensor, list[int]]:
        """Features of ``images``, read where cached, else computed (and stored).

        Images with a file behind them (paths in an :class:`~anyshot.embedding.ImageList`,
        dataset items) are keyed as the module doc says; in-memory images (PIL images,
        tensors) have no file identity and are embedded every time, never stored.

        Args:
            backbone: maps ``[B, C, H, W]`` to ``[B, D]``; not modified.
            images: a tensor ``[N, C, H, W]``, an :class:`~anyshot.embedding.ImageList` or a
                dataset's ``LazyImages``.
            preprocessing: how the images are decoded (part of the key); default the images'
                own ``.preprocessing``, else ``backbone.preprocessing``.
            batch_size: images per forward pass.
            on_unreadable: if given, unreadable images are left out and reported to it (with
                their position in ``images``); otherwise the first one raises.
            show_progress: a progress bar (rate, ETA) over the images being embedded.
            desc: its label.
            digest: :func:`model_digest` of ``backbone`` with this preprocessing, when the
                caller already has it (hashing the weights again costs ~40 ms for
                EfficientNet-Lite0).
            store: keep the computed rows (``False``: a module whose rows the caller keeps
                itself, e.g. with :meth:`keep`)

        Returns:
            ``(features [n, D] float32 on the CPU, positions of the n images embedded)``.

        Raises:
            ConfigurationError: no preprocessing, ``batch_size`` below 1, or (``freeze``) a
                backbone that ``torch.jit`` cannot trace.
            ImageReadError: an unreadable image, without ``on_unreadable``.
        """
        chosen = _preprocessing_of(
            backbone,
            preprocessing if preprocessing is not None else getattr(images, "preprocessing", None),
        )
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        digest = model_digest(backbone, chosen) if digest is None else digest
        keys, found, folder = self._lookup(digest, images)
        first: dict[str, int] = {}
        missing = [
            i
            for i, k in enumerate(keys)
            if i not in found and (k is None or first.setdefault(k, i) == i)
        ]
        if missing:
            computed = self._compute(
                backbone, images, missing, keys if store else [None] * len(keys), folder,
                batch_size, on_unreadable,
                progress_bar(total=len(missing), desc=desc, enabled=show_progress, unit="img"),
                digest, store,
            )  # fmt: skip
            found.update(computed)
            for i, k in enumerate(keys):  # repeats of a file computed once
                if k is not None and i not in found and first.get(k) in computed:
                    found[i] = computed[first[k]]
        kept = sorted(found)
        if not kept:
            return torch.empty(0, 0), kept
        return torch.stack([found[i] for i in kept]), kept

    def keep(
        self, digest: str, images: Images, positions: Sequence[int], rows: torch.Tensor
    ) -> None:
        """Remember ``rows`` ``[n, D]`` as model ``digest``'s features of ``images`` at
        ``positions``, in memory and in the folder, as :meth:`embed` stores what it computes:
        rows computed elsewhere with this cache's settings (``dtype``, layout, folding), e.g.
        by one module running two networks on each decoded batch. Images without a file behind
        them are skipped."""
        folder = None if self.directory is None else self.directory / digest[:16]
        pending: list[tuple[str, torch.Tensor]] = []
        for position, row in zip(positions, rows, strict=True):
            key = self._key(digest, images, position)
            if key is not None:
                self._rows[key] = row
                pending.append((key, row))
        self._files.save()
        for start in range(0, len(pending), self.shard_size):
            self._store(folder, pending[start : start + self.shard_size])

    def stored(self, digest: str, images: Images) -> tuple[torch.Tensor, list[int]] | None:
        """The rows of ``images`` when every one of them is cached for the model ``digest``
        (in memory or on disk), else ``None``: ``(features [N, D] float32, [0..N-1])``, as
        :meth:`embed` would return them, without the network. Images without a file behind
        them are never cached, so they give ``None``.

        Stops at the first image not cached (its key is the only one computed then), so a
        folder of new images costs one key before :meth:`embed` computes them all.
        """
        folder = None if self.directory is None else self.directory / digest[:16]
        self._read_disk(folder, set())  # index the shards, read no rows
        index = self._index.get(folder, (set(), {}))[1] if folder is not None else {}
        keys: list[str] = []
        for i in range(len(images)):
            key = self._key(digest, images, i)
            if key is None or (key not in self._rows and key not in index):
                self._files.save()
                return None
            keys.append(key)
        self._files.save()
        if not keys:
            return None
        self._read_disk(folder, {k for k in keys if k not in self._rows})
        return torch.stack([self._rows[k] for k in keys]), list(range(len(keys)))

    def remember_model(self, identity: str, model: RememberedModel) -> None:
        """Keep ``model`` under ``identity`` (in memory, and in the folder when there is one;
        a folder that cannot be written is skipped silently: remembering only saves time)."""
        self._models[identity] = model
        if self.directory is None:
            return
        record = {"identity": identity, "digest": model.digest, "arch": model.arch,
                  "preprocessing": model.preprocessing.to_dict()}  # fmt: skip
        with contextlib.suppress(OSError):
            atomic_write_text(self._model_file(identity), json.dumps(record, sort_keys=True))

    def remembered_model(self, identity: str) -> RememberedModel | None:
        """What :meth:`remember_model` kept under ``identity`` (in this object or this folder),
        or ``None``; an unreadable or foreign record counts as none."""
        if identity in self._models or self.directory is None:
            return self._models.get(identity)
        try:
            record = json.loads(self._model_file(identity).read_text(encoding="utf-8"))
            if record["identity"] != identity:
                return None
            model = RememberedModel(
                str(record["digest"]),
                Preprocessing.from_dict(dict(record["preprocessing"])),
                str(record["arch"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._models[identity] = model
        return model

    # ------------------------------------------------------------------ internals
    def _model_file(self, identity: str) -> Path:
        assert self.directory is not None
        name = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]
        return self.directory / "models" / f"{name}.json"

    def _lookup(
        self, digest: str, images: Images
    ) -> tuple[list[str | None], dict[int, torch.Tensor], Path | None]:
        """``(key of each image, rows found by position, the model's folder)``: the rows in
        memory, after reading the wanted ones of the folder's shards into memory."""
        keys = [self._key(digest, images, i) for i in range(len(images))]
        self._files.save()
        folder = None if self.directory is None else self.directory / digest[:16]
        self._read_disk(folder, {k for k in keys if k is not None and k not in self._rows})
        found = {i: self._rows[k] for i, k in enumerate(keys) if k is not None and k in self._rows}
        return keys, found, folder

    def _key(self, digest: str, images: Images, position: int) -> str | None:
        """The key of image ``position`` (``None``: an in-memory image, never stored)."""
        source = _file_source(images, position)
        if source is None:
            return None
        path, rest = file_of(source)
        value = None if path is None else self._files.digest(path)
        content = None if value is None else (value, rest)
        return _item_key(
            digest, source, self.channels_last, self.dtype, self.freeze, self.fold_batch_norm,
            content=content, reduced=bool(getattr(images, "decode_for_size", False)),
        )  # fmt: skip

    def _read_disk(self, folder: Path | None, wanted: set[str]) -> None:
        """Load the rows of ``wanted`` keys stored in ``folder`` into memory.

        Shards not seen before are indexed (key -> shard, position); only wanted rows are
        copied out of them (memory-mapped reads).
        """
        if folder is None:
            return
        seen, index = self._index.setdefault(folder, (set(), {}))
        if folder.is_dir():
            for shard in sorted(folder.glob("shard-*.pt")):
                if shard.name in seen:
                    continue
                seen.add(shard.name)
                data = _read_shard(shard)
                if data is None:
                    continue
                for position, key in enumerate(data["keys"]):
                    index.setdefault(str(key), (shard.name, position))
                self._take(data, wanted)
        by_shard: dict[str, None] = {
            index[k][0]: None for k in wanted if k in index and k not in self._rows
        }
        for name in by_shard:
            data = _read_shard(folder / name)
            if data is not None:
                self._take(data, wanted)

    def _take(self, data: dict[str, Any], wanted: set[str]) -> None:
        for position, key in enumerate(data["keys"]):
            if key in wanted and key not in self._rows:
                self._rows[str(key)] = data["features"][position].clone()

    def _compute(
        self,
        backbone: nn.Module,
        images: Images,
        missing: list[int],
        keys: list[str | None],
        folder: Path | None,
        batch_size: int,
        on_unreadable: OnUnreadable | None,
        bar: Any,
        digest: str,
        reuse: bool,
    ) -> dict[int, torch.Tensor]:
        """Embed positions ``missing`` of ``images`` with the network of ``digest`` (its
        converted copy kept for the next call when ``reuse``); store the keyed rows; return
        all rows by position (unreadable ones are absent)."""
        subset = _Subset(images, missing)
        report = None
        if on_unreadable is not None:
            callback = on_unreadable

            def report(item: Unreadable) -> None:
                callback(dataclasses.replace(item, index=missing[item.index]))

        network = self._inference_network(backbone, digest, keep=reuse)
        rows: dict[int, torch.Tensor] = {}
        pending: list[tuple[str, torch.Tensor]] = []
        try:
            with evaluation_mode(network):
                if self.freeze:
                    example = torch.stack([subset[i] for i in range(min(batch_size, len(subset)))])
                    network = _traced_and_frozen(
                        network,
                        model_input(example, module_device(backbone), dtype=self.dtype,
                                    channels_last=self.channels_last),
                    )  # fmt: skip
                for decoded, batch in embedding_batches(
                    network, subset, batch_size=batch_size, dtype=self.dtype,
                    channels_last=self.channels_last, on_unreadable=report, bar=bar,
                ):  # fmt: skip
                    for position, row in zip(decoded, batch, strict=True):
                        rows[missing[position]] = row
                        key = keys[missing[position]]
                        if key is not None:
                            pending.append((key, row))
                            self._rows[key] = row
                    self.computed += len(decoded)
                    while len(pending) >= self.shard_size:
                        self._store(folder, pending[: self.shard_size])
                        pending = pending[self.shard_size :]
        finally:
            bar.close()
            self._store(folder, pending)
        return rows

    def _inference_network(self, backbone: nn.Module, digest: str, keep: bool) -> nn.Module:
        """``backbone`` as this cache runs it (:func:`inference_network`: a converted copy, e.g.
        bfloat16 with folded batch-norms), converted once and reused while the same object
        has the same model ``digest`` (its weights' bytes, embedding and configuration), the
        same device and the same in-place version counters: the estimator embeds its labelled
        and its query images in separate calls, and each conversion (a deep copy) cost about
        0.1 s of a 2 s ``classify``. The copy is dropped with the backbone; none is kept
        without ``keep`` (a module of the moment, e.g. two networks run together), for a
        frozen trace (made per call) or for inference tensors (no version counters)."""
        tensors = [*backbone.parameters(), *backbone.buffers()]
        device = module_device(backbone)
        if any(t.is_inference() for t in tensors):
            key = None
        else:
            key = (digest, str(device), tuple(t._version for t in tensors))
        held = self._converted
        if key is not None and held is not None and held[0]() is backbone and held[1] == key:
            return held[2]
        network = inference_network(
            backbone, device, dtype=self.dtype,
            channels_last=self.channels_last, private=self.freeze, fold=self.fold_batch_norm,
        )  # fmt: skip
        self._converted = None
        if keep and key is not None and network is not backbone and not self.freeze:
            self._converted = (weakref.ref(backbone, self._forget_converted), key, network)
        return network

    def _forget_converted(self, dead: weakref.ref[nn.Module]) -> None:
        if self._converted is not None and self._converted[0] is dead:
            self._converted = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the converted network (a weak reference cannot be pickled)."""
        return {**self.__dict__, "_converted": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also a cache pickled before it kept a converted network."""
        self.__dict__.update({"_converted": None, **state})

    def _store(self, folder: Path | None, pending: list[tuple[str, torch.Tensor]]) -> None:
        """Write ``pending`` rows as one shard (nothing without a folder or rows).

        A folder that cannot be written (read-only, full) gives one warning; the run goes on
        with the rows in memory only.
        """
        if folder is None or not pending or not self._writable:
            return
        keys = [key for key, _ in pending]
        features = torch.stack([row for _, row in pending])
        try:
            name = self._write_shard(folder, keys, features)
        except OSError as error:
            self._writable = False
            warnings.warn(
                f"feature cache {str(self.directory)!r} cannot be written ({error}); "
                "continuing without storing features",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        seen, index = self._index.setdefault(folder, (set(), {}))
        seen.add(name)
        for position, key in enumerate(keys):
            index.setdefault(key, (name, position))

    @staticmethod
    def _write_shard(folder: Path, keys: list[str], features: torch.Tensor) -> str:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.pt"
        buffer = io.BytesIO()
        payload: dict[str, Any] = {"keys": keys, "features": features.clone()}
        torch.save(payload, buffer)
        atomic_write_bytes(folder / name, buffer.getvalue())
        return name


def _preprocessing_of(backbone: nn.Module, given: Preprocessing | None) -> Preprocessing:
    chosen = given if given is not None else getattr(backbone, "preprocessing", None)
    if not isinstance(chosen, Preprocessing):
        raise ConfigurationError(
            f"{type(backbone).__name__} has no .preprocessing; pass preprocessing= to "
            "FeatureCache.features"
        )
    return chosen
