"""The one progress helper: every long loop in anyshot reports through it (to stderr)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar"]

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    enabled: bool = True,
    unit: str = "it",
) -> Any:
    """A tqdm bar on stderr; a silent pass-through when ``enabled`` is false.

    Library code defaults to ``enabled=False``; the CLI turns bars on (and off with ``--quiet``).
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        dynamic_ncols=True,
        leave=False,
    )
