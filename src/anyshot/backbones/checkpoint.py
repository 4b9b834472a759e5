"""Backbone checkpoints: one ``torch.save``'d dict, written atomically, read with ``weights_only``.

Format (``format_version`` 1)::

    {"format": "anyshot-backbone", "format_version": 1, "anyshot_version": "0.1.0",
     "arch": "conv4", "config": {...constructor arguments...},
     "preprocessing": {...Preprocessing.to_dict()...}, "embedding": "features",
     "class_names": [...] or None, "state_dict": {name: tensor}, "extra": {...} or None}

Everything but the tensors is plain data (str, int, float, bool, None, list, tuple, dict), so the
file loads with ``torch.load(..., weights_only=True)``: loading a checkpoint runs no pickled code.
"""

from __future__ import annotations

import os
import tempfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import anyshot
from anyshot.backbones.architectures import BACKBONES, build_backbone
from anyshot.backbones.base import Backbone
from anyshot.backbones.preprocessing import resolve_preprocessing
from anyshot.data.images import Preprocessing
from anyshot.errors import CheckpointError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "backbone_from_dict",
    "backbone_to_dict",
    "check_plain_data",
    "load_checkpoint",
    "load_checkpoint_with_metadata",
    "save_backbone",
]

FORMAT = "anyshot-backbone"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("arch", "config", "preprocessing", "embedding", "state_dict")
INPUT_KEYS = ("image_size", "channels")  # overrides that also change the stored preprocessing
_LISTED = 5  # how many offending keys an error message names


def save_backbone(
    backbone: Backbone, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``backbone`` (architecture, preprocessing, weights) to ``path`` atomically.

    Args:
        backbone: the network to save (its weights are copied to the CPU).
        path: destination file (``.pt`` by convention); parent directories are created.
        extra: JSON-like metadata stored alongside (str, int, float, bool, None, lists, tuples,
            dicts with str keys, tensors), returned by :func:`load_checkpoint_with_metadata`.

    Returns:
        The path written.

    Raises:
        CheckpointError: ``extra`` holds values that a ``weights_only`` load could not read.
    """
    payload = backbone_to_dict(backbone, extra=extra)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)
    return target


def backbone_to_dict(
    backbone: Backbone,
    *,
    preprocessing: Preprocessing | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint payload of ``backbone`` (what :func:`save_backbone` writes), in memory.

    Other file formats embed it (an anyshot model file holds its backbone this way).

    Args:
        backbone: the network (its weights are copied to the CPU).
        preprocessing: stored instead of ``backbone.preprocessing`` (e.g. another image size).
        extra: plain metadata stored alongside (see :func:`save_backbone`).

    Raises:
        CheckpointError: ``extra`` or the config hold values a ``weights_only`` load cannot read.
    """
    if extra is not None:
        _check_plain(extra, "extra")
    chosen = preprocessing if preprocessing is not None else backbone.preprocessing
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "anyshot_version": anyshot.__version__,
        "arch": backbone.arch,
        "config": dict(backbone.config()),
        "preprocessing": chosen.to_dict(),
        "embedding": backbone.embedding,
        "class_names": list(backbone.class_names) if backbone.class_names is not None else None,
        "state_dict": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
        "extra": extra,
    }
    _check_plain(payload["config"], "backbone.config()")
    return payload


def load_checkpoint(path: str | os.PathLike[str], **overrides: Any) -> Backbone:
    """Read a backbone written by :func:`save_backbone`.

    See :func:`load_checkpoint_with_metadata` for ``overrides`` and the errors raised.
    """
    backbone, _ = load_checkpoint_with_metadata(path, **overrides)
    return backbone


def load_checkpoint_with_metadata(
    path: str | os.PathLike[str], **overrides: Any
) -> tuple[Backbone, dict[str, Any]]:
    """Read a backbone and its metadata.

    The architecture is rebuilt from the stored config (EfficientNet-Lite0 with
    ``pretrained=False``: the stored weights are used, the ImageNet file is not read), then the
    stored state dict is loaded strictly. The module is left in training mode, like a freshly
    built one; call ``.eval()`` before embedding.

    Args:
        path: the checkpoint file.
        **overrides: constructor arguments replacing the stored ones (e.g. ``embedding``,
            ``image_size``, ``class_names``); ``image_size`` / ``channels`` also change the
            stored preprocessing (through
            :func:`~anyshot.backbones.preprocessing.resolve_preprocessing`, which keeps its
            normalisation); ``None`` for either keeps the stored value.

    Returns:
        ``(backbone, metadata)``; metadata has ``format_version``, ``anyshot_version``,
        ``arch``, ``config`` and ``extra`` (``{}`` when none was saved).

    Raises:
        CheckpointError: missing or unreadable file, not an anyshot checkpoint, unknown
            architecture, a newer format, or weights that do not match the architecture.
    """
    name = os.fspath(path)
    return backbone_from_dict(_read(name), name, **overrides)


