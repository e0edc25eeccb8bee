"""Sharded runner runs: the test samples split over N runtimes and torchrun ranks (issue 12).

    parts = split(n_samples, workers)                 # contiguous slices
    arrays = run_sharded(lambda s: run(x[:, s]), n_samples, workers)
    arrays = gather(arrays)                           # torchrun: rank 0 gets all, else None

A runner's result is a dict of arrays: ``[T, B, ...]`` outputs and spike
probes (samples on axis 1), ``v:NAME`` membranes (``[B, ...]`` final states,
or ``[T, B, ...]`` traces) and the scalar ``latency``; `merge` joins shards
along the sample axis, so a sharded run gives exactly the arrays of one run.

Workers are threads that each wait on a runtime of their own (a Lava run is
a subprocess in a session of its own; onnxruntime releases the GIL). When one
shard fails, the others are stopped: no new shard starts, and every Lava
runtime this process started (a child leading its own session) is killed,
which makes its run end through its own cleanup (processes killed, shared
memory unlinked). The first failure is raised, naming the shard.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable

import numpy as np

from .errors import Cf2NeuroError, ConfigError
from .processes import proc_stats


def check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"--workers must be a whole number >= 1, got {workers!r}; e.g. "
                          f"--workers 4 runs four runtimes side by side")
    return workers


def split(n: int, parts: int) -> list[slice]:
    """`n` samples as up to `parts` contiguous, non-empty slices of near-equal size."""
    parts = max(1, min(parts, n))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def merge(shards: list[dict], final_membranes: bool = False) -> dict:
    """Shard results (in sample order) -> one result: concatenated along the sample axis.

    `final_membranes`: the runner's "v:NAME" are final states [B, ...] (Lava),
    not traces [T, B, ...].
    """
    if len(shards) == 1:
        return shards[0]
    out = {}
    for key in shards[0]:
        parts = [np.asarray(s[key]) for s in shards]
        if parts[0].ndim == 0:  # latency: the same graph gives the same on every shard
            if any(p != parts[0] for p in parts):
                raise RuntimeError(f"shards disagree on {key!r}: {[p.item() for p in parts]}")
            out[key] = parts[0]
        else:  # "v:" final states are [B, ...]; everything else is [T, B, ...]
            final = final_membranes and key.startswith("v:")
            out[key] = np.concatenate(parts, axis=0 if final else 1)
    return out


def run_sharded(run: Callable[[slice], dict], n: int, workers: int,
                final_membranes: bool = False) -> dict:
    """run(samples) on each shard of `n` samples, `workers` at a time; merged results.

    A failing shard stops the others (see the module doc) and its error is
    raised, of its own type, prefixed with the shard it came from.
    """
    parts = split(n, check_workers(workers))
    if len(parts) == 1:
        return run(parts[0])
    stop = threading.Event()

    def one(part: slice) -> dict:
        if stop.is_set():
            raise _Cancelled()
        return run(part)

    with ThreadPoolExecutor(len(parts), thread_name_prefix="cf2neuro-shard") as pool:
        futures = [pool.submit(one, p) for p in parts]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        # the shard that failed first, before the others are stopped (and fail for that)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            stop.set()
            while pending:  # a runtime may start after a kill: kill until all shards ended
                _stop_runtimes()
                done, pending = wait(pending, timeout=0.2)
    if failed:
        k = futures.index(failed[0])
        raise _named(failed[0].exception(), k, len(parts), parts[k])
    return merge([f.result() for f in futures], final_membranes)


class _Cancelled(Exception):
    """A shard that never started because another failed."""


def _named(error: BaseException, k: int, count: int, part: slice) -> BaseException:
    """The shard's error, of its own type when it takes a message, naming the shard."""
    what = (f"shard {k + 1} of {count} (samples {part.start}..{part.stop - 1}) failed, the "
            f"other shards were stopped: {error}")
    try:
        named = type(error)(what)
    except Exception:  # an exception type that needs other arguments: keep it as is
        return error
    named.__cause__ = error
    return named


def _stop_runtimes() -> None:
    """SIGKILL the process group of every child that leads its own session (a Lava runtime)."""
    me = os.getpid()
    for pid, fields in proc_stats():  # no procfs: the shards end by their own watchdogs
        ppid, session = int(fields[1]), int(fields[3])
        if ppid == me and session == pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# --- torchrun ---------------------------------------------------------------------

def rank_world() -> tuple[int, int]:
    """(rank, world size) under torchrun (RANK/WORLD_SIZE set), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return (int(os.environ.get("RANK", "0") or 0), world) if world > 1 else (0, 1)


def init_distributed() -> bool:
    """Join torchrun's process group (gloo: CPU, any machine); True when this call created it."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    dist.init_process_group("gloo")
    return True


def run_ranks(run: Callable[[slice], dict], n: int, workers: int,
              final_membranes: bool = False) -> dict | None:
    """This rank's shard of `n` samples (split further over `workers`), gathered on rank 0.

    Rank 0 returns the merged result of all ranks; the others return None.
    A failing rank's error travels to rank 0, which raises it naming the rank
    (the other ranks still finish their shard: gather waits for all of them).
    """
    import torch.distributed as dist

    rank, world = dist.get_rank(), dist.get_world_size()
    parts = split(n, world)
    mine: tuple
    if rank >= len(parts):  # more ranks than samples: nothing to run here
        mine = ("ok", None)
    else:
        part = parts[rank]
        try:
            res = run_sharded(lambda s: run(slice(part.start + s.start, part.start + s.stop)),
                              part.stop - part.start, workers, final_membranes)
            mine = ("ok", res)
        except Cf2NeuroError as e:
            mine = ("error", type(e), f"rank {rank} of {world} (samples {part.start}.."
                                      f"{part.stop - 1}): {e}")
    out = [None] * world if rank == 0 else None
    dist.gather_object(mine, out, dst=0)
    # every rank past the gather before any leaves: a rank that tore down gloo while rank 0
    # still received aborted ("terminate called without an active exception", SIGABRT)
    dist.barrier()
    if rank != 0:
        return None
    for status, *rest in out:
        if status == "error":
            raise rest[0](rest[1])
    return merge([r for _, r in out if r is not None], final_membranes)
