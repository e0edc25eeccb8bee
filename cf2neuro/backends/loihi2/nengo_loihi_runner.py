"""The ``nengo-loihi`` runner: a quantized binary graph on nengo-loihi's Loihi 1 emulator.

    from cf2neuro.backends.loihi2.nengo_loihi_runner import run_nengo_loihi
    res = run_nengo_loihi(qgraph, x, probes=["layers.2", "v:layers.2"])

An independent check of target ``loihi``: the quantized graph's integers
(mantissas, weight_exp, vth, dv, du, bias) become Loihi 1 blocks, synapses and
axons built directly with nengo-loihi's objects (not its nengo builder, which
would choose its own integers), run by `nengo_loihi.emulator.EmulatorInterface`
in the isolated runtime (`nengo_loihi_runtime`, created on first use) through
`nengo_loihi_driver.py`, in a subprocess of its own session under a timeout.

The encoding (`loihi1_plan`), per neuron op:

- LIF / IF / CubaLIF (Lava's LIF, kernel ``lava_lif``): the same integers:
  decay_u = du, decay_v = dv, vth << 6, bias = mant << exp, refractory delay 1
  (= none), v clipped at +-(2^23 - 1). Weights: Loihi 1's ``mant << (6 + e)``.
- CFNeuron, binary, reset to zero (kernel ``cf_neuron``): Loihi's weights land
  6 bits up in u, so the CF state is carried x64: decay_u = 4095 (no current
  memory), bias << 6, vth' = (vth - 1) << 6 (Loihi fires on v > vth', CF on
  v >= vth). Exact only for dv = 0 (IF): Loihi rounds the leak of 64·v, not
  of v; and v saturates at +-2^17 CF units (`notes` say so).
- The readout (a Linear read by the Output) is a block whose u is read:
  decay_u = 4095 gives u = this step's input, a = u >> 6, plus ``bias_int``
  (added by the runner, as for Lava).

Outputs are aligned with the input steps (the pipeline latency removed);
``v:NAME`` is the membrane trace [T, B, ...] in cf2neuro's units.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ...errors import BadInputError, RunnerError, RunnerTimeoutError, UnsupportedError
from ...ir.graph import Graph, Node
from ...runners.contract import Runner, RunRequest, RunResult
from .numerics import DECAY_UNITY, LAVA_LIF_OPS, LIF_SHIFT, STATE_MAX, FixedPointNumerics
from .numerics import fixed_point_attrs, scale_bias, sign_mode

log = logging.getLogger(__name__)

TIMEOUT_ENV = "CF2NEURO_NENGO_LOIHI_TIMEOUT"
INPUT = "__input__"
NEURON_OPS = frozenset({"CFNeuron"}) | LAVA_LIF_OPS
SYNAPSE_OPS = ("Linear", "Conv2d")
PASS_OPS = ("Flatten", "Add")
VTH_MAX = (1 << 17) - 1           # Loihi 1: 17-bit threshold mantissa (discretize.py:10)
BIAS_MANT, BIAS_EXP = 4095, 7     # nengo-loihi's bias range (discretize.py:14-15)
# Measured (2 cores; 64-256-256-10 MLP, ~90 spikes a step): 0.44 ms an emulator step, of
# which ~0.1 ms a block and ~3 us a delivered spike. The default timeout assumes every
# neuron spikes every step (each spike adds a row of weights), three times over.
START_S, PER_BLOCK_S, PER_SPIKE_S, PER_WEIGHT_S, SAFETY = 60.0, 2e-4, 3e-6, 2e-9, 3.0


def _producer(g: Graph, name: str) -> str:
    """The block a value comes from: through Flatten to the Input or a neuron."""
    n = g[name]
    while n.op == "Flatten":
        n = g[n.inputs[0]]
    if n.op == "Input":
        return INPUT
    if n.op in NEURON_OPS:
        return n.name
    raise UnsupportedError(f"{n.where()} feeds a synapse; the nengo-loihi runner sends only "
                           f"the input's and neurons' spikes (no synapse chains, pooling or "
                           f"delays)")


def _consumer(g: Graph, p: Node) -> str:
    """The block synaptic op `p` feeds: a neuron (through Adds) or its own readout block."""
    readers = g.consumers(p.name)
    if readers and all(g[r].op == "Output" for r in readers):
        return p.name
    while len(readers) == 1 and g[readers[0]].op == "Add":
        readers = g.consumers(readers[0])
    if len(readers) == 1 and g[readers[0]].op in NEURON_OPS:
        return readers[0]
    raise UnsupportedError(f"{p.where()} feeds {readers}; the nengo-loihi runner connects a "
                           f"synapse to one neuron layer or to the Output")


def _dense_mantissas(g: Graph, p: Node) -> np.ndarray:
    """[n_pre, n_post] integer mantissas; a Conv2d unrolled over its flattened input."""
    w = FixedPointNumerics.effective_weights(p)
    if p.op == "Linear":
        return np.asarray(w, np.int64).T
    import torch
    import torch.nn.functional as F

    shape = tuple(g[p.inputs[0]].shape)
    eye = torch.eye(int(np.prod(shape)), dtype=torch.float64).reshape(-1, *shape)
    a = p.attrs
    out = F.conv2d(eye, torch.as_tensor(np.asarray(w, np.float64)), stride=a["stride"],
                   padding=a["padding"], dilation=a["dilation"], groups=a["groups"])
    return out.reshape(eye.shape[0], -1).round().to(torch.int64).numpy()


def _loihi1_bias_ok(b: np.ndarray) -> np.ndarray:
    """Whether each bias is some 13-bit mantissa << exp in 0..7 (discretize.py:103-110)."""
    b = np.asarray(b, np.int64)
    ok = np.zeros(b.shape, bool)
    for e in range(BIAS_EXP + 1):
        ok |= (b % (1 << e) == 0) & (np.abs(b >> e) <= BIAS_MANT)
    return ok


def _neuron_block(n: Node, notes: list) -> tuple[dict, np.ndarray, int]:
    """(block spec, bias, v scale) of a quantized neuron node (see the module docstring)."""
    fp = fixed_point_attrs(n)
    size = int(np.prod(n.shape))
    mant = n.params.get("bias_mant")
    bias = (np.zeros(size, np.int64) if mant is None else
            scale_bias(np.broadcast_to(np.asarray(mant), n.shape), int(fp.get("bias_exp", 0)))
            .reshape(-1))
    spec = {"name": n.name, "n": size, "depth": int(fp["depth"]), "refract": 1,
            "vmin": -STATE_MAX, "vmax": STATE_MAX, "decay_v": int(fp["dv"])}
    if n.op in LAVA_LIF_OPS:
        spec.update(decay_u=int(fp["du"]), vth=int(fp["vth"]) << LIF_SHIFT)
        scale = 1
    else:
        k, signed, reset = int(fp["max_spikes"]), bool(fp["signed"]), fp.get("reset")
        if k != 1 or signed or reset != "zero" or "v_min_int" in n.params:
            raise UnsupportedError(
                f"{n.where()}: Loihi 1 neurons send binary spikes and reset to zero; this CF "
                f"neuron has max_spikes={k}, signed={signed}, reset={reset}"
                f"{', a membrane floor' if 'v_min_int' in n.params else ''}. Train with "
                f"--neuron reset=zero max_spikes=1 signed=false and quantize for target loihi")
        scale = 1 << LIF_SHIFT
        spec.update(decay_u=DECAY_UNITY - 1, vth=(int(fp["vth"]) - 1) << LIF_SHIFT)
        bias = bias << LIF_SHIFT
        if spec["decay_v"]:
            notes.append(f"{n.name}: a leaky CF neuron (dv={spec['decay_v']}) has no exact "
                         f"Loihi 1 form: Loihi rounds the leak of 64·v, cf2neuro the leak of v")
    if not 0 < spec["vth"] >> LIF_SHIFT <= VTH_MAX:
        raise UnsupportedError(f"{n.where()}: its Loihi 1 threshold mantissa "
                               f"{spec['vth'] >> LIF_SHIFT} is outside 1..{VTH_MAX}")
    bad = int(np.count_nonzero(~_loihi1_bias_ok(bias)))
    if bad:
        notes.append(f"{n.name}: {bad} biases are no 13-bit mantissa << 0..7 on Loihi 1 "
                     f"(the emulator takes them as they are)")
    return spec, bias, scale


def loihi1_plan(g: Graph) -> tuple[dict, dict, dict]:
    """(plan, arrays, info) of quantized graph `g` for `nengo_loihi_driver` (module doc).

    info: {"scale": {block: v scale}, "readout": {op: bias_int}, "notes": [...]}.
    """
    fp = g.meta.get("fixed_point")
    if not isinstance(fp, dict):
        raise BadInputError("the nengo-loihi runner runs quantized graphs; quantize it first "
                            "(cf2neuro.quant.quantize(graph, 'loihi', calibration=x))")
    if int(fp.get("input_bits", 0)) != 0:
        raise UnsupportedError(f"the graph takes {fp['input_bits']}-bit input payloads; Loihi 1 "
                               f"takes binary input spikes (quantize for target loihi)")
    bad = [n for n in g if n.op not in NEURON_OPS | {"Input", "Output", *SYNAPSE_OPS, *PASS_OPS}]
    if bad:
        raise UnsupportedError(f"the nengo-loihi runner cannot run {bad[0].where()}: it builds "
                               f"Loihi 1 blocks for Linear/Conv2d synapses and LIF/IF/binary CF "
                               f"neurons only")
    plan = {"version": 1, "inputs": {"n": int(np.prod(g[g.inputs[0]].shape))},
            "blocks": [], "synapses": []}
    arrays, info = {}, {"scale": {}, "readout": {}, "notes": []}
    for n in g:
        if n.op in NEURON_OPS:
            spec, bias, scale = _neuron_block(n, info["notes"])
            spec["bias"] = f"bias:{n.name}"
            arrays[spec["bias"]] = bias
            plan["blocks"].append(spec)
            info["scale"][n.name] = scale
    for p in g:
        if p.op not in SYNAPSE_OPS:
            continue
        sfp = fixed_point_attrs(p)
        if int(sfp.get("num_message_bits", 0)):
            raise UnsupportedError(f"{p.where()} reads graded spikes (num_message_bits="
                                   f"{sfp['num_message_bits']}); Loihi 1 carries binary spikes")
        post = _consumer(g, p)
        if post == p.name:  # the readout: u holds this step's input (decay_u 4095)
            size = int(np.prod(p.shape))
            plan["blocks"].append({
                "name": p.name, "n": size, "depth": int(sfp["depth"]), "refract": 1,
                "vmin": -STATE_MAX, "vmax": STATE_MAX, "decay_u": DECAY_UNITY - 1,
                "decay_v": DECAY_UNITY - 1, "vth": VTH_MAX << LIF_SHIFT,
                "bias": f"bias:{p.name}"})
            arrays[f"bias:{p.name}"] = np.zeros(size, np.int64)
            info["readout"][p.name] = np.asarray(p.params.get("bias_int", 0), np.int64)
        mant = _dense_mantissas(g, p)
        arrays[f"w:{p.name}"] = mant
        plan["synapses"].append({"name": p.name, "pre": _producer(g, p.inputs[0]),
                                 "post": post, "mant": f"w:{p.name}",
                                 "weight_exp": int(sfp.get("weight_exp", 0)),
                                 "sign_mode": sign_mode(mant)})
    return plan, arrays, info


# --- the run ---------------------------------------------------------------------------

def _output_source(g: Graph, name: str) -> str:
    """The block an Output reads: a neuron (through Flatten) or its readout synapse."""
    src = g[name].inputs[0]
    while g[src].op == "Flatten":
        src = g[src].inputs[0]
    return src


def _timeout(timeout, plan: dict, arrays: dict, samples: int, steps: int) -> float:
    value = timeout if timeout is not None else os.environ.get(TIMEOUT_ENV)
    if value is None:
        depth = max((b["depth"] for b in plan["blocks"]), default=0)
        per_step = PER_BLOCK_S * len(plan["blocks"]) + sum(
            arrays[s["mant"]].shape[0] * (PER_SPIKE_S + PER_WEIGHT_S * arrays[s["mant"]].shape[1])
            for s in plan["synapses"])
        return START_S + SAFETY * samples * (steps + 1 + depth) * per_step
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"timeout must be a number of seconds, got {value!r}") from None
    if not value > 0:
        raise BadInputError(f"timeout must be > 0 seconds, got {value!r}")
    return value


def _error_line(text: str) -> str | None:
    prefix = "nengo_loihi_driver: error: "
    return next((ln[len(prefix):] for ln in reversed(text.splitlines())
                 if ln.startswith(prefix)), None)


def _drive(plan: dict, arrays: dict, limit: float, stats: dict) -> dict:
    """Run the driver in the runtime (a session of its own, killed whatever happens)."""
    from .nengo_loihi_runtime import DRIVER, runtime_env, setup_nengo_loihi
    from .runner import _kill_group, _tail

    py = setup_nengo_loihi(progress=True)
    with tempfile.TemporaryDirectory(prefix="cf2neuro-nengo-loihi-") as tmp:
        tmp = Path(tmp)
        (tmp / "plan.json").write_text(json.dumps(plan))
        np.savez(tmp / "arrays.npz", **arrays)
        cmd = [str(py), str(DRIVER), "--plan", str(tmp / "plan.json"), "--arrays",
               str(tmp / "arrays.npz"), "--out", str(tmp / "out.npz"), "--stats",
               str(tmp / "stats.json")]
        err_path = tmp / "stderr.txt"
        with open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                        env=runtime_env(), start_new_session=True, cwd=tmp)
            except OSError as e:
                raise RunnerError(f"cannot start the nengo-loihi runtime {py}: {e}; recreate "
                                  f"it with `cf2neuro runtime setup nengo-loihi`") from None
            timed_out = False
            try:
                proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:  # success, failure, timeout or Ctrl-C: nothing of the run survives
                _kill_group(proc.pid)
                proc.wait()
        stderr = _tail(err_path)
        if timed_out:
            raise RunnerTimeoutError(f"the nengo-loihi run did not finish within the timeout "
                                     f"of {limit:g} s and was killed; pass a larger timeout "
                                     f"(timeout= or ${TIMEOUT_ENV}). Runtime stderr ends:\n"
                                     f"{stderr}")
        if proc.returncode == 2:
            raise BadInputError(f"the nengo-loihi runtime refused the graph: "
                                f"{_error_line(stderr) or stderr}")
        if proc.returncode != 0:
            raise RunnerError(f"the nengo-loihi run failed (exit status {proc.returncode}); "
                              f"runtime ({py}) stderr ends:\n{stderr}")
        stats.update(json.loads((tmp / "stats.json").read_text()))
        with np.load(tmp / "out.npz", allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def run_nengo_loihi(qgraph: Graph, x, probes: Iterable[str] = (), timeout: float | None = None,
                    stats: dict | None = None) -> dict[str, np.ndarray]:
    """Run quantized `qgraph` on nengo-loihi's emulator: {"output", probes..., "latency"}.

    Probes: a neuron's name (spikes), ``v:NAME`` (its membrane after each step, in
    cf2neuro's units), or the readout Linear's name (its integer output).
    """
    from .runner import integer_inputs

    stats = {} if stats is None else stats
    plan, arrays, info = loihi1_plan(qgraph)
    xi = integer_inputs(qgraph, x)
    if xi.ndim < 3:
        raise BadInputError(f"inputs must be [T, B, *input_shape], got {list(xi.shape)}")
    if np.any((xi != 0) & (xi != 1)):
        raise BadInputError("the nengo-loihi runner takes binary input spikes (0/1)")
    arrays["x"] = xi.astype(np.int8)
    steps, samples = xi.shape[:2]
    probes = [str(p) for p in probes]
    blocks = {b["name"] for b in plan["blocks"]}
    for p in probes:
        if p.removeprefix("v:") not in blocks or (p.startswith("v:") and p[2:] in
                                                  info["readout"]):
            raise BadInputError(f"cannot probe {p!r} on nengo-loihi: probe a neuron (NAME, "
                                f"v:NAME) or the readout; blocks: {sorted(blocks)}")
    sources = [_output_source(qgraph, name) for name in qgraph.outputs]
    plan["record"] = sorted({("u:" if s in info["readout"] else "s:") + s
                             for s in sources + [p for p in probes if not p.startswith("v:")]}
                            | {p for p in probes if p.startswith("v:")})
    limit = _timeout(timeout, plan, arrays, samples, steps)
    raw = _drive(plan, arrays, limit, stats)
    stats["notes"] = info["notes"]

    def value(name: str) -> np.ndarray:
        shape = tuple(qgraph[name].shape)
        if name in info["readout"]:  # u = 64·a: Lava's LIF input a << 6, Loihi's weight << 6
            a = raw[f"u:{name}"].astype(np.int64) >> LIF_SHIFT
            return (a + info["readout"][name]).reshape(steps, samples, *shape)
        return raw[f"s:{name}"].astype(np.int64).reshape(steps, samples, *shape)

    res = {}
    for k, (name, src) in enumerate(zip(qgraph.outputs, sources)):  # as Engine names them
        res["output" if k == 0 else name] = value(src).reshape(steps, samples,
                                                                *qgraph[name].shape)
    for p in probes:
        if p.startswith("v:"):
            v = raw[p].astype(np.int64) >> (info["scale"][p[2:]].bit_length() - 1)
            res[p] = v.reshape(steps, samples, *qgraph[p[2:]].shape)
        else:
            res[p] = value(p)
    res["latency"] = int(qgraph.meta["fixed_point"].get("latency", 0))
    return res


class NengoLoihiRunner(Runner):
    """nengo-loihi's Loihi 1 emulator in its isolated runtime (created on first use)."""

    name = "nengo-loihi"
    formats = ("fixed",)
    default_target = "loihi"
    membrane_trace = True  # "v:NAME" is the membrane after every step

    def available(self) -> tuple[bool, str]:
        from .nengo_loihi_runtime import runtime_status

        return runtime_status()

    def setup(self, progress: bool = True) -> str:
        from .nengo_loihi_runtime import setup_nengo_loihi

        return f"nengo-loihi runtime ready: {setup_nengo_loihi(progress=progress)}"

    def run(self, request: RunRequest) -> RunResult:
        graph = self.check_graph(request)
        stats: dict = {}
        t0 = time.perf_counter()
        res = run_nengo_loihi(graph, request.x, request.probes, timeout=request.timeout,
                              stats=stats)
        notes = stats.get("notes", []) + [f"{msg} ({n} times)" for msg, n in
                                          (stats.get("warnings") or {}).items()]
        return RunResult.split(res, request.probes, stats, t0, "\n".join(notes))
