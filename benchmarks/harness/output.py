"""Results files: atomic JSON writing and the environment a result was measured in.

Standard library and torch only (``easyfsl_methods.py`` runs without anyshot).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["EnvironmentKey", "cell_table", "environment", "peak_rss_mb", "write_json"]

EnvironmentKey = Literal[
    "torch", "torch_threads", "OMP_NUM_THREADS", "machine", "python", "cpu_count", "cpu_capability"
]

_FACTS: dict[str, Callable[[], Any]] = {
    "torch": lambda: torch.__version__,
    "torch_threads": torch.get_num_threads,
    "OMP_NUM_THREADS": lambda: os.environ.get("OMP_NUM_THREADS"),
    "machine": lambda: platform.processor() or platform.machine(),
    "python": platform.python_version,
    "cpu_count": os.cpu_count,
    "cpu_capability": lambda: torch.backends.cpu.get_cpu_capability(),
}


def environment(*keys: EnvironmentKey) -> dict[str, Any]:
    """The named facts about this process, in the order asked (each results file keeps the keys
    it always had)."""
    return {key: _FACTS[key]() for key in keys}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(
    path: str | os.PathLike[str], record: Any, *, compact: bool = False, allow_nan: bool = False
) -> Path:
    """Write ``record`` as JSON, atomically: a temporary file in the same folder (made if
    needed), then a rename, so an interrupted run never leaves half a file.

    Indented, or on one line without spaces when ``compact``. NaN and infinity are refused
    unless ``allow_nan`` (they are not valid JSON).
    """
    if compact:
        text = json.dumps(record, separators=(",", ":"), allow_nan=allow_nan)
    else:
        text = json.dumps(record, indent=2, allow_nan=allow_nan)
    text += "\n"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.fchmod(handle, 0o666 & ~mask)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def cell_table(
    results: dict[str, dict[str, dict[str, Any]]],
    note: str,
    entry: Callable[[str, dict[str, Any]], str],
) -> list[str]:
    """Markdown lines of a cells x methods table: ``note``, then one row per cell of
    ``results`` (``{cell: {method: summary}}``, each summary with ``"episodes"``): the cell, its
    episodes (the first method's) and ``entry(method, summary)`` per method (``-`` where a
    method did not run), the methods in order of first appearance."""
    names = list(dict.fromkeys(n for row in results.values() for n in row))
    lines = [note, "", "| cell | n | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for cell, row in results.items():
        entries = [entry(name, row[name]) if name in row else "-" for name in names]
        n = next(iter(row.values()))["episodes"]
        lines.append(f"| {cell} | {n} | " + " | ".join(entries) + " |")
    return lines
