"""How many torch threads to use when the user does not say: the cores nobody else is using.

On a shared machine torch's default (one thread per core) collapses when the other cores are
busy: every parallel region waits for its slowest thread, which waits for the CPU. On a loaded
2-core machine ``anyshot evaluate`` ran 35 s/episode with the default against 1.9 s with
``--threads 1``. :func:`free_cores` counts the cores this process may run on
(``os.sched_getaffinity``) less the 1-minute load average (the runnable processes already
there), at least 1; :func:`default_threads` is what the commands use without ``--threads`` (for
the embedding convolutions), and :func:`torch_threads` runs the small-tensor head training of
:class:`~anyshot.classifier.FewShotClassifier` on one thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["available_cores", "default_threads", "free_cores", "torch_threads"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is
    unknown), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def free_cores(load: float | None = None, cores: int | None = None) -> int:
    """Cores not taken by other work: ``cores - load`` rounded to the nearest integer, in
    ``[1, cores]``.

    Args:
        load: runnable processes (default: the 1-minute load average, 0 where unknown).
        cores: default :func:`available_cores`.
    """
    total = available_cores() if cores is None else max(1, int(cores))
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(total, int(total - load + 0.5)))


def default_threads(world_size: int = 1) -> int:
    """Torch threads per process for ``world_size`` processes: the free cores shared out,
    at least 1."""
    return max(1, free_cores() // max(1, world_size))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads (at most the current count), then restore.

    For small-tensor work (a cosine head on ``[N, D]`` features): threads cost more to wake
    than they save there, and on a busy machine they wait for the CPU.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(count, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
