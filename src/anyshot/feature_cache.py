"""Frozen-backbone features of dataset items, computed once and kept on disk.

:class:`FeatureCache` embeds each requested dataset item once (eval mode,
``torch.inference_mode``, channels-last input, float32 as the network computes it) and stores
the rows in a folder, so head-scope methods and evaluations over many episodes reuse them.

**The key.** A row is stored under ``sha256`` of the JSON of

* ``model``: the *model digest*, ``sha256`` of the JSON of ``{"arch", "config", "embedding",
  "preprocessing"}`` (the backbone's registry name, its constructor ``config()``, its embedding
  mode ``"features"`` / ``"logits"`` and the :meth:`Preprocessing.to_dict` used to decode images)
  followed by every ``state_dict`` entry's name, dtype, shape and raw bytes (so any change of a
  weight or buffer changes the digest);
* ``source``: the dataset item's :meth:`~anyshot.data.dataset.ImageDataset.source` string
  (a file path, or ``"<zip path>:<member>@rotDDD"`` for Omniglot);
* ``channels_last``: whether batches were fed channels-last (see :class:`FeatureCache`);
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

import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
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

__all__ = ["FeatureCache", "file_identity", "model_digest"]

_ZIP_MARK = ".zip:"


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


def _item_key(model: str, source: str, channels_last: bool) -> str:
    size, mtime_ns = file_identity(source)
    record = {
        "model": model,
        "source": source,
        "size": size,
        "mtime_ns": mtime_ns,
        "channels_last": channels_last,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


class FeatureCache:
    """A folder of frozen-backbone features of dataset items (see the module doc for the key).

    Args:
        directory: where the shards live (created on first write).
        shard_size: items embedded and written per shard (bounds what a crash can lose).
        channels_last: feed the network channels-last batches (faster convolutions on CPU;
            the features differ from a contiguous-input forward by float rounding, ~1e-6).
            ``False`` reproduces :func:`~anyshot.methods.frozen.frozen_forward` bit for bit.
            Part of the key, so the two never mix.

    Raises:
        ConfigurationError: ``shard_size`` below 1.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        shard_size: int = 1024,
        channels_last: bool = True,
    ) -> None:
        if shard_size < 1:
            raise ConfigurationError(f"shard_size must be at least 1, got {shard_size}")
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
                and none given), or ``batch_size`` below 1.
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
            item: _item_key(digest, dataset.source(item), self.channels_last)
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
        bar = progress_bar(total=len(missing), desc="embedding", enabled=show_progress, unit="img")
        try:
            with evaluation_mode(backbone), torch.inference_mode():
                for start in range(0, len(missing), self.shard_size):
                    shard_items = list(missing[start : start + self.shard_size])
                    outputs: list[torch.Tensor] = []
                    for first in range(0, len(shard_items), batch_size):
                        chunk = shard_items[first : first + batch_size]
                        batch = dataset.load_batch(chunk, preprocessing).to(device)
                        if self.channels_last:
                            batch = batch.contiguous(memory_format=torch.channels_last)
                        outputs.append(backbone(batch).float().cpu().contiguous())
                        bar.update(len(chunk))
                    features = torch.cat(outputs)
                    shard_keys = [keys[item] for item in shard_items]
                    name = self._write_shard(folder, shard_keys, features)
                    seen.add(name)
                    for key, row in zip(shard_keys, features, strict=True):
                        rows[key] = row
                    self.computed += len(shard_items)
        finally:
            bar.close()

    @staticmethod
    def _write_shard(folder: Path, keys: list[str], features: torch.Tensor) -> str:
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.pt"
        buffer = io.BytesIO()
        payload: dict[str, Any] = {"keys": keys, "features": features.clone()}
        torch.save(payload, buffer)
        atomic_write_bytes(folder / name, buffer.getvalue())
        return name