def backbone_from_dict(data: Any, name: str, **overrides: Any) -> tuple[Backbone, dict[str, Any]]:
    """Rebuild a backbone from a checkpoint payload (see :func:`backbone_to_dict`).

    Args:
        data: the payload, as read by ``torch.load(..., weights_only=True)``.
        name: where it came from, for error messages (a file name).
        **overrides: as for :func:`load_checkpoint_with_metadata`.

    Returns:
        ``(backbone, metadata)`` as :func:`load_checkpoint_with_metadata`.

    Raises:
        CheckpointError: not a backbone payload, a newer format, unknown architecture, or
            weights that do not match the architecture.
    """
    _check_format(data, name)
    arch = data["arch"]
    if arch not in BACKBONES:
        raise CheckpointError(
            f"checkpoint {name!r} is for architecture {arch!r}, which this anyshot does not know "
            f"(known: {', '.join(BACKBONES)}); upgrade anyshot or check the file."
        )
    for key in ("config", "preprocessing"):
        if not isinstance(data[key], Mapping):
            raise CheckpointError(f"checkpoint {name!r}: {key!r} is not a dict.")
    inputs = {key: overrides[key] for key in INPUT_KEYS if overrides.get(key) is not None}
    others = {key: value for key, value in overrides.items() if key not in INPUT_KEYS}
    backbone = _rebuild(data, name, {**others, **inputs})
    _load_state(backbone, data["state_dict"], name)
    backbone.preprocessing = _stored_preprocessing(data["preprocessing"], name, inputs)
    metadata = {
        "format_version": data["format_version"],
        "anyshot_version": data.get("anyshot_version"),
        "arch": arch,
        "config": dict(data["config"]),
        "extra": data.get("extra") or {},
    }
    return backbone, metadata


def _stored_preprocessing(
    stored: Mapping[str, Any], name: str, inputs: dict[str, Any]
) -> Preprocessing:
    """The payload's preprocessing with the ``image_size`` / ``channels`` overrides applied."""
    try:
        return resolve_preprocessing(stored, **inputs)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {name!r}: cannot use its preprocessing {dict(stored)} with {inputs}: "
            f"{error}"
        ) from error


def _rebuild(data: Mapping[str, Any], name: str, overrides: dict[str, Any]) -> Backbone:
    """The payload's architecture built from its stored config (weights not loaded yet)."""
    config = dict(data["config"])
    if "pretrained" in config:
        config["pretrained"] = False  # the stored state dict has the weights
    kwargs: dict[str, Any] = {
        **config,
        "embedding": data["embedding"],
        "class_names": data.get("class_names"),
        **overrides,
    }
    arch = data["arch"]
    try:
        return build_backbone(arch, **kwargs)
    except (TypeError, ValueError) as error:
        shown = {k: v for k, v in kwargs.items() if k != "class_names"}
        raise CheckpointError(
            f"cannot rebuild {arch!r} from checkpoint {name!r} with arguments {shown}: {error}"
        ) from error


# --- helpers ------------------------------------------------------------------------------
#: How a torch file starts: ``torch.save``'s zip format, or the legacy format's pickle stream.
TORCH_FILE_STARTS = (b"PK", b"\x80")


