"""The ``lava`` runner: a quantized graph on lava-nc 0.10.0, in the isolated runtime.

    from cf2neuro.backends.loihi2.runner import run_lava, run_nir
    res = run_lava(qgraph, x, probes=["fc1", "v:cf1"])          # a quantized graph
    res = run_nir("model_q.nir", x_int, probes=[...], timeout=300)

Declared as runner ``lava`` by the loihi2 back end (`LavaRunner`, through
`cf2neuro.runners.get_runner`).

What it does (DESIGN §4, docs/fixed_point.md):

1. turns float inputs into the integer payloads the quantized graph expects
   (the emulator's own rule: ``round(x · input_scale)`` clipped to the input
   payload range; integer inputs are used as they are);
2. writes the graph as NIR (with its ``cf2neuro.fixed_point`` metadata) and
   the inputs as ``x`` into an .npz, in a temporary directory;
3. runs ``python -m cf2neuro_lava run`` with the runtime's Python 3.10
   (`runtime.lava_python`, created on first use) in a session of
   its own, under a watchdog timeout;
4. reads back ``output`` and the probes (int64, ``[T, B, ...]``, aligned with
   the input steps), ``v:NAME`` (the membrane after each sample's last step,
   ``[B, ...]``) and ``latency`` (the pipeline steps it removed).

Guards: on a timeout (or Ctrl-C) the whole process group is killed and
every shared-memory segment the run created (the runtime logs their names
as Lava creates them) is unlinked; after success or failure the group is
killed too, in case anything outlived the runtime. The runtime itself ends
a run whose process model raised (Lava would deadlock) with status 3.

Timeout: ``timeout=`` seconds, else ``$CF2NEURO_LAVA_TIMEOUT``, else
`default_timeout` (generous: 120 s + ~10x the step cost measured for this
graph's processes, convolutions, synapses and neurons, per Lava step).

Errors: `RunnerError` / `RunnerTimeoutError` (the run failed or timed out: what, the runtime's
stderr tail, what to do); `cf2neuro.errors.BadInputError` (the runtime
refused the graph or the inputs, exit status 2, with its reason);
`cf2neuro.errors.RuntimeMissingError` (no Python 3.10 / setup failed).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from os import PathLike
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import BadInputError, RunnerError, RunnerTimeoutError
from ...processes import proc_stats
from ...runners.contract import Runner, RunRequest, RunResult

log = logging.getLogger(__name__)

TIMEOUT_ENV = "CF2NEURO_LAVA_TIMEOUT"
START_TIMEOUT_ENV = "CF2NEURO_LAVA_START_TIMEOUT"
START_TIMEOUT = 60.0  # seconds for the runtime to import Lava and read the graph
STOPPED_GRACE = 2.0   # seconds a Lava process may stay stopped (SIGSTOP) before the run is lost
DEFAULT_TARGET = "loihi2"
STDERR_TAIL = 40  # lines of the runtime's stderr quoted in an error


# Lava's cost per step (lava-nc 0.10.0, fixed_pt, 2 cores; benchmarks/lava_cost.py):
# mlp, 9 processes: 3.8-5.5 ms/step (~0.5 ms a process); Lava's Conv: 3.7-6.7 us per
# convolve2d call; Dense/Sparse: 0.5-1.2 ns a synapse. Every convolution counts as
# Lava's Conv, also where the runtime picks Lava's Sparse (cf2neuro_lava/synapses.py,
# 2-15x cheaper): a watchdog must not kill a slow run that is fine.
STEP_PER_PROCESS = 1e-3   # s per Lava process per step (measured ~0.5 ms)
STEP_PER_CONV_CALL = 8e-6  # s per convolve2d call (measured 4-7 us)
STEP_PER_SYNAPSE = 2e-9   # s per Dense weight / Sparse synapse (measured 0.5-1.2 ns)
STEP_PER_NEURON = 1e-7    # s per neuron update (numpy, vectorized)
START_SECONDS = 120.0     # import Lava, build, compile, start and stop the processes
SAFETY = 5.0              # times the (already doubled) estimate: a loaded or slower machine


def default_timeout(steps: int, cost: dict) -> float:
    """Seconds allowed for `steps` Lava steps of a graph whose per-step `cost` is given.

    `cost` is `graph_cost`'s count: Lava ``processes``, ``conv_calls``
    (convolve2d calls a step), ``synapses`` (Dense weights and convolution
    MACs a step) and ``neurons``. The bound is START_SECONDS + SAFETY x
    steps x (1 ms per process + 8 us per conv call + 2 ns per synapse +
    0.1 us per neuron): each term about twice the measured cost, so ~10x.
    """
    per_step = (STEP_PER_PROCESS * cost.get("processes", 10)
                + STEP_PER_CONV_CALL * cost.get("conv_calls", 0)
                + STEP_PER_SYNAPSE * cost.get("synapses", 0)
                + STEP_PER_NEURON * cost.get("neurons", 0))
    return START_SECONDS + SAFETY * max(steps, 0) * per_step


def _timeout(timeout: float | None, steps: int, cost: dict) -> float:
    if timeout is not None:
        value, what = timeout, "timeout"
    elif os.environ.get(TIMEOUT_ENV):
        value, what = os.environ[TIMEOUT_ENV], f"${TIMEOUT_ENV}"
    else:
        return default_timeout(steps, cost)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"{what} must be a number of seconds, got {value!r}") from None
    if not value > 0:
        raise BadInputError(f"{what} must be > 0 seconds, got {value!r}")
    return value


# --- processes -------------------------------------------------------------------

def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`, from /proc."""
    return [pid for pid, f in proc_stats() if int(f[2]) == pgid and f[0] != "Z"]


