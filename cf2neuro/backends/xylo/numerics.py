"""Xylo Audio 2 integer arithmetic, bit-exact with XyloSim (xylosim 0.1.3, ``xylosim.v2``).

`XyloNumerics` is a numerics object for `cf2neuro.ir.engine.Engine` (like the
float and Loihi ones): it runs a graph quantized for target ``xylo``
(`quantize.py`). Every rule below is read from xylosim's C++ source
(``src/v2/cpp``, file:line) and checked spike for spike and state for state
against XyloSim driven through rockpool 3.1.0 (tests/test_xylo.py).

One XyloSim step (XyloLayer.cpp:145-221, ``evolve``)
---------------------------------------------------------
1. Deliver input spikes (at most 15 per channel, MAX_NUM_INP_SPIKES,
   XyloLayer.cpp:158-162, 248), then the *previous* step's hidden spikes
   through the recurrent weights (165-169), then the previous step's hidden
   spikes to the readout (172-176). Each spike adds ``w << shift`` to the
   target's synaptic current ``i`` with a saturating int16 add
   (XyloLayer.cpp:275-277, XyloIAFNeuron.cpp:70, safe_add XyloIAFNeuron.h:50):
   in the order of the presynaptic index, so a saturated partial sum is
   order dependent (`accumulate` keeps that order where it matters).
2. Every hidden neuron, then every readout neuron (XyloIAFNeuron.cpp:97-153):
   ``i -= decay(i, dash_syn)``; ``dv = sat(-decay(v, dash_mem) + i)`` (the
   negation is stored in int16: -(-32768) wraps, line 123); ``dv = sat(dv +
   bias)`` when biases are enabled; ``v = sat(v + dv)``; then ``while v >=
   v_th`` (at most 31 spikes for hidden neurons, 1 for readout neurons,
   XyloIAFNeuron.h:4-5): one spike more and ``v -= v_th`` (lines 137-150).
   ``decay(x, d) = x >> d`` (arithmetic), but at least ``sign(x)``
   (XyloIAFNeuron.cpp:10-28): every state moves one unit toward 0 each step,
   so beta = 1 - 2^-d is never 1, and ``d = 0`` zeroes the state.
3. The readout sees hidden spikes one step late: outputs lag by one step
   (the runner pads a step and drops it: ``latency`` 1).

How a CF neuron maps (quantize.py chooses the numbers)
------------------------------------------------------
cf2neuro's CF neuron has no synaptic current, and Xylo's current cannot pass
its input straight through: ``dash_syn = 0`` zeroes it before the membrane
reads it (decay(i, 0) = i) and ``dash_syn >= 1`` keeps at least half of it
for later steps. So the CF state lives in the *current*, and the membrane
only decides: ``dash_syn = d`` with beta = 1 - 2^-d, ``dash_mem = 0`` (v
forgets everything each step: v = i + bias), ``v_th = θ'`` and a recurrent
self-weight ``-θ'`` (``reset_weight << shift_rec``) that subtracts n·θ' from
the current at the next step. With a_t the current before its decay (scale S),

    a_t = i_{t-1} + S·x_t - θ'·n_{t-1},   i_t = D(a_t) ≈ beta·a_t,   n_t = floor(i_t / θ')

and with θ' = beta·θ·S this is exactly the unsigned CF neuron (reset
"subtract") in real arithmetic: a_t = S·u_t, Xylo's membrane v_t = i_t - n_t·θ'
= beta·S·v_t(CF). In integers it differs only by the decay's rounding (toward
-inf, at least one unit) and 16-bit saturation; hidden neurons may send up
to 31 spikes a step whatever the CF layer's K. A hidden bias enters as an
extra input channel that sends 15 spikes every step (``bias_int`` is its
int8 weight). The readout (a Linear read by the Output) is Xylo's readout
neurons with ``dash_syn = 1``, ``dash_mem = 0`` and ``v_th = 32767``: its
per-step value is decoded from their current as ``2·i_t - i_{t-1}`` (within
one unit of W·n_t; ``i_t = ceil((i_{t-1} + a_t)/2)``), plus ``bias_int``
added by the host, as the Lava runner adds the Loihi readout bias.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ...errors import BadInputError, UnsupportedError
from ...ir.graph import Graph, Node
from ...ir.numerics import Stateful

STATE_MIN, STATE_MAX = -(1 << 15), (1 << 15) - 1   # int16 i_syn, v_mem (BITS_STATE 16)
HIDDEN_MAX_SPIKES = 31                              # MAX_NUM_SPIKES
READOUT_MAX_SPIKES = 1                              # MAX_NUM_OUT_SPIKES
INPUT_MAX_SPIKES = 15                               # MAX_NUM_INP_SPIKES
BIAS_SPIKES = 15                                    # the bias channel's spikes per step
WEIGHT_MIN, WEIGHT_MAX = -128, 127
SHIFT_MAX = 7                                       # 3-bit IWBS / RWBS / OWBS
DASH_MAX = 15                                       # 4-bit dashes
READOUT_DASH_SYN = 1                                # the readout decode needs it


# --- XyloSim's integer primitives (int64 tensors holding int16 values) -------------

def sat(x: torch.Tensor) -> torch.Tensor:
    """safe_add's result: clamp to int16 (XyloIAFNeuron.h:50)."""
    return x.clamp(STATE_MIN, STATE_MAX)


