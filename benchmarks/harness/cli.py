"""The command-line flags the benchmark scripts share, added by one call per script.

Standard library only (``easyfsl_methods.py`` runs without anyshot). Each script still chooses
its own defaults: the committed commands (BENCHMARKS.md) keep working unchanged.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DATA_ROOT",
    "FEATURE_CACHE",
    "OPTIONAL",
    "REQUIRED",
    "add_shared_arguments",
    "config_of",
    "script_parser",
]

#: The datasets' folder, relative to the repository root (where the scripts are run from).
DATA_ROOT = Path("../shared/data")
#: The FeatureCache folder the scripts share by default (kept between runs).
FEATURE_CACHE = Path("/tmp/anyshot-features")


class Need(enum.Enum):
    """A flag without a default: :data:`REQUIRED`, or :data:`OPTIONAL` (``None`` if not given)."""

    REQUIRED = "required"
    OPTIONAL = "optional"


REQUIRED = Need.REQUIRED
OPTIONAL = Need.OPTIONAL

#: flag (as its keyword) -> (type, default help text)
_FLAGS: dict[str, tuple[type, str]] = {
    "data_root": (Path, "dataset folder"),
    "episodes": (int, "episodes per setting"),
    "seed": (int, "seed of the episode draws"),
    "cache_dir": (
        Path,
        "FeatureCache folder (kept; rows are reused while the image files are unchanged)",
    ),
    "threads": (int, "torch threads"),
    "output": (Path, "results JSON file"),
    "results": (Path, "results folder"),
    "image_size": (int, "backbone input size (pixels)"),
    "split": (str, "the classes: val (studies, tuning) or test (the report, once)"),
}


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the script's docstring as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_shared_arguments(
    parser: argparse.ArgumentParser,
    *,
    data_root: Path | Need | None = None,
    episodes: int | Need | None = None,
    seed: int | None = None,
    cache_dir: Path | None = None,
    threads: int | Need | None = None,
    output: Path | Need | None = None,
    results: Path | None = None,
    image_size: int | None = None,
    split: str | None = None,
    helps: Mapping[str, str] | None = None,
) -> None:
    """Add the shared flags a script takes (``--data-root``, ``--episodes``, ...).

    Each keyword is that flag's default, :data:`REQUIRED` or :data:`OPTIONAL` (no default), or
    ``None`` to leave the flag out. ``helps`` replaces default help texts, by keyword.
    ``--split`` takes ``val`` or ``test``.
    """
    wanted: dict[str, object] = {
        "data_root": data_root,
        "episodes": episodes,
        "seed": seed,
        "cache_dir": cache_dir,
        "threads": threads,
        "output": output,
        "results": results,
        "image_size": image_size,
        "split": split,
    }
    texts = dict(helps or {})
    unknown = sorted(set(texts) - set(_FLAGS))
    if unknown:
        raise ValueError(f"help texts for unknown flags {unknown}; known: {sorted(_FLAGS)}")
    for name, value in wanted.items():
        if value is None:
            continue
        kind, text = _FLAGS[name]
        options: dict[str, Any] = {"type": kind, "help": texts.get(name, text)}
        if name == "split":
            options["choices"] = ["val", "test"]
        if value is REQUIRED:
            options["required"] = True
        else:
            options["default"] = None if value is OPTIONAL else value
        parser.add_argument("--" + name.replace("_", "-"), **options)


def config_of(args: argparse.Namespace, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The parsed flags as JSON-ready values (paths as strings), for a results file."""
    return {
        key: str(value) if isinstance(value, Path) else value
        for key, value in vars(args).items()
        if key not in leave_out
    }
