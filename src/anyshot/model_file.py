"""The fitted-model file: one ``torch.save``'d dict, written atomically.

It holds everything a fitted classifier needs, except the untrained EfficientNet-Lite0 of a
network fitted at scopes ``last`` / ``all``, which is named (and rebuilt from the installed
package, its digest checked) rather than stored a second time.

Format (``format_version`` 3; 2 had no ``"raw_class_means"``, so its centred scores read the
centred distance alone; 1 had no ``"registry"`` form of ``"outlier_backbone"``)::

    {"format": "anyshot-model", "format_version": 3, "anyshot_version": "0.1.0",
     "backbone": {...an anyshot backbone checkpoint payload: arch, config, preprocessing,
                  embedding, state_dict (the fine-tuned weights for scopes last / all)...},
     "classifier": {"weight": tensor [K, D], "bias": tensor [K], "temperature": float,
                    "relu": bool},
     "classes": [K labels], "label_types": ["str" | "int" | "float" | "bool", ...],
     "method": {"name": "transductive", "settings": {...the method's dataclass fields...}},
     "options": {"batch_size": int, "seed": int, ...}, "info": {...fit summary...},
     "outliers": {"class_means": tensor [K, D], "distances": tensor [M], "weights": tensor [M],
                  "conformal": bool, "one_shot_quantile": float,
                  "centre": tensor [D] or None, "raw_class_means": tensor [K, D] or None}
                  (absent in files written before outlier scores; "one_shot_quantile" and
                  "centre" absent in files written before the centre: 0.3, None;
                  "raw_class_means": the uncentred means where "centre" is set, absent before
                  format 3),
     "outlier_backbone": {...a backbone payload: the untrained network whose embeddings the
                          outlier scores use...}, or, for a network of the backbone registry,
                         {"registry": {"name": str, "image_size": int or None, "seed": int,
                                       "digest": str}} (rebuilt from the name; its model
                         digest must match) (only when "backbone" was fine-tuned)}

Every value is a tensor or plain data, so the file loads with ``torch.load(...,
weights_only=True, map_location="cpu")``: loading runs no pickled code, and a model saved on a GPU
loads on a machine without one.
"""

from __future__ import annotations

import io
import os
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

import anyshot
from anyshot.backbones.architectures import BACKBONES
from anyshot.backbones.base import Backbone
from anyshot.backbones.checkpoint import FORMAT as BACKBONE_FORMAT
from anyshot.backbones.checkpoint import (
    backbone_from_dict,
    backbone_to_dict,
    check_plain_data,
    torch_file,
)
from anyshot.data.images import Preprocessing
from anyshot.errors import CheckpointError
from anyshot.io import atomic_write_bytes
from anyshot.methods.cosine import CosineClassifier
from anyshot.outliers import ONE_SHOT_QUANTILE, UnknownReference

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LABEL_TYPES",
    "ModelFileError",
    "RegistryNetwork",
    "SavedModel",
    "load_model_file",
    "save_model_file",
]

FORMAT = "anyshot-model"
FORMAT_VERSION = 3
#: Label types a model file stores (and restores with the same type).
LABEL_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
REQUIRED_KEYS = ("backbone", "classifier", "classes", "label_types", "method")


class ModelFileError(CheckpointError):
    """A file is not an anyshot model, is corrupt, or was written by a newer anyshot."""


@dataclass(frozen=True)
class RegistryNetwork:
    """A network of the backbone registry, named instead of stored (the untrained network of
    outlier scores, about half a model file otherwise).

    Attributes:
        name: the registry name (:data:`anyshot.backbones.architectures.BACKBONES`).
        image_size: the input side it was built with, ``None`` for its own.
        seed: the seed of a randomly initialised one.
        digest: its model digest (:func:`anyshot.feature_cache.model_digest`), checked when
            it is rebuilt.
    """

    name: str
    image_size: int | None
    seed: int
    digest: str