def _group_fault(pgid: int, root: int, stopped_since: dict) -> str | None:
    """Why the run of group `pgid` cannot finish, seen through its processes, or None.

    Lava's processes wait for each other every step, so one that died (a crash,
    kill -9, the OOM killer: a zombie with a signal or a non-zero status) or that
    stays stopped ends the run: noticed here in a fraction of a second instead
    of by the watchdog. `stopped_since` keeps, between calls, when each was
    first seen stopped.
    """
    now = time.monotonic()
    for pid, fields in proc_stats():
        if int(fields[2]) != pgid:
            continue
        state = fields[0]
        # a dead worker (root's own end proc.wait sees); field 52 of stat is the exit status
        if state == "Z" and len(fields) >= 50 and pid != root:
            status = int(fields[49])
            if status & 0x7F:
                name = signal.Signals(status & 0x7F).name if status & 0x7F < 65 else "?"
                return (f"Lava process {pid} was killed by {name}"
                        f"{' (maybe out of memory)' if name == 'SIGKILL' else ''}")
            if status >> 8:
                return f"Lava process {pid} exited with status {status >> 8}"
        elif state in ("T", "t"):
            first = stopped_since.setdefault(pid, now)
            if now - first >= STOPPED_GRACE:
                return f"Lava process {pid} is stopped (SIGSTOP) and the others wait for it"
        else:
            stopped_since.pop(pid, None)
    return None


def _start_timeout() -> float:
    raw = os.environ.get(START_TIMEOUT_ENV)
    try:
        value = float(raw) if raw else START_TIMEOUT
    except ValueError:
        raise BadInputError(f"${START_TIMEOUT_ENV} must be a number of seconds, got "
                            f"{raw!r}") from None
    if not value > 0:
        raise BadInputError(f"${START_TIMEOUT_ENV} must be > 0 seconds, got {raw!r}")
    return value