def wrap16(x: torch.Tensor) -> torch.Tensor:
    """A value stored into an int16 (two's complement)."""
    return (x << 48) >> 48


def decay(x: torch.Tensor, dash: torch.Tensor) -> torch.Tensor:
    """x >> dash, but at least one unit toward 0 (XyloIAFNeuron.cpp:10-28)."""
    dv = torch.bitwise_right_shift(x, dash)
    return torch.where((dv == 0) & (x != 0), torch.sign(x), dv)


def neuron_step(acc, v, dash_syn, dash_mem, bias, vth, max_spikes: int):
    """One evolve() of a population after delivery: (i, v, spikes) (XyloIAFNeuron.cpp:97-153)."""
    i = acc - decay(acc, dash_syn)
    dv = sat(wrap16(-decay(v, dash_mem)) + i)
    dv = sat(dv + bias)
    v = sat(v + dv)
    n = torch.where(v >= vth, torch.div(v, vth, rounding_mode="floor"), torch.zeros_like(v))
    n = n.clamp(0, max_spikes)
    return i, v - n * vth, n


def saturating_sum(start: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """start [F] plus the columns of c [F, J] one at a time, clamped to int16 after each.

    x -> clamp(x + c_j) composes to x -> clamp(x + C, lo, hi): pairs of adjacent
    columns merge in a tree (log2 J vector steps instead of J)."""
    C = c
    lo = torch.full_like(c, STATE_MIN)
    hi = torch.full_like(c, STATE_MAX)
    while C.shape[1] > 1:
        if C.shape[1] % 2:  # an identity column (clamp(x + 0) of an in-range x)
            C, lo, hi = (torch.cat([a, a.new_full((a.shape[0], 1), v)], 1)
                         for a, v in ((C, 0), (lo, STATE_MIN), (hi, STATE_MAX)))
        c2, lo2, hi2 = C[:, 1::2], lo[:, 1::2], hi[:, 1::2]
        lo = torch.minimum(torch.maximum(lo[:, 0::2] + c2, lo2), hi2)
        hi = torch.minimum(torch.maximum(hi[:, 0::2] + c2, lo2), hi2)
        C = C[:, 0::2] + c2
    return torch.minimum(torch.maximum(start + C[:, 0], lo[:, 0]), hi[:, 0])


class Weights(NamedTuple):
    """A weight matrix [N, J] as the delivery needs it: int64, and float64 whole and positive."""

    i64: torch.Tensor
    f64: torch.Tensor
    pos: torch.Tensor


def weights(w: torch.Tensor) -> Weights:
    w = w.to(torch.int64)
    return Weights(w, w.to(torch.float64), w.clamp(min=0).to(torch.float64))


def spikes_times(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [B, J] counts times w.T [J, N] (float64: exact below 2^53), sparse when x is."""
    xd = x.to(torch.float64)
    if xd.numel() >= 4096 and int(torch.count_nonzero(xd)) * 8 < xd.numel():
        return torch.sparse.mm(xd.to_sparse(), w.T)
    return xd @ w.T


def accumulate(start: torch.Tensor, groups, chunk: int = 1 << 22) -> torch.Tensor:
    """start + every spike's weight, saturating after each add, in XyloSim's order.

    `groups` are (counts [B, J], `Weights` [N, J]) in delivery order; within a
    group the presynaptic index j orders the adds. A pre's n spikes of one
    weight saturate like one add of n·w (same sign). Every partial sum lies
    between start + (the negative adds) and start + (the positive adds)
    (counts are >= 0); where both stay within int16 the plain sum is exact,
    elsewhere `saturating_sum` adds them in order.
    """
    total, up = start.clone(), start.clone()
    for x, w in groups:
        total += spikes_times(x, w.f64).to(torch.int64)
        up += spikes_times(x, w.pos).to(torch.int64)
    down = total - up + start
    risky = (up > STATE_MAX) | (down < STATE_MIN)
    if not bool(risky.any()):
        return total
    b, k = risky.nonzero(as_tuple=True)
    step = max(1, chunk // sum(w.i64.shape[1] for _, w in groups))
    for s in range(0, b.numel(), step):  # bounded memory: chunk values at a time
        bs, ks = b[s:s + step], k[s:s + step]
        c = torch.cat([x[bs] * w.i64[ks] for x, w in groups], 1)  # [F, J] in delivery order
        total[bs, ks] = saturating_sum(start[bs, ks], c)
    return total


def decode_readout(i: np.ndarray, i_prev: np.ndarray, bias_int) -> np.ndarray:
    """The readout's per-step value from its current (dash_syn 1): 2·i_t - i_{t-1} + bias."""
    return 2 * np.asarray(i, np.int64) - np.asarray(i_prev, np.int64) + np.asarray(bias_int)


def fixed_point_attrs(node: Node) -> dict:
    fp = node.attrs.get("fixed_point")
    if not isinstance(fp, dict) or "role" not in fp:
        raise UnsupportedError(f"{node.where()} has no Xylo form: quantize the graph for "
                               f"target xylo first (cf2neuro.quant.quantize(graph, 'xylo'))")
    return fp


def per_neuron(value, n: int) -> np.ndarray:
    """A scalar or a list from the fixed-point attrs as an int64 array [n]."""
    return np.broadcast_to(np.asarray(value, np.int64), (n,)).copy()


def shifted(w, shift: int) -> np.ndarray:
    """The delivered weight: int8 << shift, stored in int16 (XyloLayer.cpp:276)."""
    w = np.asarray(w, np.int64) << int(shift)
    return ((w + 32768) % 65536) - 32768


def hidden_parts(graph: Graph, node: Node):
    """(input Linear, recurrent Linear or None) feeding a Xylo hidden layer."""
    src = graph[node.inputs[0]]
    feeds = [graph[s] for s in src.inputs] if src.op == "Add" else [src]
    roles = {fixed_point_attrs(p)["role"]: p for p in feeds if p.op == "Linear"}
    if "input" not in roles or len(roles) != len(feeds):
        raise UnsupportedError(f"{node.where()}: a Xylo hidden layer reads an input Linear "
                               f"(and a recurrent one); re-quantize the graph for xylo")
    return roles["input"], roles.get("recurrent")


def hidden_weights(graph: Graph, node: Node) -> dict:
    """The hidden layer's integer parameters as XyloSim holds them (numpy, int64)."""
    fp = fixed_point_attrs(node)
    w_in, w_rec = hidden_parts(graph, node)
    fin = fixed_point_attrs(w_in)
    h = int(node.shape[-1])
    win = np.asarray(w_in.params["weight_mant"], np.int64)
    bias_w = w_in.params.get("bias_int")
    rec = np.zeros((h, h), np.int64) if w_rec is None else \
        np.asarray(w_rec.params["weight_mant"], np.int64).copy()
    rec[np.arange(h), np.arange(h)] -= per_neuron(fp["reset_weight"], h)
    bias = node.params.get("bias_mant")
    return {"w_in": win, "bias_weight": None if bias_w is None else np.asarray(bias_w, np.int64),
            "shift_in": int(fin["weight_shift"]), "w_rec": rec,
            "shift_rec": int(fp["weight_shift_rec"]),
            "vth": per_neuron(fp["vth"], h), "dash_syn": per_neuron(fp["dash_syn"], h),
            "dash_mem": per_neuron(fp["dash_mem"], h),
            "bias": np.zeros(h, np.int64) if bias is None else np.asarray(bias, np.int64),
            "input_node": w_in.name}


def readout_weights(node: Node) -> dict:
    fp = fixed_point_attrs(node)
    o = int(node.shape[-1])
    return {"w_out": np.asarray(node.params["weight_mant"], np.int64),
            "shift_out": int(fp["weight_shift"]), "vth": per_neuron(fp["vth"], o),
            "dash_syn": per_neuron(fp["dash_syn"], o), "dash_mem": per_neuron(fp["dash_mem"], o),
            "bias_int": np.asarray(node.params.get("bias_int", np.zeros(o)), np.int64)}


# --- the numerics -----------------------------------------------------------------

class XyloNumerics:
    """XyloSim's arithmetic (int64 tensors); see the module docstring.

    Inputs: a float window becomes spike counts ``round(x · input_scale)``
    clipped to 0..15 (0..1 for binary data); an integer window is taken as
    counts and clipped to 0..15 as XyloSim clips them. `record` (a dict)
    collects every neuron node's ``{"i", "v", "n"}`` per step, for tests.
    """

    name = "xylo"
    time_batched = False  # the hidden layer reads its input Linear's spikes in the same step

    @staticmethod
    def effective_weights(node) -> np.ndarray:
        """The int8 weights Xylo stores (their zeros are the synapses energy does not count)."""
        return np.asarray(node.params["weight_mant"])
    KERNELS = {"Identity": "identity", "Output": "identity", "Flatten": "flatten",
               "Add": "add", "Linear": "linear", "CFNeuron": "hidden"}

    def __init__(self, device=None, record: dict | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.record = record
        self.graph_fp: dict | None = None
        self._spikes: dict[str, torch.Tensor] = {}  # input Linear -> this step's counts

    def latency(self, graph: Graph) -> int:
        """Steps XyloSim delays the output: 1 (the readout reads last step's spikes)."""
        return int(any((n.attrs.get("fixed_point") or {}).get("role") == "readout"
                       for n in graph))

    def kernel(self, node: Node, graph: Graph):
        if self.graph_fp is None:
            fp = graph.meta.get("fixed_point")
            if not isinstance(fp, dict) or fp.get("backend", "xylo") != "xylo":
                raise UnsupportedError("the graph is not quantized for xylo; quantize it first "
                                       "(cf2neuro.quant.quantize(graph, 'xylo'))")
            self.graph_fp = fp
        method = self.KERNELS.get(node.op)
        if method is None:
            raise UnsupportedError(f"{node.where()}: op {node.op} has no Xylo form; known: "
                                   f"{sorted(self.KERNELS)}")
        return getattr(self, method)(node, graph)

    def prepare_input(self, x) -> torch.Tensor:
        t = torch.as_tensor(x).to(self.device)
        if t.dtype == torch.bool:
            t = t.to(torch.int64)
        hi = INPUT_MAX_SPIKES if int((self.graph_fp or {}).get("input_bits", 4)) else 1
        if t.is_floating_point():
            if not torch.isfinite(t).all():
                raise BadInputError("inputs contain NaN or infinite values")
            scale = float((self.graph_fp or {}).get("input_scale", 1.0))
            t = torch.round(t.to(torch.float64) * scale)
        return t.clamp(0, hi).to(torch.int64)

    def _long(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, np.int64)).to(self.device)

    def _record(self, name: str, i, v, n) -> None:
        if self.record is not None:
            self.record.setdefault(name, []).append({"i": i, "v": v, "n": n})

    # --- stateless -------------------------------------------------------------
    def identity(self, node, graph):
        return lambda x: x

    def flatten(self, node, graph):
        nd = len(graph[node.inputs[0]].shape)
        a, b = node.attrs["start_dim"] % nd + 1, node.attrs["end_dim"] % nd + 1
        return lambda x: x.flatten(a, b)

    def add(self, node, graph):
        return lambda *xs: sum(xs[1:], xs[0])

    def linear(self, node, graph):
        """Input and recurrent weights: the sum they deliver (probes); readout: its neurons."""
        fp = fixed_point_attrs(node)
        if fp["role"] == "readout":
            return self.readout(node)
        shift = fp["weight_shift"] if fp["role"] == "input" else \
            fixed_point_attrs(graph[node.inputs[0]])["weight_shift_rec"]  # one per population
        w = self._long(shifted(node.params["weight_mant"], shift)).to(torch.float64)
        bias = node.params.get("bias_int")
        extra = 0 if bias is None else self._long(shifted(bias, shift) * BIAS_SPIKES)
        name, keep = node.name, fp["role"] == "input"

        def run(x):
            if keep:
                self._spikes[name] = x
            return spikes_times(x, w).to(torch.int64) + extra
        return run

    # --- neurons ---------------------------------------------------------------
    def hidden(self, node, graph):
        """A hidden population: delivery in XyloSim's order, then evolve (module docstring)."""
        fp = fixed_point_attrs(node)
        if fp["role"] != "hidden":
            raise UnsupportedError(f"{node.where()}: not a Xylo hidden layer")
        p = hidden_weights(graph, node)
        w_in = self._long(shifted(p["w_in"], p["shift_in"]))
        if p["bias_weight"] is not None:  # the bias channel: the last input channel
            w_in = torch.cat([w_in, self._long(shifted(p["bias_weight"], p["shift_in"]))[:, None]],
                             1)
        w_in, w_rec = weights(w_in), weights(self._long(shifted(p["w_rec"], p["shift_rec"])))
        vth, ds, dm, bias = (self._long(p[k]) for k in ("vth", "dash_syn", "dash_mem", "bias"))
        src, with_bias, name = p["input_node"], p["bias_weight"] is not None, node.name

        def step(state, a):
            i, v, n = (torch.zeros_like(a),) * 3 if state is None else state
            x = self._spikes[src]
            if with_bias:
                x = torch.cat([x, torch.full_like(x[:, :1], BIAS_SPIKES)], 1)
            acc = accumulate(i, [(x, w_in), (n, w_rec)])
            i, v, n = neuron_step(acc, v, ds, dm, bias, vth, HIDDEN_MAX_SPIKES)
            self._record(name, i, v, n)
            return n, (i, v, n)
        return Stateful(step, lambda s: s[1])

    def readout(self, node):
        """Xylo's readout neurons; the output is decoded from their current."""
        p = readout_weights(node)
        if np.any(p["dash_syn"] != READOUT_DASH_SYN):
            raise UnsupportedError(f"{node.where()}: the readout decode needs dash_syn = "
                                   f"{READOUT_DASH_SYN}; re-quantize the graph for xylo")
        w = weights(self._long(shifted(p["w_out"], p["shift_out"])))
        vth, ds, dm, b = (self._long(p[k]) for k in ("vth", "dash_syn", "dash_mem", "bias_int"))
        zero, name = torch.zeros((), dtype=torch.int64, device=self.device), node.name

        def step(state, n):
            if state is None:
                state = (torch.zeros((n.shape[0], w.i64.shape[0]), dtype=torch.int64,
                                     device=self.device),) * 2
            i_prev, v = state
            acc = accumulate(i_prev, [(n, w)])
            i, v, s = neuron_step(acc, v, ds, dm, zero, vth, READOUT_MAX_SPIKES)
            self._record(name, i, v, s)
            return 2 * i - i_prev + b, (i, v)
        return Stateful(step, lambda s: s[0])
