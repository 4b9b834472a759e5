"""Give the memory Python and torch have freed back to the operating system, and reuse the
heap's blocks inside an embedding loop.

glibc's ``malloc`` raises its threshold for serving large blocks from ``mmap`` each time such a
block is freed, so the tens of megabytes of activations of every embedding batch end up in the
heap, where they fragment it and the resident memory grows with the images although nothing is
kept. ``malloc_trim(0)`` after each batch returns the free pages: ``anyshot classify`` on
10,000 query images of 224 px peaked at 1,098 MiB without it and 650 MiB with it
(``benchmarks/classify_many_queries.py``); embedding 3,000 images alone, 633 and 553 MB at the
same images/s (``studies/embedding-speed/heap.py``). Without glibc (macOS, Windows, musl)
:func:`release_free_memory` does nothing.

But memory returned to the system must be faulted in again, page by page, by the next batch:
on 4,000 query images of 84 px embedded at 224 px, 18.0 million minor page faults and 94.9 s.
:func:`reused_heap` serves large blocks from the heap and keeps the freed ones there for the
length of an embedding loop (glibc's ``mallopt`` thresholds raised), so each batch reuses the
previous batch's pages, and returns the free pages once at the end: 0.37 million faults and
64.2 s, peak 707 against 565 MiB (``classify --no-cache``, the same folder, in turn:
``studies/embedding-speed/reused_heap.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Iterator

__all__ = ["release_free_memory", "reused_heap"]

#: glibc's ``mallopt`` parameters, and their defaults' starting values (bytes).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_THRESHOLD = 128 * 1024
#: Blocks up to this size come from the heap inside :func:`reused_heap`.
_REUSED_UP_TO = 1 << 30


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


@functools.cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, or ``None``."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function: Callable[[int, int], int] = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return None
    return function


@contextlib.contextmanager
def reused_heap() -> Iterator[None]:
    """Inside the block, large blocks are served from the heap and freed ones stay there
    (no page faults to get them back); after it, glibc's default starting thresholds are set
    again and the free pages returned (:func:`release_free_memory`). Nothing where there is
    no glibc."""
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, _REUSED_UP_TO)
    mallopt(_M_TRIM_THRESHOLD, _REUSED_UP_TO)
    try:
        yield
    finally:
        mallopt(_M_MMAP_THRESHOLD, _DEFAULT_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, _DEFAULT_THRESHOLD)
        release_free_memory()


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system; whether that could be done."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
