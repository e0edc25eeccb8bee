"""The ``xylosim`` runner: a graph quantized for xylo on Rockpool's XyloSim, in its runtime.

    res = run_xylosim(qgraph, x, probes=["cf1", "v:cf1"], timeout=60)

1. the graph becomes a Xylo specification (`lower.xylo_spec`: Rockpool's own
   argument names) and the inputs spike counts with the bias channel
   (`lower.input_raster`), one zero step appended for the readout's delay;
2. ``python -m cf2neuro_xylo run`` builds ``XyloSim.from_specification`` in
   the runtime (`runtime.xylo_python`, created on first use) and runs every
   sample from reset state, in a session of its own under a watchdog;
3. the recordings come back aligned with the input steps: hidden states of
   steps 0..T-1, readout states of steps 1..T (``latency`` 1), the output
   decoded from the readout current as the emulator does (numerics.py).

Probes: the hidden layer's name (spike counts), ``v:`` of it (XyloSim's
Vmem), ``i:`` of it (its synaptic current, Isyn); the readout Linear's name
(the output), ``v:``/``i:`` of it (its current, Isyn_out); the input and
recurrent Linears' names (the sums they deliver, computed here from the
inputs and the recorded spikes exactly as the emulator computes them).
All [T, B, ...], int64.

Timeout: ``timeout=`` seconds, else ``$CF2NEURO_XYLO_TIMEOUT``, else 60 s +
10x the measured cost per step and synapse. On a timeout, a failure or
Ctrl-C the runtime's whole process group is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import BadInputError, RunnerError, RunnerTimeoutError, UnsupportedError
from ...ir.engine import check_deadline, check_window
from ...runners.contract import Runner, RunRequest, RunResult
from .lower import input_raster, roles, xylo_spec
from .numerics import BIAS_SPIKES, decode_readout, hidden_weights, readout_weights, shifted

TIMEOUT_ENV = "CF2NEURO_XYLO_TIMEOUT"
START_SECONDS = 60.0        # start Python, import rockpool, build XyloSim
SECONDS_PER_SAMPLE = 2e-3   # Python around each evolve() (measured ~0.3 ms)
SECONDS_PER_EVENT = 1e-7    # per step and weight (measured 5-30 ns, saturating nets slowest)
SAFETY = 10.0
STDERR_TAIL = 40


def default_timeout(steps: int, samples: int, spec: dict) -> float:
    per_step = sum(int(np.size(spec[k])) for k in ("weights_in", "weights_rec", "weights_out"))
    return START_SECONDS + SAFETY * samples * (SECONDS_PER_SAMPLE +
                                               steps * per_step * SECONDS_PER_EVENT)


def _timeout(timeout, steps: int, samples: int, spec: dict) -> float:
    raw, what = (timeout, "timeout") if timeout is not None else \
        (os.environ.get(TIMEOUT_ENV), f"${TIMEOUT_ENV}")
    if raw is None or raw == "":
        return default_timeout(steps, samples, spec)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadInputError(f"{what} must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise BadInputError(f"{what} must be > 0 seconds, got {raw!r}")
    return value


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        text = ""
    return "\n".join(text.splitlines()[-STDERR_TAIL:]) or "(the runtime printed nothing)"


def run_spec(spec: dict, x: np.ndarray, timeout: float | None = None,
             stats: dict | None = None, keep: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """XyloSim's recordings ({"Isyn", "Vmem", "Spikes", "Isyn_out", "Vmem_out",
    "Spikes_out"}, or those in `keep`; each [T, B, N]) for a spec and spike counts
    x [T, B, channels]."""
    from .runtime import xylo_env, xylo_python

    t0 = time.monotonic()
    limit = _timeout(timeout, x.shape[0], x.shape[1], spec)
    py = xylo_python(progress=True)
    with tempfile.TemporaryDirectory(prefix="cf2neuro-xylo-") as tmp:
        tmp = Path(tmp)
        spec_path, inputs, out = tmp / "spec.npz", tmp / "inputs.npz", tmp / "out.npz"
        err_path, stats_path = tmp / "stderr.txt", tmp / "stats.json"
        np.savez(spec_path, **spec)
        np.savez(inputs, x=x.astype(np.uint8))
        cmd = [str(py), "-m", "cf2neuro_xylo", "run", "--spec", str(spec_path), "--inputs",
               str(inputs), "--out", str(out), "--stats", str(stats_path)]
        for k in keep:
            cmd += ["--keep", k]
        with open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        env=xylo_env(), start_new_session=True, cwd=tmp)
            except OSError as e:
                raise RunnerError(f"cannot start the Xylo runtime {py}: {e}. Recreate it with "
                                  f"`cf2neuro runtime setup xylosim`") from None
            timed_out = False
            try:
                proc.wait(timeout=max(limit - (time.monotonic() - t0), 1e-3))
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # success, failure, timeout or Ctrl-C: nothing of the run survives
                _kill_group(proc.pid)
                proc.wait()
        stderr = _tail(err_path)
        if timed_out:
            raise RunnerTimeoutError(f"the XyloSim run did not finish within its timeout "
                                     f"({limit:g} s) and was killed; pass a larger timeout "
                                     f"(timeout= or ${TIMEOUT_ENV}) or fewer samples. Runtime "
                                     f"stderr ends:\n{stderr}")
        if proc.returncode == 2:
            line = next((s for s in reversed(stderr.splitlines())
                         if s.startswith("cf2neuro_xylo: error: ")), stderr)
            raise BadInputError(f"the Xylo runtime refused the run: "
                                f"{line.removeprefix('cf2neuro_xylo: error: ')}")
        if proc.returncode != 0:
            sig = f" (killed by {signal.Signals(-proc.returncode).name})" \
                if proc.returncode < 0 else ""
            raise RunnerError(f"the XyloSim run failed with exit status {proc.returncode}{sig}"
                              f"; runtime ({py}) stderr ends:\n{stderr}")
        if stats is not None and stats_path.is_file():
            stats.update(json.loads(stats_path.read_text()))
        with np.load(out, allow_pickle=False) as data:
            return {k: data[k].astype(np.int64) for k in data.files}


def probe_names(qgraph, r: dict) -> dict[str, str | None]:
    """Every probe this runner answers -> the XyloSim recording it needs (None: the output)."""
    hid, ro = r["hidden"], r["readout"]
    names = {hid: "Spikes", f"v:{hid}": "Vmem", f"i:{hid}": "Isyn", ro: None,
             f"v:{ro}": "Isyn_out", f"i:{ro}": "Isyn_out", qgraph.outputs[0]: None,
             r["input"]: None}
    if "recurrent" in r:
        names[r["recurrent"]] = "Spikes"
    return names


def _probe(qgraph, r: dict, name: str, x: np.ndarray, rec: dict, output: np.ndarray):
    """A probe's value [T, B, ...]: a recording, or a sum computed as the emulator does."""
    hid = hidden_weights(qgraph, qgraph[r["hidden"]])
    if name == r["input"]:  # what the input weights deliver, bias channel included
        w = shifted(hid["w_in"], hid["shift_in"])
        a = x[..., :w.shape[1]] @ w.T
        if hid["bias_weight"] is not None:
            a = a + shifted(hid["bias_weight"], hid["shift_in"]) * BIAS_SPIKES
        return a
    if name == r.get("recurrent"):  # the previous step's spikes through the user's weights
        wr = shifted(qgraph[name].params["weight_mant"], hid["shift_rec"])
        n = rec["Spikes"]
        return np.concatenate([np.zeros_like(n[:1]), n[:-1]], 0) @ wr.T
    need = probe_names(qgraph, r)[name]
    return output if need is None else rec[need]


