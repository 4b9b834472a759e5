"""Give the memory Python and torch have freed back to the operating system.

glibc's ``malloc`` raises its threshold for serving large blocks from ``mmap`` each time such a
block is freed, so the tens of megabytes of activations of every embedding batch end up in the
heap, where they fragment it and the resident memory grows with the images although nothing is
kept. ``malloc_trim(0)`` after each batch returns the free pages: ``anyshot classify`` on
10,000 query images of 224 px peaked at 1,098 MiB without it and 650 MiB with it
(``benchmarks/classify_many_queries.py``); embedding 3,000 images alone, 633 and 553 MB at the
same images/s (``studies/embedding-speed/heap.py``). Without glibc (macOS, Windows, musl)
:func:`release_free_memory` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["release_free_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return function


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system; whether that could be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