@dataclass
class SavedModel:
    """Everything a fitted classifier needs to predict, without its training images.

    Attributes:
        network: the backbone (fine-tuned for scopes ``last`` / ``all``), eval mode.
        preprocessing: how images are prepared for ``network``.
        classifier: the trained cosine classifier: weights ``[K, D]``, bias ``[K]``.
        classes: the ``K`` labels, in the classifier's row order.
        method: ``{"name": ..., "settings": {...}}`` of the method that trained it.
        options: ``{"batch_size": int, "seed": int}`` of the estimator.
        info: free-form plain data about the fit (counts per class, seconds, ...).
        class_means: ``[K, D]`` unit class means of the labelled images (outlier scores), or
            ``None`` (a file written before outlier scores).
        unknown_reference: the labelled images' distances that set the unknown threshold, or
            ``None`` (idem).
        outlier_network: the untrained backbone whose embeddings the outlier scores use when
            ``network`` was fine-tuned (same preprocessing), stored whole, or a
            :class:`RegistryNetwork` stored by name; ``None``: ``network``'s.
        outlier_centre: ``[D]`` the centre of the rows behind ``class_means``
            (:func:`anyshot.outliers.outlier_centre`), or ``None`` (rows not centred, or a file
            written before it).
        raw_class_means: ``[K, D]`` the uncentred unit class means where ``outlier_centre`` is
            set (the score averages the centred and uncentred distances,
            :func:`anyshot.outliers.outlier_distance`), else ``None`` (also in a centred file of
            format 2, whose score and threshold are the centred distance's alone).
        anyshot_version: the version that wrote the file (on load).
    """

    network: Backbone
    preprocessing: Preprocessing
    classifier: CosineClassifier
    classes: tuple[Hashable, ...]
    method: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    class_means: torch.Tensor | None = None
    unknown_reference: UnknownReference | None = None
    outlier_network: Backbone | RegistryNetwork | None = None
    outlier_centre: torch.Tensor | None = None
    raw_class_means: torch.Tensor | None = None
    anyshot_version: str = anyshot.__version__


def _label_type(label: Hashable) -> str:
    for name, kind in LABEL_TYPES.items():
        if type(label) is kind:
            return name
    raise ModelFileError(
        f"class label {label!r} is a {type(label).__name__}; a model file stores labels of "
        f"type {', '.join(LABEL_TYPES)}. Convert the labels (e.g. str(label)) before fitting."
    )


