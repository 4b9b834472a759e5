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
* ``source``: the dataset item's :meth:`~anyshot.data.dataset.ImageDataset.source` string
  (a file path, or ``"<zip path>:<member>@rotDDD"`` for Omniglot), its file part made absolute
  and symlink-free (:func:`canonical_source`), so a relative and an absolute data root share rows;
* ``channels_last``: whether batches were fed channels-last (see :class:`FeatureCache`);
* ``dtype``: only when it is not ``"float32"`` (so float32 keys are those of earlier versions):
  the precision the network computed in (see :class:`FeatureCache`);
* ``freeze``: only when true: the network ran as a frozen TorchScript trace (see
  :class:`FeatureCache`);
* ``size`` and ``mtime_ns`` of the file behind the source: ``os.stat`` of the source itself, or,
  when the source is ``"<archive>.zip:<member>..."``, of the zip archive (a rewritten archive
  therefore invalidates all of its members). Both are ``null`` when no file can be stat'ed
  (e.g. an in-memory dataset): such items are keyed by source alone.

A changed preprocessing, weight, embedding mode or file (size or modification time) thus gives
a different key: a miss, recomputed. Nothing is ever overwritten; stale rows are simply never
asked for again (delete the folder to reclaim the space).

**On disk.** ``DIRECTORY/<model digest[:16]>/shard-<time>-<random>.pt``, each a
``torch.save`` of ``{"keys": [str, ...], "features": FloatTensor [n, D]}``, written to a
temporary file and renamed (:func:`anyshot.io.atomic_write_bytes`). Missing rows are computed
``shard_size`` items at a time and each shard is written as soon as it is done, so an interrupted
run loses at most the shard in progress. Several processes may share a folder: shard names never
collide, and a row computed twice is merely stored twice.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from anyshot.data.dataset import ImageDataset
from anyshot.data.images import Preprocessing
from anyshot.errors import ConfigurationError
from anyshot.io import atomic_write_bytes
from anyshot.methods.frozen import evaluation_mode, module_device
from anyshot.progress import progress_bar

__all__ = ["FeatureCache", "canonical_source", "fastest_dtype", "file_identity", "model_digest"]

_ZIP_MARK = ".zip:"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


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