def _kill_group(pgid: int, wait: float = 5.0) -> None:
    """SIGKILL every process of the group, then wait (up to `wait` s) until none is left."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    deadline = time.monotonic() + wait
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _logged_segments(shm_log: Path) -> list[str]:
    try:
        return [n.strip() for n in shm_log.read_text().splitlines() if n.strip()]
    except OSError:
        return []


def _unlink_logged_segments(shm_log: Path) -> list[str]:
    """Unlink the shared-memory segments the runtime logged and that still exist."""
    names = _logged_segments(shm_log)
    left = []
    for name in names:
        path = Path("/dev/shm") / name.lstrip("/")
        try:
            path.unlink()
            left.append(name)
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("could not unlink shared memory %s: %s", path, e)
    return left


def _tail(path: Path, lines: int = STDERR_TAIL) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return "\n".join(text.splitlines()[-lines:]) if text else "(the runtime printed nothing)"


def _error_line(stderr: str) -> str | None:
    for line in reversed(stderr.splitlines()):
        if line.startswith("cf2neuro_lava: error: "):
            return line[len("cf2neuro_lava: error: "):]
    return None


# --- the runtime call ---------------------------------------------------------------

def run_nir(graph: str | PathLike, x: np.ndarray, probes: Iterable[str] = (),
            timeout: float | None = None, python: str | PathLike | None = None,
            stats: dict | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Run a quantized NIR file on integer inputs x [T, B, *input_shape] in the Lava runtime.

    Returns {"output", probes..., "v:NAME"..., "latency"} (see the module
    docstring). `python` overrides the runtime's interpreter (default:
    `runtime.lava_python()`, which creates the runtime if needed);
    `stats`, when given, is filled with the runtime's wall times and counts,
    and (even when the run fails) its process group id ``runtime_pid`` and the
    names of the shared-memory segments it created, ``shm_segments``;
    `progress` shows a bar of Lava steps on a terminal: then the runtime splits
    the run into up to 100 blocking ``run()`` calls on the same compiled
    network and reports after each (no measurable cost); otherwise it is
    one ``run()``.
    """
    from .runtime import lava_env, lava_python

    graph = Path(graph)
    if not graph.is_file():
        raise BadInputError(f"NIR graph {graph} does not exist")
    x = np.asarray(x)
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise BadInputError(f"the lava runner takes integer inputs here (quantized payloads), "
                            f"got dtype {x.dtype}; scale float inputs with the graph's "
                            f"input_scale (run_lava does this)")
    if x.ndim < 3:
        raise BadInputError(f"inputs must be [T, B, *input_shape] (time first), got "
                            f"{list(x.shape)}")
    probes = [str(p) for p in probes]
    cost = graph_cost(graph)
    limit = _timeout(timeout, x.shape[0] * x.shape[1] + cost["processes"], cost)
    py = Path(python) if python is not None else lava_python(progress=True)
    with tempfile.TemporaryDirectory(prefix="cf2neuro-lava-") as tmp:
        tmp = Path(tmp)
        inputs, out = tmp / "inputs.npz", tmp / "outputs.npz"
        shm_log, stats_path, err_path = tmp / "shm.log", tmp / "stats.json", tmp / "stderr.txt"
        progress_path, ready_path = tmp / "progress.txt", tmp / "ready"
        np.savez(inputs, x=x.astype(np.int32) if _fits_int32(x) else x.astype(np.int64))
        cmd = [str(py), "-m", "cf2neuro_lava", "run", "--graph", str(graph.resolve()),
               "--inputs", str(inputs), "--out", str(out), "--shm-log", str(shm_log),
               "--stats", str(stats_path), "--ready", str(ready_path)]
        if progress and sys.stderr.isatty():  # a bar to show: up to 100 run() calls, same run
            cmd += ["--progress", str(progress_path),
                    "--chunks", str(max(1, min(100, x.shape[0] * x.shape[1] // 20)))]
        for p in probes:
            cmd += ["--probe", p]
        log.info("lava runner: %s (timeout %.0f s)", " ".join(cmd), limit)
        t0 = time.perf_counter()
        with open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        env=lava_env(), start_new_session=True, cwd=tmp)
            except OSError as e:
                raise RunnerError(f"cannot start the Lava runtime {py}: {e}. Recreate it with "
                                  f"`cf2neuro runtime setup lava`") from None
            bar = _Progress(progress_path, progress)
            try:
                fault = bar.wait(proc, limit, ready_path, _start_timeout())
                timed_out = fault == "timeout"
            finally:  # success, failure, timeout or Ctrl-C: nothing of the run survives
                bar.close()
                _kill_group(proc.pid)
                proc.wait()
                leaked = _unlink_logged_segments(shm_log)
                if stats is not None:  # what the run was, even when it failed
                    stats.update(runtime_pid=proc.pid, shm_segments=_logged_segments(shm_log))
        if fault not in (None, "timeout"):  # noticed through the processes, not the watchdog
            raise RunnerError(f"the Lava run of {graph.name} was lost: {fault}; it was stopped "
                              f"(all its processes killed, {len(leaked)} shared-memory segments "
                              f"unlinked) and nothing was written. Rerun it; if it recurs, "
                              f"check memory (dmesg) or what sends signals. Runtime stderr "
                              f"ends:\n{_tail(err_path)}")
        if leaked and not timed_out:
            log.warning("lava runner: unlinked %d shared-memory segments the run left",
                        len(leaked))
        wall = time.perf_counter() - t0
        stderr = _tail(err_path)
        if timed_out:
            raise RunnerTimeoutError(
                f"the Lava run of {graph.name} did not finish within {limit:g} s and was killed "
                f"(with all its processes; {len(leaked)} shared-memory segments unlinked). "
                f"Lava deadlocks when a process model fails; if the run is merely long, pass a "
                f"larger timeout (timeout= or ${TIMEOUT_ENV}). Runtime stderr ends:\n{stderr}")
        if proc.returncode == 2:
            raise BadInputError(f"the Lava runtime refused {graph.name}: "
                                f"{_error_line(stderr) or stderr}")
        if proc.returncode < 0:  # the interpreter itself was killed: name the signal
            sig = signal.Signals(-proc.returncode).name
            raise RunnerError(f"the Lava runtime running {graph.name} was killed by {sig}"
                              f"{' (maybe out of memory)' if sig == 'SIGKILL' else ''}; all its "
                              f"processes were stopped and nothing was written. Rerun it. "
                              f"Runtime stderr ends:\n{stderr}")
        if proc.returncode != 0:
            what = _error_line(stderr) or f"exit status {proc.returncode}"
            raise RunnerError(f"the Lava run of {graph.name} failed: {what}. Runtime "
                              f"({py}) stderr ends:\n{stderr}")
        if stats is not None and stats_path.is_file():
            import json
            stats.update(json.loads(stats_path.read_text()), wall_s=wall)
        with np.load(out, allow_pickle=False) as data:
            res = {k: data[k] for k in data.files}
    log.info("lava runner: %s in %.1f s", graph.name, wall)
    return res


class _Progress:
    """Waits for the runtime, showing the steps it reports (tqdm, on a terminal only)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled, self.bar = path, enabled, None

    def wait(self, proc: subprocess.Popen, limit: float, ready: Path,
             start_limit: float) -> str | None:
        """Wait up to `limit` seconds: None when the runtime ended by itself, "timeout", or
        why the run cannot finish (`_group_fault`, or no start within `start_limit` s)."""
        t0 = time.monotonic()
        deadline, stopped = t0 + limit, {}
        while True:
            try:
                proc.wait(timeout=min(0.25, max(deadline - time.monotonic(), 0.001)))
                return None
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if now >= deadline:
                    return "timeout"
                if now - t0 > start_limit and not ready.exists():
                    return (f"the runtime did not start within {start_limit:g} s (a hung "
                            f"interpreter or import; ${START_TIMEOUT_ENV} raises the limit)")
                fault = _group_fault(proc.pid, proc.pid, stopped)
                if fault:
                    try:  # the runtime's own guard may be ending the run with a better reason
                        proc.wait(timeout=1.0)
                        return None
                    except subprocess.TimeoutExpired:
                        return fault
                self.update()

    def update(self) -> None:
        if not self.enabled:
            return
        try:
            last = self.path.read_text().split("\n")[-2]
            done, total = (int(v) for v in last.split())
        except (OSError, IndexError, ValueError):
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="step", desc="lava", disable=None, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fits_int32(x: np.ndarray) -> bool:
    return x.size == 0 or (x.min() >= -2 ** 31 and x.max() < 2 ** 31)


def graph_cost(graph: Path) -> dict:
    """What a Lava step of the NIR file `graph` costs: processes, conv calls, synapses, neurons.

    Read from the file (h5py, no Lava): a process per node; per Conv2d
    C_out·C_in/groups convolve2d calls and C_out·C_in/groups·kh·kw·H·W
    MACs; per SumPool2d over C channels C²/groups calls (its grouped Conv of
    ones, groups the largest divisor of C up to 127) and C·H·W synapses;
    per Dense its weights; per neuron node its neurons. An unreadable file
    counts as 10 processes (only the watchdog uses this).
    """
    cost = {"processes": 10, "conv_calls": 0, "synapses": 0, "neurons": 0}
    try:
        import h5py
        with h5py.File(graph, "r") as f:
            nodes = f["node"]["nodes"]
            edges = [(_text(s), _text(d)) for s, d in f["node"]["edges"][()]] \
                if "edges" in f["node"] else []
            cost["processes"] = len(nodes) + 2  # and the recorders
            shapes = {k: n["v_threshold"].shape for k, n in nodes.items() if "v_threshold" in n}
            for name, node in nodes.items():
                _node_cost(node, name, edges, shapes, cost)
    except Exception:  # only a timeout estimate
        pass
    return cost


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _node_cost(node, name: str, edges: list, shapes: dict, cost: dict) -> None:
    kind = _text(node["type"][()])
    if kind == "Conv2d":
        cout, cin, kh, kw = node["weight"].shape
        h, w = (int(v) for v in node["input_shape"][()]) if "input_shape" in node else (32, 32)
        cost["conv_calls"] += cout * cin
        cost["synapses"] += cout * cin * kh * kw * h * w
    elif kind == "SumPool2d":
        src = next((shapes[s] for s, d in edges if d == name and s in shapes), (128, 32, 32))
        c = int(src[0]) if len(src) == 3 else 128
        groups = max(g for g in range(1, min(c, 127) + 1) if c % g == 0)
        cost["conv_calls"] += c * (c // groups)
        cost["synapses"] += int(np.prod(src))
    elif kind in ("Affine", "Linear"):
        cost["synapses"] += int(np.prod(node["weight"].shape))
    elif "v_threshold" in node:
        cost["neurons"] += int(np.prod(node["v_threshold"].shape))


# --- the runner ------------------------------------------------------------------

def integer_inputs(qgraph, x) -> np.ndarray:
    """Float inputs as the quantized graph's integer payloads (integers pass as they are)."""
    from .numerics import FixedPointNumerics

    num = FixedPointNumerics()
    num.graph_fp = qgraph.meta["fixed_point"]
    return num.prepare_input(x).cpu().numpy()


def run_lava(qgraph, x, probes: Iterable[str] = (), timeout: float | None = None,
             stats: dict | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """Run a quantized IR graph on Lava: float inputs are scaled to its payloads first."""
    from .lower import write_lava_nir

    if not isinstance(qgraph.meta.get("fixed_point"), dict):
        raise BadInputError("the lava runner runs quantized graphs; quantize it first "
                            "(cf2neuro.quant.quantize(graph, 'loihi2', calibration=x))")
    LavaRunner.refuse(qgraph)  # quantized for other runners only (attention): before any work
    xi = integer_inputs(qgraph, x)
    with tempfile.TemporaryDirectory(prefix="cf2neuro-lava-graph-") as tmp:
        path = Path(tmp) / "graph.nir"
        write_lava_nir(qgraph, path)
        return run_nir(path, xi, probes, timeout=timeout, stats=stats, progress=progress)


class LavaRunner(Runner):
    """lava-nc 0.10.0 in its isolated Python 3.10 runtime (created on first use)."""

    name = "lava"
    formats = ("fixed",)
    default_target = "loihi2"
    membrane_trace = False  # "v:NAME" is the membrane after each sample's last step

    def available(self) -> tuple[bool, str]:
        from .runtime import runtime_status

        return runtime_status()

    def setup(self, progress: bool = True) -> str:
        from .runtime import setup_lava

        return f"Lava runtime ready: {setup_lava(progress=progress)}"

    def run(self, request: RunRequest) -> RunResult:
        graph = self.check_graph(request)
        stats: dict = {}
        t0 = time.perf_counter()
        res = run_lava(graph, request.x, request.probes, timeout=request.timeout, stats=stats,
                       progress=request.progress)
        return RunResult.split(res, request.probes, stats, t0, stats.get("log", ""))