def save_model_file(model: SavedModel, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file + rename; parents created).

    Returns:
        The path written.

    Raises:
        ModelFileError: labels of a type the format cannot store, or metadata that a
            ``weights_only`` load could not read.
    """
    label_types = [_label_type(label) for label in model.classes]
    classifier = model.classifier
    try:
        for value, where in ((model.method, "method"), (model.options, "options")):
            check_plain_data(value, where)
        check_plain_data(model.info, "info")
        backbone = backbone_to_dict(model.network, preprocessing=model.preprocessing)
        outlier_backbone: dict[str, Any] | None = None
        if isinstance(model.outlier_network, RegistryNetwork):
            outlier_backbone = {"registry": asdict(model.outlier_network)}
        elif model.outlier_network is not None:
            outlier_backbone = backbone_to_dict(
                model.outlier_network, preprocessing=model.preprocessing
            )
    except CheckpointError as error:
        raise ModelFileError(f"cannot save the model: {error}") from error
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "anyshot_version": anyshot.__version__,
        "backbone": backbone,
        "classifier": {
            "weight": classifier.weight.detach().cpu().clone(),
            "bias": classifier.bias.detach().cpu().clone(),
            "temperature": float(classifier.temperature),
            "relu": bool(classifier.relu),
            "center": None if classifier.center is None else classifier.center.detach().cpu(),
            "normalize_weight": bool(classifier.normalize_weight),
        },
        "classes": list(model.classes),
        "label_types": label_types,
        "method": model.method,
        "options": model.options,
        "info": model.info,
    }
    if model.class_means is not None and model.unknown_reference is not None:
        reference = model.unknown_reference
        payload["outliers"] = {
            "class_means": model.class_means.detach().cpu().float().clone(),
            "distances": reference.distances.detach().cpu().float().clone(),
            "weights": reference.weights.detach().cpu().float().clone(),
            "conformal": bool(reference.conformal),
            "one_shot_quantile": float(reference.one_shot_quantile),
            "centre": None
            if model.outlier_centre is None
            else model.outlier_centre.detach().cpu().float().clone(),
            "raw_class_means": None
            if model.raw_class_means is None
            else model.raw_class_means.detach().cpu().float().clone(),
        }
    if outlier_backbone is not None:
        payload["outlier_backbone"] = outlier_backbone
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_model_file(path: str | os.PathLike[str]) -> SavedModel:
    """Read a model written by :func:`save_model_file` (on the CPU, ``weights_only``).

    Raises:
        ModelFileError: missing, unreadable, corrupt or truncated file; a file that is not an
            anyshot model (an anyshot backbone checkpoint included: the message says to use it
            as a backbone); a newer format version.
    """
    name = os.fspath(path)
    data = _read(name)
    _check_format(data, name)
    try:
        network, _ = backbone_from_dict(data["backbone"], name)
    except CheckpointError as error:
        raise ModelFileError(f"model file {name!r}: its backbone is unusable: {error}") from error
    network.eval()
    preprocessing = network.preprocessing
    outlier_network = _outlier_network(data.get("outlier_backbone"), name)
    classifier = _classifier(data["classifier"], name)
    classes = _classes(data["classes"], data["label_types"], name)
    if classifier.weight.shape[0] != len(classes):
        raise ModelFileError(
            f"model file {name!r} is inconsistent: {classifier.weight.shape[0]} classifier rows "
            f"but {len(classes)} class names. Re-create it with `anyshot fit`."
        )
    method = data["method"]
    if not isinstance(method, Mapping) or not isinstance(method.get("name"), str):
        raise ModelFileError(f"model file {name!r} has no valid method description.")
    return SavedModel(
        network=network,
        preprocessing=preprocessing,
        classifier=classifier,
        classes=classes,
        method={"name": method["name"], "settings": dict(method.get("settings") or {})},
        options=dict(data.get("options") or {}),
        info=dict(data.get("info") or {}),
        **_outliers(data.get("outliers"), classifier.weight.shape, name),
        outlier_network=outlier_network,
        anyshot_version=str(data.get("anyshot_version")),
    )


def _outlier_network(data: Any, name: str) -> Backbone | RegistryNetwork | None:
    """A file's ``"outlier_backbone"`` entry: ``None``, a stored network (eval mode), or a
    :class:`RegistryNetwork`."""
    if data is None:
        return None
    if isinstance(data, Mapping) and "registry" in data:
        try:
            record = dict(data["registry"])
            named = RegistryNetwork(
                str(record["name"]), record["image_size"], int(record["seed"]), record["digest"]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(
                f"model file {name!r} has a corrupt outlier backbone entry: {error}"
            ) from error
        size = named.image_size
        if not isinstance(named.digest, str) or not (size is None or isinstance(size, int)):
            raise ModelFileError(f"model file {name!r} has a corrupt outlier backbone entry")
        if named.name not in BACKBONES:
            raise ModelFileError(
                f"model file {name!r} names an outlier backbone {named.name!r} this anyshot "
                f"does not have (known: {', '.join(BACKBONES)}). Upgrade anyshot or fit again."
            )
        return named
    try:
        network, _ = backbone_from_dict(data, name)
    except CheckpointError as error:
        raise ModelFileError(
            f"model file {name!r}: its outlier backbone is unusable: {error}"
        ) from error
    return network.eval()


def _outliers(data: Any, weight_shape: torch.Size, name: str) -> dict[str, Any]:
    """``class_means``, ``unknown_reference``, ``outlier_centre`` and ``raw_class_means`` of a
    file's ``"outliers"`` entry (``None``s when the file has none)."""
    if data is None:
        return dict.fromkeys(
            ("class_means", "unknown_reference", "outlier_centre", "raw_class_means")
        )
    try:
        means, distances, weights = data["class_means"], data["distances"], data["weights"]
        conformal = data["conformal"]
        level = data.get("one_shot_quantile", ONE_SHOT_QUANTILE)  # absent: written before
        centre, raw = data.get("centre"), data.get("raw_class_means")
        valid = (
            all(isinstance(t, torch.Tensor) for t in (means, distances, weights))
            and means.shape == weight_shape
            and (
                centre is None
                or (isinstance(centre, torch.Tensor) and centre.shape == means.shape[1:])
            )
            and (raw is None or (isinstance(raw, torch.Tensor) and raw.shape == means.shape))
            and isinstance(level, float)
            and 0.0 < level <= 1.0
            and distances.dim() == 1
            and distances.shape == weights.shape
            and len(distances) > 0
            and isinstance(conformal, bool)
        )
    except (KeyError, TypeError) as error:
        raise ModelFileError(f"model file {name!r} has a corrupt outlier entry: {error}") from error
    if not valid:
        raise ModelFileError(
            f"model file {name!r} has an inconsistent outlier entry. Re-create it with "
            "`anyshot fit`."
        )
    return {
        "class_means": means.float(),
        "unknown_reference": UnknownReference(distances.float(), weights.float(), conformal, level),
        "outlier_centre": None if centre is None else centre.float(),
        "raw_class_means": None if raw is None or centre is None else raw.float(),
    }


