"""The method registry: command-line name <-> method class, read by the CLI, model files,
reports and benchmarks."""

from __future__ import annotations

import dataclasses
from typing import Any

from anyshot.errors import ConfigurationError
from anyshot.methods.finetune import FineTuning, TransductiveFineTuning
from anyshot.methods.presets import Method
from anyshot.methods.support_init import SupportBasedInit

__all__ = ["METHODS", "build_method", "method_from_dict", "method_name", "method_to_dict"]

#: Name -> class. ``transductive`` differs from ``finetune`` only in its default query entropy
#: weight (1, the paper's lambda).
METHODS: dict[str, type[SupportBasedInit] | type[FineTuning]] = {
    "support-init": SupportBasedInit,
    "finetune": FineTuning,
    "transductive": TransductiveFineTuning,
}


def method_name(method: Method) -> str:
    """The registry name of ``method``'s class (``"transductive"``, ...)."""
    for name, cls in METHODS.items():
        if type(method) is cls:
            return name
    raise ConfigurationError(f"{type(method).__name__} is not a registered method")


def build_method(name: str, **options: Any) -> Method:
    """Build a method by its registry name, with keyword options of its dataclass.

    Options that are ``None`` are dropped (so the method's defaults apply).

    Raises:
        ConfigurationError: an unknown name, or options the method does not take.
    """
    if name not in METHODS:
        raise ConfigurationError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    cls = METHODS[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigurationError(f"method {name!r} does not take option(s) {unknown}")
    return cls(**given)


def method_to_dict(method: Method) -> dict[str, Any]:
    """``{"name": "transductive", "settings": {...dataclass fields...}}`` (plain data)."""
    return {"name": method_name(method), "settings": dataclasses.asdict(method)}


def method_from_dict(data: dict[str, Any]) -> Method:
    """Inverse of :func:`method_to_dict` (settings the class no longer has are ignored; a
    scope-``all`` method saved before ``norm_statistics`` existed was trained with
    ``"batch"``, and says so).

    Raises:
        ConfigurationError: an unknown method name.
    """
    name = data.get("name")
    if name not in METHODS:
        raise ConfigurationError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    fields = {f.name for f in dataclasses.fields(METHODS[name])}
    stored = dict(data.get("settings") or {})
    settings = {k: v for k, v in stored.items() if k in fields}
    if settings.get("scope") == "all" and "norm_statistics" not in stored:
        settings["norm_statistics"] = "batch"  # saved before the setting: training mode
    return build_method(name, **settings)
