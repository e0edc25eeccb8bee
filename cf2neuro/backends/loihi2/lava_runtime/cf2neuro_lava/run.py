"""Run a built network: compile once, stream every sample through ONE run(), read back.

    results, stats = run_graph(graph, x, probes, guard)

``results`` maps "output" (and other outputs, and probe names) to int64
arrays [T, B, ...] aligned with the input steps, "v:NAME" to the membrane
after each sample's last step [B, ...], and "latency" to the pipeline
latency the run removed. ``stats`` holds wall times (compile, start, run,
read) and counts.

Lava's weak spots and what `Guard` does about them (all in this process,
which the client starts in a session of its own and kills on a timeout):

- An exception inside a process model deadlocks ``run()`` (the model
  reports an error, then waits forever in ``join()``; nothing is printed).
  The guard wraps every command handler of ``PyLoihiProcessModel``: the
  first failure prints the traceback to stderr and writes a one-line
  summary into a pipe; a watcher thread in the main process reads it,
  kills every descendant process, unlinks the run's shared memory and
  exits with status 3.
- A network never stopped keeps the interpreter alive: ``stop()`` runs in
  a ``finally``, under a deadline (a hung stop is treated as a failure).
- Killed runs leak POSIX shared memory (/dev/shm): the guard records the
  name of every segment Lava's SharedMemoryManager creates (in memory and,
  line by line, in a log file the client reads), so whoever ends the run
  unlinks what is left.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

EXIT_MODEL_FAILED = 3


# --- processes and shared memory ---------------------------------------------

def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs (macOS): only the direct children Python knows of
        import multiprocessing
        return [p.pid for p in multiprocessing.active_children()]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def unlink_segments(names) -> list[str]:
    """Unlink POSIX shared-memory segments by name; returns those that were still there."""
    removed = []
    for name in names:
        path = Path("/dev/shm") / name.lstrip("/")
        try:
            path.unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
        except OSError as e:
            print(f"cf2neuro_lava: could not unlink {path}: {e}", file=sys.stderr)
    return removed


class Guard:
    """Failure watcher, shared-memory log and emergency exit; see the module docstring."""

    def __init__(self, shm_log: str | os.PathLike | None = None):
        self.shm_log = Path(shm_log) if shm_log else None
        self.segments: list[str] = []
        self.main_pid = os.getpid()
        self._read_fd, self._write_fd = os.pipe()
        self._installed = False
        self._ending = threading.Lock()

    # shared memory
    def _record_segment(self, name: str) -> None:
        self.segments.append(name)
        if self.shm_log is not None:
            with open(self.shm_log, "a") as f:
                f.write(name + "\n")

    def install(self) -> "Guard":
        """Patch Lava (in this process and the processes it forks) and start the watcher."""
        if self._installed:
            return self
        from lava.magma.core.model.py.model import AbstractPyProcessModel, PyLoihiProcessModel
        from lava.magma.runtime.message_infrastructure import shared_memory_manager as smm

        guard = self
        create = smm.SharedMemoryManager.create_shared_memory

        def create_shared_memory(self, size):
            handle = create(self, size)
            guard._record_segment(handle.name)
            return handle

        smm.SharedMemoryManager.create_shared_memory = create_shared_memory

        def wrap(cls, method_name):
            method = getattr(cls, method_name)

            def handler(self, *args, **kwargs):
                try:
                    return method(self, *args, **kwargs)
                except BaseException as e:
                    guard.report_model_failure(self, e)
                    raise
            handler.__name__ = method_name
            setattr(cls, method_name, handler)

        for name in ("_spike", "_pre_mgmt", "_lrn", "_post_mgmt", "_host"):
            wrap(PyLoihiProcessModel, name)
        for name in ("_get_var", "_set_var"):
            wrap(AbstractPyProcessModel, name)
        threading.Thread(target=self._watch, name="cf2neuro-lava-watch", daemon=True).start()
        self._installed = True
        return self

    # failures inside process models (run in the forked model processes)
    def report_model_failure(self, model, exc: BaseException) -> None:
        params = getattr(model, "proc_params", None)
        proc = params.get("name") if params is not None else None
        step = getattr(model, "time_step", "?")
        summary = (f"Lava process model {type(model).__name__} of process "
                   f"{proc or '(unnamed)'} failed at step {step}: "
                   f"{type(exc).__name__}: {exc}").replace("\n", " ")
        sys.stderr.write(f"cf2neuro_lava: {summary}\n{traceback.format_exc()}")
        sys.stderr.flush()
        try:
            os.write(self._write_fd, (summary[:3000] + "\n").encode())
        except OSError:
            pass

    def _watch(self) -> None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(self._read_fd, 4096)
            if not chunk:
                return
            data += chunk
        self.emergency_exit(data.decode(errors="replace").strip(), EXIT_MODEL_FAILED)

    def emergency_exit(self, message: str, code: int) -> None:
        """Kill every descendant, unlink the run's shared memory, exit with `code`."""
        if os.getpid() != self.main_pid or not self._ending.acquire(blocking=False):
            return
        for pid in reversed(descendants(self.main_pid)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        unlink_segments(self.segments)
        sys.stderr.write(f"cf2neuro_lava: error: {message}\n")
        sys.stderr.flush()
        os._exit(code)

    def deadline(self, seconds: float, what: str):
        """A timer that ends the run (status 3) unless cancelled within `seconds`."""
        timer = threading.Timer(seconds, self.emergency_exit,
                                args=(f"{what} did not finish within {seconds:g} s",
                                      EXIT_MODEL_FAILED))
        timer.daemon = True
        timer.start()
        return timer


# --- running -----------------------------------------------------------------

def _recorded(key: str, path, value, count: int, net) -> np.ndarray:
    """A Recorder's file -> [T, B, *shape] aligned with the input ([B, *shape] for v:)."""
    try:
        data = np.load(path)
    except OSError as e:
        raise RuntimeError(f"the recorder of {key!r} wrote no data ({e})") from None
    a = value.to_ir(data[:count], lead=1).astype(np.int64)
    if key.startswith("v:"):
        return a
    a = a.reshape(net.samples, net.timesteps, *value.shape).swapaxes(0, 1)
    return a if value.offset is None else a + value.offset


def run_graph(graph, x: np.ndarray, probes=(), guard: Guard | None = None,
              stop_timeout: float = 60.0, record_dir=None, progress=None,
              chunks: int = 1) -> tuple[dict, dict]:
    """Build, compile once, run all samples, read back; stop() in a finally.

    The recorders write into `record_dir` (default: a temporary directory,
    removed afterwards). With ``chunks > 1`` the run is cut into that many
    blocking ``run()`` calls on the same runtime (Lava resumes where it
    paused: same state, same step counter) and `progress` (a path) gets a
    line ``done total`` after each, for the caller's progress bar.
    """
    import shutil
    import tempfile

    tmp = None
    if record_dir is None:
        record_dir = tmp = tempfile.mkdtemp(prefix="cf2neuro-lava-rec-")
    try:
        return _run_graph(graph, x, probes, guard, stop_timeout, record_dir, progress,
                          max(int(chunks), 1))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _report_progress(path, done: int, total: int) -> None:
    if path is not None:
        with open(path, "a") as f:
            f.write(f"{done} {total}\n")


def _run_graph(graph, x, probes, guard, stop_timeout, record_dir, progress, chunks):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    from .build import build

    stats: dict = {}
    t0 = time.perf_counter()
    net = build(graph, x, probes, record_dir)
    stats.update(build_s=time.perf_counter() - t0, steps=net.steps, samples=net.samples,
                 timesteps=net.timesteps, latency=net.latency, processes=_count(net),
                 conv_calls_per_step=int(net.cost.get("conv_calls", 0)),
                 sparse_synapses=int(net.cost.get("sparse_synapses", 0)))
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    anchor = net.source
    results: dict = {}
    started = False
    try:
        t = time.perf_counter()
        exe = anchor.compile(cfg)
        stats["compile_s"] = time.perf_counter() - t
        t = time.perf_counter()
        started = True
        anchor.create_runtime(executable=exe)
        stats["start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        done = 0
        _report_progress(progress, done, net.steps)
        for k in range(min(chunks, net.steps)):
            n = (net.steps * (k + 1)) // min(chunks, net.steps) - done
            anchor.run(condition=RunSteps(num_steps=n))
            done += n
            _report_progress(progress, done, net.steps)
        stats["run_s"] = time.perf_counter() - t
        stats["run_calls"] = min(chunks, net.steps)
        t = time.perf_counter()
        for key, (path, value, count) in net.records.items():
            results[key] = _recorded(key, path, value, count, net)
        for key, (reader, value, skip) in net.reads.items():  # Var.get: element by element
            data = np.moveaxis(reader.data.get(), -1, 0)[skip:skip + net.samples]
            results[key] = np.rint(value.to_ir(data, lead=1)).astype(np.int64)
        stats["read_s"] = time.perf_counter() - t
    finally:
        if started:
            t = time.perf_counter()
            timer = guard.deadline(stop_timeout, "Lava's stop()") if guard else None
            try:
                anchor.stop()
            finally:
                if timer is not None:
                    timer.cancel()
            stats["stop_s"] = time.perf_counter() - t
    results["latency"] = np.int64(net.latency)
    stats["total_s"] = time.perf_counter() - t0
    stats["per_step_ms"] = 1e3 * stats["run_s"] / max(net.steps, 1)
    return results, stats


def _count(net) -> int:
    return 1 + len(net.processes) + len(net.records) + len(net.reads)