# --- helpers ------------------------------------------------------------------------------
def _read(name: str) -> Any:
    remedy = "Create a model with `anyshot fit` or FewShotClassifier.save()."
    path = torch_file(name, ModelFileError, "model", "an anyshot model file", remedy)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for bad files
        first = str(error).splitlines()[0] if str(error) else ""
        if "weights only load failed" in str(error).lower():
            raise ModelFileError(
                f"{name!r} holds Python objects beyond tensors and plain data, so it is not an "
                "anyshot model file (those load with weights_only=True)."
            ) from error
        raise ModelFileError(
            f"cannot read model file {name!r}: not a torch file, or corrupt/truncated "
            f"({type(error).__name__}: {first}). Re-create it with `anyshot fit`."
        ) from error


def _check_format(data: Any, name: str) -> None:
    if not isinstance(data, Mapping):
        raise ModelFileError(
            f"{name!r} is not an anyshot model file (it holds a {type(data).__name__}); "
            "create one with `anyshot fit` or FewShotClassifier.save()."
        )
    if data.get("format") == BACKBONE_FORMAT:
        raise ModelFileError(
            f"{name!r} is an anyshot backbone checkpoint, not a fitted model: it has no "
            "classifier or class names. Use it as the backbone instead: `anyshot classify "
            f"--backbone {name} ...` or `anyshot fit --backbone {name} ...` "
            "(FewShotClassifier(backbone=path) in Python)."
        )
    if data.get("format") != FORMAT:
        raise ModelFileError(
            f"{name!r} is not an anyshot model file (no 'format': {FORMAT!r} entry; keys "
            f"{list(data)[:5]}); create one with `anyshot fit` or FewShotClassifier.save()."
        )
    version = data.get("format_version")
    if type(version) is not int:
        raise ModelFileError(f"model file {name!r} has no valid format_version.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"model file {name!r} has format version {version}, written by anyshot "
            f"{data.get('anyshot_version')}; this anyshot ({anyshot.__version__}) reads versions "
            f"up to {FORMAT_VERSION}. Upgrade anyshot (pip install -U anyshot)."
        )
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ModelFileError(f"model file {name!r} is incomplete: missing {missing}.")


def _classifier(data: Any, name: str) -> CosineClassifier:
    if not isinstance(data, Mapping):
        raise ModelFileError(f"model file {name!r}: 'classifier' is not a dict.")
    weight, bias = data.get("weight"), data.get("bias")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ModelFileError(f"model file {name!r}: the classifier weight is not a [K, D] tensor.")
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (weight.shape[0],):
        raise ModelFileError(f"model file {name!r}: the classifier bias is not a [K] tensor.")
    center = data.get("center")  # absent in files of earlier versions: no centring
    if center is not None and (
        not isinstance(center, torch.Tensor) or tuple(center.shape) != (weight.shape[1],)
    ):
        raise ModelFileError(f"model file {name!r}: the classifier center is not a [D] tensor.")
    try:
        classifier = CosineClassifier(
            weight,
            temperature=float(data["temperature"]),
            relu=bool(data["relu"]),
            center=center,
            normalize_weight=bool(data.get("normalize_weight", False)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"model file {name!r}: bad classifier settings ({error}).") from error
    with torch.no_grad():
        classifier.bias.copy_(bias)
    return classifier.eval()


def _classes(classes: Any, label_types: Any, name: str) -> tuple[Hashable, ...]:
    if (
        not isinstance(classes, list | tuple)
        or not isinstance(label_types, list | tuple)
        or len(classes) != len(label_types)
    ):
        raise ModelFileError(f"model file {name!r}: 'classes' and 'label_types' do not match.")
    for label, kind in zip(classes, label_types, strict=True):
        if kind not in LABEL_TYPES or type(label) is not LABEL_TYPES[kind]:
            raise ModelFileError(
                f"model file {name!r}: class {label!r} is stored as {kind!r}; the file is corrupt."
            )
    if len(set(classes)) != len(classes):
        raise ModelFileError(f"model file {name!r}: class names repeat; the file is corrupt.")
    return tuple(classes)