def run_xylosim(qgraph, x, probes: Iterable[str] = (), timeout: float | None = None,
                stats: dict | None = None) -> dict[str, np.ndarray]:
    """Run a graph quantized for xylo on XyloSim: {"output", probes..., "latency"}."""
    fp = qgraph.meta.get("fixed_point")
    if not isinstance(fp, dict) or fp.get("backend", fp.get("target")) != "xylo":
        what = "float" if not isinstance(fp, dict) else f"quantized for {fp.get('target')}"
        raise UnsupportedError(f"runner 'xylosim' runs graphs quantized for target xylo; this "
                               f"one is {what}. Quantize it with cf2neuro.quant.quantize("
                               f"graph, 'xylo')")
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    check_window(x)
    want = tuple(qgraph[qgraph.inputs[0]].shape)
    if tuple(x.shape[2:]) != want:
        raise BadInputError(f"inputs must be [T, B, {', '.join(map(str, want))}] (time "
                            f"first), got {list(x.shape)}")
    r = roles(qgraph)
    known = probe_names(qgraph, r)
    probes = list(probes)
    for p in probes:
        if p not in known:
            raise BadInputError(f"runner 'xylosim' cannot probe {p!r}; it records "
                                f"{', '.join(sorted(known))}")
    spec = xylo_spec(qgraph)
    counts = input_raster(qgraph, x)
    T = counts.shape[0]
    padded = np.concatenate([counts, np.zeros_like(counts[:1])], 0)  # the readout's step
    check_deadline(deadline, "the XyloSim run")
    left = None if deadline is None else max(deadline - time.monotonic(), 1e-3)
    keep = {"Isyn_out"} | {known[p] for p in probes if known[p]}
    raw = run_spec(spec, padded, left, stats, sorted(keep))
    rec = {k: (v[1:] if k.endswith("_out") else v[:T]) for k, v in raw.items()}
    out = readout_weights(qgraph[r["readout"]])
    output = decode_readout(rec["Isyn_out"], raw["Isyn_out"][:T], out["bias_int"])
    res = {"output": output, "latency": np.int64(1)}
    for p in probes:
        res[p] = _probe(qgraph, r, p, counts, rec, output)
    return res


class XyloSimRunner(Runner):
    """Rockpool 3.1.0's XyloSim (xylosim 0.1.3) in its isolated runtime (created on first use)."""

    name = "xylosim"
    formats = ("fixed",)
    default_target = "xylo"

    def available(self) -> tuple[bool, str]:
        from .runtime import runtime_status

        return runtime_status()

    def setup(self, progress: bool = True) -> str:
        from .runtime import setup_xylo

        return f"Xylo runtime ready: {setup_xylo(progress=progress)}"

    def run(self, request: RunRequest) -> RunResult:
        graph = self.check_graph(request)
        stats: dict = {}
        t0 = time.perf_counter()
        res = run_xylosim(graph, request.x, request.probes, timeout=request.timeout,
                          stats=stats)
        return RunResult.split(res, request.probes, stats, t0)