def model_digest(backbone: nn.Module, preprocessing: Preprocessing) -> str:
    """Hex ``sha256`` of what determines a backbone's embedding of a decoded image.

    Covers the architecture name (``arch``, else the class's qualified name), ``config()`` when
    the module has one, the ``embedding`` mode, ``preprocessing.to_dict()`` and every
    ``state_dict`` entry (name, dtype, shape, bytes).
    """
    config_fn = getattr(backbone, "config", None)
    header = {
        "arch": str(getattr(backbone, "arch", type(backbone).__qualname__)),
        "class": f"{type(backbone).__module__}.{type(backbone).__qualname__}",
        "config": config_fn() if callable(config_fn) else None,
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
    """``(size, mtime_ns)`` of the file behind a dataset source string, or ``(None, None)``.

    The source itself is tried first; ``"<archive>.zip:<member>..."`` falls back to the archive.
    """
    candidates = [source]
    cut = source.rfind(_ZIP_MARK)
    if cut >= 0:
        candidates.append(source[: cut + len(_ZIP_MARK) - 1])
    for candidate in candidates:
        try:
            stat = os.stat(candidate)
        except (OSError, ValueError):
            continue
        return int(stat.st_size), int(stat.st_mtime_ns)
    return None, None


def canonical_source(source: str) -> str:
    """``source`` with its file part (the source itself, or the archive of
    ``"<archive>.zip:<member>..."``) made absolute and free of symlinks, when that file exists.

    The same file then gets the same key from any working directory or path spelling.
    """
    if os.path.exists(source):
        return os.path.realpath(source)
    cut = source.rfind(_ZIP_MARK)
    if cut >= 0:
        archive = source[: cut + len(_ZIP_MARK) - 1]
        if os.path.exists(archive):
            return os.path.realpath(archive) + source[len(archive) :]
    return source


def _item_key(
    model: str, source: str, channels_last: bool, dtype: str = "float32", freeze: bool = False
) -> str:
    size, mtime_ns = file_identity(source)
    record: dict[str, Any] = {
        "model": model,
        "source": canonical_source(source),
        "size": size,
        "mtime_ns": mtime_ns,
        "channels_last": channels_last,
    }
    if dtype != "float32":  # default keys stay those of the versions without these options
        record["dtype"] = dtype
    if freeze:
        record["freeze"] = True
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


class FeatureCache:
    """A folder of frozen-backbone features of dataset items (see the module doc for the key).

    Args:
        directory: where the shards live (created on first write).
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

    Raises:
        ConfigurationError: ``shard_size`` below 1, or an unknown ``dtype``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        shard_size: int = 1024,
        channels_last: bool = True,
        dtype: str = "float32",
        freeze: bool = False,
    ) -> None:
        if shard_size < 1:
            raise ConfigurationError(f"shard_size must be at least 1, got {shard_size}")
        if dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype = dtype
        self.freeze = bool(freeze)
        self.directory = Path(directory)
        self.shard_size = int(shard_size)
        self.channels_last = bool(channels_last)
        #: Rows computed (not read from disk) by this object, over all calls.
        self.computed = 0
        # model folder -> (shard files already read, key -> feature row [D])
        self._loaded: dict[Path, tuple[set[str], dict[str, torch.Tensor]]] = {}

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

        Raises:
            ConfigurationError: no preprocessing (a plain module without ``.preprocessing``
                and none given), ``batch_size`` below 1, or (``freeze``) a backbone that
                ``torch.jit`` cannot trace.
            IndexError: an index outside the dataset.
            ImageReadError: an item cannot be decoded.
        """
        if batch_size < 1:
            raise ConfigurationError(f"batch_size must be at least 1, got {batch_size}")
        chosen = (
            preprocessing if preprocessing is not None else getattr(backbone, "preprocessing", None)
        )
        if not isinstance(chosen, Preprocessing):
            raise ConfigurationError(
                f"{type(backbone).__name__} has no .preprocessing; pass preprocessing= to "
                "FeatureCache.features"
            )
        if isinstance(indices, torch.Tensor):
            indices = indices.tolist()
        items = [dataset.check_index(int(i)) for i in np.asarray(list(indices)).reshape(-1)]
        digest = model_digest(backbone, chosen)
        folder = self.directory / digest[:16]
        rows = self._refresh(folder)
        keys = {
            item: _item_key(
                digest, dataset.source(item), self.channels_last, self.dtype, self.freeze
            )
            for item in dict.fromkeys(items)
        }
        missing = [item for item, key in keys.items() if key not in rows]
        if missing:
            self._compute(
                backbone, dataset, missing, keys, chosen, folder, batch_size, show_progress
            )
        if not items:
            dim = next(iter(rows.values())).shape[0] if rows else 0
            return torch.empty(0, dim)
        return torch.stack([rows[keys[item]] for item in items])

    # ------------------------------------------------------------------ internals
    def _refresh(self, folder: Path) -> dict[str, torch.Tensor]:
        """Read shards of ``folder`` not read yet; return its key -> row map."""
        seen, rows = self._loaded.setdefault(folder, (set(), {}))
        if folder.is_dir():
            for shard in sorted(folder.glob("shard-*.pt")):
                if shard.name in seen:
                    continue
                data = torch.load(shard, weights_only=True)
                for key, row in zip(data["keys"], data["features"], strict=True):
                    rows[str(key)] = row
                seen.add(shard.name)
        return rows

    def _compute(
        self,
        backbone: nn.Module,
        dataset: ImageDataset,
        missing: Sequence[int],
        keys: dict[int, str],
        preprocessing: Preprocessing,
        folder: Path,
        batch_size: int,
        show_progress: bool,
    ) -> None:
        seen, rows = self._loaded[folder]
        device = module_device(backbone)
        dtype = _DTYPES[self.dtype]
        network = backbone
        if dtype != torch.float32 or self.freeze:  # a copy: the caller's backbone stays as is
            network = copy.deepcopy(backbone).to(dtype)
            if self.channels_last:
                network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

        def prepare(chunk: Sequence[int]) -> torch.Tensor:
            batch = dataset.load_batch(chunk, preprocessing).to(device)
            if dtype != torch.float32:
                batch = batch.to(dtype)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch

        bar = progress_bar(total=len(missing), desc="embedding", enabled=show_progress, unit="img")
        try:
            with evaluation_mode(network):
                if self.freeze:
                    network = _traced_and_frozen(network, prepare(missing[:batch_size]))
                self._compute_shards(
                    network, missing, keys, prepare, folder, batch_size, bar, seen, rows
                )
        finally:
            bar.close()

    def _compute_shards(
        self,
        network: nn.Module,
        missing: Sequence[int],
        keys: dict[int, str],
        prepare: Callable[[Sequence[int]], torch.Tensor],
        folder: Path,
        batch_size: int,
        bar: Any,
        seen: set[str],
        rows: dict[str, torch.Tensor],
    ) -> None:
        with torch.inference_mode():
            for start in range(0, len(missing), self.shard_size):
                shard_items = list(missing[start : start + self.shard_size])
                outputs: list[torch.Tensor] = []
                for first in range(0, len(shard_items), batch_size):
                    chunk = shard_items[first : first + batch_size]
                    outputs.append(network(prepare(chunk)).float().cpu().contiguous())
                    bar.update(len(chunk))
                features = torch.cat(outputs)
                shard_keys = [keys[item] for item in shard_items]
                name = self._write_shard(folder, shard_keys, features)
                seen.add(name)
                for key, row in zip(shard_keys, features, strict=True):
                    rows[key] = row
                self.computed += len(shard_items)

    @staticmethod
    def _write_shard(folder: Path, keys: list[str], features: torch.Tensor) -> str:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.pt"
        buffer = io.BytesIO()
        payload: dict[str, Any] = {"keys": keys, "features": features.clone()}
        torch.save(payload, buffer)
        atomic_write_bytes(folder / name, buffer.getvalue())
        return name