def foreign_start(path: Path) -> bytes | None:
    """The first 4 bytes of ``path`` when they are not how a torch file starts (an image, a
    text file: say so rather than torch's message), else ``None``.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as handle:
        start = handle.read(4)
    return None if start.startswith(TORCH_FILE_STARTS) else start


def torch_file(name: str, error: type[Exception], noun: str, kind: str, remedy: str) -> Path:
    """``name`` as a path, after the checks every torch file a user names gets: it exists, is
    a file, can be read and starts as a torch file. ``noun`` (``"checkpoint"``, ``"model"``)
    and ``kind`` (``"a backbone checkpoint"``) word the ``error`` raised; ``remedy`` ends the
    message about a file that is no torch file."""
    path = Path(name)
    if not path.exists():
        raise error(f"{noun} file {name!r} does not exist; check the path.")
    if not path.is_file():
        raise error(f"{noun} path {name!r} is not a file.")
    try:
        start = foreign_start(path)
    except OSError as cause:
        raise error(f"cannot read {noun} file {name!r}: {cause.strerror or cause}.") from cause
    if start is not None:
        raise error(
            f"{name!r} is not {kind}: it is not a torch file at all (it starts with {start!r}). "
            + remedy
        )
    return path


def _read(name: str) -> Any:
    """``torch.load`` with ``weights_only``, errors turned into :class:`CheckpointError`."""
    remedy = (
        "Give a backbone name (--backbone in --help lists them) or a file written by anyshot "
        "pretrain or save_backbone()."
    )
    path = torch_file(name, CheckpointError, "checkpoint", "a backbone checkpoint", remedy)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad files
        if "weights only load failed" in str(error).lower():
            raise CheckpointError(
                f"checkpoint {name!r} holds Python objects beyond tensors and plain data, so it "
                "is not an anyshot checkpoint (those load with weights_only=True). If you trust "
                "the file, load it yourself and re-save the weights with save_backbone()."
            ) from error
        raise CheckpointError(
            f"cannot read checkpoint {name!r}: not a torch file, or corrupt/truncated "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            "Re-create or re-download it."
        ) from error


def _check_format(data: Any, name: str) -> None:
    if isinstance(data, Mapping) and data.get("format") == FORMAT:
        version = data.get("format_version")
        if not isinstance(version, int):
            raise CheckpointError(f"checkpoint {name!r} has no valid format_version.")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint {name!r} has format version {version}, written by anyshot "
                f"{data.get('anyshot_version')}; this anyshot ({anyshot.__version__}) reads "
                f"versions up to {FORMAT_VERSION}. Upgrade anyshot."
            )
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise CheckpointError(f"checkpoint {name!r} is incomplete: missing {missing}.")
        return
    how = (
        "To use these weights, build the backbone (anyshot.backbones.build_backbone(arch, ...)), "
        "call backbone.load_state_dict(state_dict), then anyshot.backbones.save_backbone("
        "backbone, path)."
    )
    is_mapping = isinstance(data, Mapping)
    if is_mapping and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        keys = list(data)[:_LISTED]
        raise CheckpointError(
            f"{name!r} is a bare state_dict ({len(data)} tensors, e.g. {keys}), not an anyshot "
            f"checkpoint: it has no architecture or preprocessing. {how}"
        )
    if is_mapping and isinstance(data.get("state_dict"), Mapping):
        raise CheckpointError(
            f"{name!r} is a training checkpoint of another tool (a dict with a 'state_dict' "
            f"entry and keys {list(data)[:_LISTED]}), not an anyshot checkpoint. {how}"
        )
    raise CheckpointError(
        f"{name!r} is not an anyshot backbone checkpoint (no 'format': {FORMAT!r} entry; "
        f"found {type(data).__name__}). {how}"
    )


def _load_state(backbone: Backbone, state: Any, name: str) -> None:
    """Strict load with a message that lists missing, unexpected and mis-shaped keys."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"checkpoint {name!r}: 'state_dict' is {type(state).__name__}.")
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:_LISTED]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:_LISTED]})")
    if shapes:
        problems.append(f"{len(shapes)} with other shapes (e.g. {shapes[:_LISTED]})")
    if problems:
        raise CheckpointError(
            f"checkpoint {name!r}: the weights do not match {backbone.arch!r} with config "
            f"{backbone.config()}: " + "; ".join(problems) + ". The file may be for another "
            "configuration (e.g. image_size, channels or num_classes)."
        )
    try:
        backbone.load_state_dict(dict(state), strict=True)
    except (RuntimeError, TypeError) as error:
        raise CheckpointError(f"checkpoint {name!r}: cannot load weights: {error}") from error


_SCALARS = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Refuse values a ``weights_only`` load cannot rebuild (custom classes, numpy, ...).

    Exact types are required: subclasses (numpy.float64, named tuples, struct_time) pickle as
    their own class, which ``weights_only`` refuses.
    """
    if type(value) in _SCALARS or isinstance(value, torch.Tensor):
        return
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise CheckpointError(
        f"{where} holds a {type(value).__name__}; checkpoints store only str, int, float, bool, "
        "None, lists, tuples, dicts and tensors (convert it, e.g. numpy -> list)."
    )


def check_plain_data(value: Any, where: str) -> None:
    """Raise :class:`CheckpointError` if ``value`` holds anything a ``weights_only`` load refuses.

    Allowed: str, int, float, bool, None, tensors, and lists, tuples and dicts (str or int keys)
    of those. ``where`` names the value in the message.
    """
    _check_plain(value, where)


def _fsync_directory(directory: Path) -> None:
    """Persist the rename (best effort; not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
