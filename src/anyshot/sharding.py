"""Run one job over several processes (``torch.distributed``, gloo on the CPU), one shard each.

:func:`launch` runs ``job(args, shard)`` in every process and returns rank 0's return value:

* under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) it joins the job's process group
  (``env://``) and runs the job in this process, which is one rank of the world;
* with ``workers == 1`` it runs the job here with a single-process :class:`Shard`;
* otherwise it spawns ``workers`` processes (:mod:`torch.multiprocessing`, ``spawn``) that
  rendezvous on a free localhost port.

Each process uses ``threads`` torch threads, default the free cores (CPUs less the load average,
:func:`anyshot.threads.default_threads`) shared out, at least 1.
The job splits its work with :meth:`Shard.indices` (item ``i`` goes to rank ``i % world_size``)
and merges results with :meth:`Shard.all_gather`; only the rank with :attr:`Shard.is_main`
should print or write files.

A job that raises in a spawned worker stops the others; the exception is re-raised here (its
own type when it can be pickled). Ctrl-C reaches every worker (same terminal process group);
the parent then waits for them, so a job that catches ``KeyboardInterrupt`` can still gather
and save what it finished (and return a value that says so); one that does not makes
:func:`launch` raise ``KeyboardInterrupt``.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

from anyshot.errors import ConfigurationError
from anyshot.threads import available_cores, default_threads

__all__ = ["Shard", "cpu_count", "free_port", "launch", "torchrun_world"]

T = TypeVar("T")

#: How long a collective waits for the other ranks before failing.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Shard:
    """This process's place in the world: ``rank`` of ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that prints and writes)."""
        return self.rank == 0

    def indices(self, count: int) -> list[int]:
        """This rank's share of ``range(count)``: ``rank, rank + world_size, ...``."""
        return list(range(self.rank, count, self.world_size))

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        """Wait until every rank is here (nothing in a single process)."""
        if self.world_size > 1:
            dist.barrier()


def cpu_count() -> int:
    """CPUs this process may run on (:func:`anyshot.threads.available_cores`)."""
    return available_cores()


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_world() -> tuple[int, int] | None:
    """``(rank, world_size)`` from ``torchrun``'s environment, or ``None`` outside one."""
    world = os.environ.get("WORLD_SIZE")
    rank = os.environ.get("RANK")
    if world is None or rank is None or int(world) <= 1:
        return None
    return int(rank), int(world)


def _threads(threads: int | None, world_size: int) -> int:
    return threads if threads else default_threads(world_size)


def _run_in_torchrun(
    job: Callable[[Any, Shard], T], args: Any, shard: Shard, threads: int | None
) -> T:
    torch.set_num_threads(_threads(threads, shard.world_size))
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(
            "gloo",
            init_method="env://",
            rank=shard.rank,
            world_size=shard.world_size,
            timeout=TIMEOUT,
        )
    try:
        return job(args, shard)
    finally:
        if created:
            dist.destroy_process_group()


def _spawned(
    rank: int,
    job: Callable[[Any, Shard], Any],
    args: Any,
    world_size: int,
    threads: int | None,
    port: int,
    report: Any,
) -> None:
    """Body of a spawned worker: run the job, report rank 0's value or any rank's error.

    An error is reported before the process group is torn down, so the root cause is in the
    queue before the other ranks' "connection closed" errors.
    """
    shard = Shard(rank, world_size)
    torch.set_num_threads(_threads(threads, world_size))
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world_size,
        timeout=TIMEOUT,
    )
    try:
        value = job(args, shard)
    except KeyboardInterrupt:
        report.put(("interrupted", rank, None))
        return
    except BaseException as error:  # handed to the parent, which re-raises it
        try:
            report.put(("error", rank, error))
        except Exception:  # an unpicklable exception: send its text
            report.put(("error", rank, RuntimeError(f"{type(error).__name__}: {error}")))
        raise SystemExit(1) from None  # a non-zero exit makes spawn stop the other workers
    finally:
        dist.destroy_process_group()
    if rank == 0:
        report.put(("value", rank, value))


def launch(
    job: Callable[[Any, Shard], T],
    args: Any,
    *,
    workers: int = 1,
    threads: int | None = None,
) -> T:
    """Run ``job(args, shard)`` on every rank (see the module doc); return rank 0's value.

    Under ``torchrun`` every process is one rank and gets its own rank's value.

    Args:
        job: a module-level function (it is pickled by reference for spawned workers); its
            value on rank 0 must be picklable.
        args: its first argument (picklable).
        workers: processes to spawn; ignored under ``torchrun`` unless it contradicts
            ``WORLD_SIZE``.
        threads: torch threads per process; default ``max(1, free cores // world_size)``.

    Raises:
        ConfigurationError: ``workers`` below 1, or a ``workers`` > 1 that differs from
            ``torchrun``'s world size.
        KeyboardInterrupt: spawned workers were interrupted before rank 0 returned.
    """
    if workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {workers}")
    world = torchrun_world()
    if world is not None:
        rank, world_size = world
        if workers > 1 and workers != world_size:
            raise ConfigurationError(
                f"--workers {workers} contradicts torchrun's {world_size} processes; under "
                "torchrun leave --workers out (torchrun's --nproc-per-node sets it)"
            )
        return _run_in_torchrun(job, args, Shard(rank, world_size), threads)
    if workers == 1:
        return job(args, Shard())
    context = mp.get_context("spawn")
    report = context.SimpleQueue()
    interrupted = False
    spawn_args = (job, args, workers, threads, free_port(), report)
    process_context = mp.start_processes(
        _spawned, args=spawn_args, nprocs=workers, join=False, start_method="spawn"
    )
    failure: BaseException | None = None
    while True:
        try:
            if process_context.join():
                break
        except KeyboardInterrupt:
            interrupted = True  # the workers got the signal too: let them save and finish
        except ProcessException as error:
            failure = error
            break
    values: dict[int, Any] = {}
    errors: list[tuple[int, BaseException]] = []
    while not report.empty():
        kind, rank, value = report.get()
        if kind == "error":
            errors.append((rank, value))
        elif kind == "interrupted":
            interrupted = True
        else:
            values[rank] = value
    if errors:
        raise errors[0][1]  # the first reported: the root cause (see _spawned)
    if failure is not None:
        raise RuntimeError(f"a worker failed: {failure}") from failure
    if 0 not in values:
        if interrupted:
            raise KeyboardInterrupt
        raise RuntimeError("the workers ended without rank 0's result")
    return values[0]
