"""A quantized NIR graph -> Lava processes (cf2neuro's docs/fixed_point.md).

`build(graph, x, probes, record_dir)` makes few, wide Lava processes, one per
NIR node that computes:

==============  ==============================================================
NIR node        Lava process
==============  ==============================================================
Input           ``lava.proc.io.source.RingBuffer`` (graded int32 payloads)
Linear/Affine   ``Dense``: ``weight_mant`` as given (columns permuted to the
                port layout; Lava picks the sign mode, clips to 8 bits and
                drops the LSB of mixed-sign weights), ``weight_exp``,
                ``num_message_bits``, one step later. A readout's
                ``bias_int`` (a Dense read only by an Output) is added to
                what the sink recorded, as the runner's own step
recurrent       cf2neuro's ``ResetDense`` (procs/rdense): Lava's bit-accurate
Linear/Affine   Dense whose one-step buffer is zeroed at every sample start
(back edge)     (see "Recurrent graphs" below)
Conv2d          ``Conv``: kernel flipped and transposed to Lava's
                (C_out, kx, ky, C_in/g), stride/padding/dilation as (x, y)
SumPool2d       ``Conv`` of ones, groups = channels, stride = the pool's
Flatten         no process: the source port reshaped (C order over Lava's
                (X, Y, C) layout; the next Dense's columns absorb the order)
LIF / IF with   cf2neuro's ``CFNeuron`` (procs/cf), reset every T steps at
CF metadata     its pipeline depth
LIF / IF /      Lava's ``LIFReset`` (reset to zero, Lava's bit-accurate LIF;
CubaLIF         a CubaLIF's synaptic decay is LIF's du)
Output, probes  cf2neuro's ``Recorder`` (procs/recorder: keeps the aligned
                steps, saves them to record_dir after the last step);
                ``v:`` probes record a CF layer's ``v_out`` after each
                sample's last step, or Read Lava LIF's ``v`` then
==============  ==============================================================

Layouts. The IR (and NIR) holds images as (C, H, W); Lava's Conv wants
(X, Y, C) = (W, H, C). Every value keeps its IR shape, its Lava port shape
and an ``index`` with ``ir.ravel()[i] == lava.ravel()[index[i]]``: 3-D
values live transposed, a Flatten keeps its source's order (a virtual
reshape port), and a Dense that reads a permuted vector gets its weight
columns permuted to match (``W_lava[:, index] = W``).

Time. Each Dense/Conv/SumPool delivers one step later, so a node at pipeline
depth d sees sample b's step t at Lava step ``b*T + t + d``; the run has
``B*T + D`` steps, D the deepest node (the input padded with zeros), and
``latency`` is the depth of the Output. Neurons at depth d zero their state
at steps ``b*T + d``, so every sample starts from zero.

Recurrent graphs. Each cycle is cut where cf2neuro's IR cuts it (the same
depth-first search; the last edge on the cycle that leaves a neuron), and
that edge must enter a Dense: Lava's Dense sends at step s what it
computed at s - 1, which *is* the IR's one-step delay on a back edge. So
the recurrent Dense adds no pipeline depth (it sits at its source neuron's
depth, as the quantizer's ``depth`` says), it is built after that neuron,
and its output is connected last into the neuron(s) it feeds (an InPort
with several connections sums them; the depths must agree). Streaming
samples through one run, its buffer would carry sample b - 1's last spikes
into sample b's step 0; ``ResetDense`` zeroes it right before it is sent at
steps ``b*T + d`` (d the depth of the neuron it feeds), the steps at which
that neuron resets, so every sample starts with zero recurrent input, as in
the emulator. Graphs with no cycle build exactly as before.

Anything the builder cannot run exactly raises `GraphError` naming the node
and saying what to do. Numeric ranges of the CF neuron (vth, dv, ...) are
checked by its process model (the one place that defines them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable

import nir
import numpy as np

KEY_FP = "cf2neuro.fixed_point"
KEY_NEURON = "cf2neuro.neuron"
CF_NEURON = "circulate_firing"


class GraphError(ValueError):
    """The graph (or a request about it) cannot be run by the Lava runtime."""


@dataclass
class Value:
    """What a node sends downstream, as a Lava port and its layout."""

    port: object                 # a Lava OutPort (or a virtual reshape of one)
    shape: tuple[int, ...]       # IR shape per sample, (C, H, W) for images
    lava_shape: tuple[int, ...]  # the port's shape, (W, H, C) for images
    index: np.ndarray            # ir.ravel()[i] == lava.ravel()[index[i]]
    depth: int                   # pipeline depth: steps behind the input
    offset: np.ndarray | None = None  # added to recordings (a readout's bias_int)

    def to_lava(self, a: np.ndarray) -> np.ndarray:
        """A per-neuron array in IR shape -> the same values in the port's layout."""
        flat = np.empty(self.index.size, dtype=a.dtype)
        flat[self.index] = np.broadcast_to(a, self.shape).ravel()
        return flat.reshape(self.lava_shape)

    def to_ir(self, a: np.ndarray, lead: int = 1) -> np.ndarray:
        """Arrays [*lead dims, *lava_shape] -> [*lead dims, *IR shape]."""
        head = a.shape[:lead]
        return a.reshape(*head, -1)[..., self.index].reshape(*head, *self.shape)


@dataclass
class Network:
    """The built Lava network and what to read back after the run."""

    source: object                                  # the input RingBuffer
    steps: int                                      # Lava steps to run
    timesteps: int
    samples: int
    latency: int
    input_shape: tuple[int, ...]
    input_value: Value
    outputs: dict[str, Value] = field(default_factory=dict)   # result key -> value
    records: dict[str, tuple] = field(default_factory=dict)   # key -> (file, Value, count)
    reads: dict[str, tuple] = field(default_factory=dict)     # "v:NAME" -> (Read, Value, skip)
    processes: dict[str, object] = field(default_factory=dict)  # node -> Lava process
    meta: dict = field(default_factory=dict)                   # graph fixed-point metadata


@dataclass
class _Ctx:
    graph: nir.NIRGraph
    timesteps: int
    recurrent: set = field(default_factory=set)  # Denses on a back edge (ResetDense)
    values: dict = field(default_factory=dict)
    processes: dict = field(default_factory=dict)


# --- metadata ---------------------------------------------------------------

def _plain(v):
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def fixed_point(name: str, node, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """The node's ``cf2neuro.fixed_point`` metadata with exactly the known fields.

    ``depth`` (the quantizer's pipeline depth of the node) is always allowed;
    `build` checks it against its own.
    """
    optional = (*optional, "depth")
    meta = getattr(node, "metadata", None) or {}
    fp = meta.get(KEY_FP)
    kind = type(node).__name__
    if not isinstance(fp, dict):
        raise GraphError(
            f"node {name!r} ({kind}) has no {KEY_FP!r} metadata: the Lava runtime runs "
            f"quantized graphs only. Quantize the model for a target first (cf2neuro's "
            f"lava runner does this itself with --target loihi2)")
    fp = {k: (v if isinstance(v, np.ndarray) and v.ndim else _plain(v)) for k, v in fp.items()}
    missing = [k for k in required if k not in fp]
    if missing:
        raise GraphError(f"node {name!r} ({kind}): {KEY_FP!r} lacks {missing} (has "
                         f"{sorted(fp)}); see cf2neuro's docs/fixed_point.md")
    unknown = sorted(set(fp) - set(required) - set(optional))
    if unknown:
        raise GraphError(f"node {name!r} ({kind}): {KEY_FP!r} has fields {unknown} the Lava "
                         f"runtime does not implement (known: {sorted(required + optional)}); "
                         f"running without them would compute something else")
    return fp


def _int(name: str, fp: dict, key: str, lo: int | None = None, hi: int | None = None) -> int:
    v = fp[key]
    if isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise GraphError(f"node {name!r}: fixed-point field {key} must be an int, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise GraphError(f"node {name!r}: fixed-point field {key} = {v} is outside "
                         f"[{lo}, {hi}]")
    return v


def _ints(name: str, fp: dict, key: str, shape=None) -> np.ndarray:
    a = np.asarray(fp[key])
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise GraphError(f"node {name!r}: fixed-point field {key} must hold integers, got "
                         f"dtype {a.dtype}")
    a = a.astype(np.int64)
    if shape is not None:
        try:
            a = np.array(np.broadcast_to(a, tuple(shape)))
        except ValueError:
            raise GraphError(f"node {name!r}: fixed-point field {key} has shape "
                             f"{list(a.shape)}, expected {list(shape)} (or a scalar)") from None
    return a


def _pair(name: str, v, what: str) -> tuple[int, int]:
    a = np.asarray(v).astype(np.int64).ravel()
    if a.size == 1:
        a = np.array([a[0], a[0]])
    if a.size != 2:
        raise GraphError(f"node {name!r}: {what} must be an int or a pair, got {v!r}")
    return int(a[0]), int(a[1])


# --- lowerings: (name, node, input values, ctx) -> Value ----------------------

def _one_input(name: str, node, ins: list[Value]) -> Value:
    if len(ins) != 1:
        raise GraphError(f"node {name!r} ({type(node).__name__}) has {len(ins)} inputs; the "
                         f"Lava runtime sums several inputs only into neurons")
    return ins[0]


def _dense(name, node, ins, ctx) -> Value:
    from lava.proc.dense.process import Dense

    src = _one_input(name, node, ins)
    fp = fixed_point(name, node, ("weight_mant", "weight_exp", "num_message_bits"),
                     ("bias_int",))
    w = _ints(name, fp, "weight_mant")
    if w.ndim != 2 or len(src.shape) != 1 or w.shape[1] != src.shape[0]:
        raise GraphError(f"node {name!r}: weight_mant {list(w.shape)} does not map its "
                         f"{list(src.shape)} input (expected [out, {math.prod(src.shape)}]); "
                         f"a Dense takes a vector: flatten images first")
    lava_w = np.empty_like(w)
    lava_w[:, src.index] = w
    args = dict(weights=lava_w, weight_exp=_int(name, fp, "weight_exp", -31, 31),
                num_message_bits=_int(name, fp, "num_message_bits", 0, 31), name=name)
    n = w.shape[0]
    bias = _ints(name, fp, "bias_int", (n,)) if "bias_int" in fp else None
    if name in ctx.recurrent:  # on a back edge: the loop's delay, at its source's depth
        from cf2neuro_lava.procs.rdense.process import ResetDense

        if bias is not None:
            raise GraphError(f"node {name!r}: a recurrent Dense with a readout bias_int; its "
                             f"bias belongs in the neuron's bias_mant")
        proc = ResetDense(**args, reset_interval=ctx.timesteps, reset_offset=src.depth)
        depth = src.depth
    else:
        proc = Dense(**args)
        depth = src.depth + 1
    src.port.connect(proc.s_in)
    ctx.processes[name] = proc
    return Value(proc.a_out, (n,), (n,), np.arange(n), depth, bias)


def _conv_value(name, src: Value, proc, cout: int) -> Value:
    x, y, c = (int(s) for s in proc.output_shape)
    if c != cout:
        raise GraphError(f"node {name!r}: Lava's Conv gives {c} channels, expected {cout}")
    return Value(proc.a_out, (c, y, x), (x, y, c), _image_index((c, y, x)), src.depth + 1)


def _image_src(name, node, ins) -> Value:
    src = _one_input(name, node, ins)
    if len(src.shape) != 3:
        raise GraphError(f"node {name!r} ({type(node).__name__}) takes a [C, H, W] input, got "
                         f"{list(src.shape)}")
    return src


def _conv(name, node, ins, ctx) -> Value:
    from lava.proc.conv.process import Conv

    src = _image_src(name, node, ins)
    fp = fixed_point(name, node, ("weight_mant", "num_message_bits"),
                     ("stride", "padding", "dilation", "groups"))
    for key in ("stride", "padding", "dilation", "groups"):  # else the NIR node's own
        fp.setdefault(key, getattr(node, key, 1))
    w = _ints(name, fp, "weight_mant")
    groups = _int(name, fp, "groups", 1)
    c, h, wd = src.shape
    if w.ndim != 4 or w.shape[1] * groups != c or w.shape[0] % groups:
        raise GraphError(f"node {name!r}: weight_mant {list(w.shape)} (groups={groups}) does "
                         f"not fit a {list(src.shape)} input: expected [Cout, Cin/groups, kh, kw]")
    sh, sw = _pair(name, fp["stride"], "stride")
    ph, pw = _pair(name, fp["padding"], "padding")
    dh, dw = _pair(name, fp["dilation"], "dilation")
    # PyTorch cross-correlates (Cout, Cin/g, kh, kw) over (C, H, W); Lava convolves
    # (Cout, kx, ky, Cin/g) over (X, Y, C) = (W, H, C): transpose, then flip the kernel.
    lava_w = np.ascontiguousarray(np.flip(w.transpose(0, 3, 2, 1), axis=(1, 2)))
    proc = Conv(weight=lava_w, input_shape=(wd, h, c), stride=(sw, sh), padding=(pw, ph),
                dilation=(dw, dh), groups=groups,
                num_message_bits=_int(name, fp, "num_message_bits", 0, 31), name=name)
    src.port.connect(proc.s_in)
    ctx.processes[name] = proc
    return _conv_value(name, src, proc, w.shape[0])


def _sumpool(name, node, ins, ctx) -> Value:
    from lava.proc.conv.process import Conv

    src = _image_src(name, node, ins)
    fp = fixed_point(name, node, ("num_message_bits",), ("kernel", "stride", "padding"))
    kh, kw = _pair(name, fp.get("kernel", node.kernel_size), "kernel")
    sh, sw = _pair(name, fp.get("stride", node.stride), "stride")
    ph, pw = _pair(name, fp.get("padding", getattr(node, "padding", 0)), "padding")
    c, h, wd = src.shape
    ones = np.ones((c, kw, kh, 1), dtype=np.int64)
    proc = Conv(weight=ones, input_shape=(wd, h, c), stride=(sw, sh), padding=(pw, ph),
                groups=c, num_message_bits=_int(name, fp, "num_message_bits", 0, 31), name=name)
    src.port.connect(proc.s_in)
    ctx.processes[name] = proc
    return _conv_value(name, src, proc, c)


def _flatten(name, node, ins, ctx) -> Value:
    src = _one_input(name, node, ins)
    nd = len(src.shape)
    start = int(node.start_dim) % nd if nd else 0
    end = int(node.end_dim) % nd if nd else 0
    if nd > 1 and (start, end) != (0, nd - 1):
        raise GraphError(f"node {name!r}: Flatten over dims {start}..{end} of a "
                         f"{list(src.shape)} input; the Lava runtime flattens whole samples only")
    n = math.prod(src.shape)
    port = src.port if nd == 1 else src.port.reshape(new_shape=(n,))
    return Value(port, (n,), (n,), src.index.copy(), src.depth)


def _neuron(name, node, ins, ctx) -> Value:
    if not ins:
        raise GraphError(f"node {name!r} has no input")
    first = ins[0]
    for other in ins[1:]:
        _check_summable(name, first, other)
    meta = getattr(node, "metadata", None) or {}
    depth = max(v.depth for v in ins)
    make = _cf if _plain(meta.get(KEY_NEURON)) == CF_NEURON else _lif
    proc = make(name, node, first, depth, ctx)
    for v in ins:
        v.port.connect(proc.a_in)
    ctx.processes[name] = proc
    return Value(proc.s_out, first.shape, first.lava_shape, first.index, depth)


def _check_summable(name: str, a: Value, b: Value, what: str = "an input") -> None:
    """Lava sums a neuron's inputs elementwise, step by step: same layout, same depth."""
    if b.shape != a.shape or not np.array_equal(b.index, a.index):
        raise GraphError(f"node {name!r} sums inputs of different shapes or layouts: {what} "
                         f"gives {list(b.shape)}, the neuron has {list(a.shape)}")
    if b.depth != a.depth:
        raise GraphError(f"node {name!r} sums inputs that arrive after different numbers of "
                         f"Dense/Conv steps ({what}: {b.depth}, the neuron: {a.depth}); Lava "
                         f"would add values of different time steps. Balance the paths")


def _connect_recurrent(src_name: str, name: str, ctx) -> None:
    """Connect a recurrent Dense into the neuron it feeds (built before it)."""
    value, target = ctx.values[src_name], ctx.values[name]
    _check_summable(name, target, value, f"the recurrent Dense {src_name!r}")
    value.port.connect(ctx.processes[name].a_in)


def _cf(name, node, src: Value, depth: int, ctx):
    from cf2neuro_lava.procs.cf.process import CFNeuron

    fp = fixed_point(name, node, ("vth", "dv", "max_spikes", "signed"), ("bias_mant", "bias_exp"))
    fp.setdefault("bias_mant", 0)
    fp.setdefault("bias_exp", 0)
    signed = fp["signed"]
    if not isinstance(signed, (bool, np.bool_)) and signed not in (0, 1):
        raise GraphError(f"node {name!r}: fixed-point field signed must be a bool, got {signed!r}")
    per = {k: src.to_lava(_ints(name, fp, k, src.shape)) for k in ("bias_mant", "vth", "dv",
                                                                   "bias_exp")}
    return CFNeuron(shape=src.lava_shape, **per, max_spikes=_int(name, fp, "max_spikes", 1),
                    signed=bool(signed), reset_interval=ctx.timesteps,
                    reset_offset=depth, name=name)


def _lif(name, node, src: Value, depth: int, ctx):
    from lava.proc.lif.process import LIFReset

    meta = getattr(node, "metadata", None) or {}
    if _plain(meta.get("reset")) == "subtract":
        raise GraphError(f"node {name!r}: LIF with reset by subtraction; Lava's LIF resets to "
                         f"zero (only cf2neuro's CF neurons subtract)")
    fp = fixed_point(name, node, ("du", "dv", "vth"), ("bias_mant", "bias_exp"))
    fp.setdefault("bias_mant", 0)
    fp.setdefault("bias_exp", 0)
    return LIFReset(shape=src.lava_shape, du=_int(name, fp, "du", 0, 4095),
                    dv=_int(name, fp, "dv", 0, 4095), vth=_int(name, fp, "vth", 0, 2 ** 17 - 1),
                    bias_mant=src.to_lava(_ints(name, fp, "bias_mant", src.shape)),
                    bias_exp=src.to_lava(_ints(name, fp, "bias_exp", src.shape)),
                    reset_interval=ctx.timesteps,
                    # LIFReset counts steps from 1: it resets when time_step % T == offset
                    reset_offset=(depth + 1) % ctx.timesteps, name=name)


def _refuse(reason: str):
    def lower(name, node, ins, ctx):
        raise GraphError(f"node {name!r} ({type(node).__name__}): {reason}")
    return lower


LOWERINGS: dict[type, Callable] = {
    nir.Affine: _dense,
    nir.Linear: _dense,
    nir.Conv2d: _conv,
    nir.SumPool2d: _sumpool,
    nir.Flatten: _flatten,
    nir.LIF: _neuron,
    nir.IF: _neuron,
    nir.AvgPool2d: _refuse("average pooling divides; quantize it to a SumPool2d (the next "
                           "layer's weights absorb the 1/k^2)"),
    nir.CubaLIF: _neuron,
    nir.Scale: _refuse("no Lava process scales a value; fold the scale into a weight"),
}


# --- the graph --------------------------------------------------------------

def _image_index(shape: tuple[int, ...]) -> np.ndarray:
    """For a [C, H, W] value held as (W, H, C): the Lava flat index of each IR element."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(w, h, c).transpose(2, 1, 0).ravel()


NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)
DENSE = (nir.Affine, nir.Linear)


@dataclass
class _Plan:
    """The build order of a graph with its recurrent back edges cut (see `_plan`)."""

    order: list[str]                 # nodes, every forward input before its consumer
    back: set                        # IR back edges (neuron, recurrent Dense)
    recurrent: set                   # Denses on a back edge: no depth of their own
    deferred: list                   # (recurrent Dense, neuron) edges, connected last


def _check_edges(graph: nir.NIRGraph) -> None:
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise GraphError(f"edge ({src!r}, {dst!r}) names {end!r}, which is not a node "
                                 f"(nested graphs and node ports are not supported)")


def _find_cycle(graph: nir.NIRGraph, cut: set) -> list | None:
    """The edges of one cycle avoiding `cut` (closing edge last), or None.

    The same depth-first search as cf2neuro's ``Graph._find_cycle`` (Input
    nodes first as roots), so both cut the same edges."""
    succ = {n: [] for n in graph.nodes}
    for s, d in graph.edges:
        if (s, d) not in cut:
            succ[s].append(d)
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    state: dict = {}
    for root in inputs + [n for n in graph.nodes if n not in inputs]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                path = [n for n, _ in stack]
                loop = path[path.index(nxt):]
                return list(zip(loop, loop[1:])) + [(node, nxt)]
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return None


def _plan(graph: nir.NIRGraph) -> _Plan:
    """Cut every cycle where cf2neuro's IR cuts it (the last edge leaving a neuron).

    That edge must enter a Dense (Affine/Linear): Lava's Dense delivers one
    step later, which is the IR's one-step delay on a back edge, so the
    recurrent Dense sits at its source neuron's depth (it adds none). The
    recurrent Dense is built after that neuron; its own outgoing edges
    (into neurons, whose InPorts sum what arrives) are connected last.
    """
    _check_edges(graph)
    back: set = set()
    while (cycle := _find_cycle(graph, back)) is not None:
        leaving = [e for e in cycle if isinstance(graph.nodes[e[0]], NEURONS)]
        if not leaving:
            names = sorted({n for e in cycle for n in e})
            raise GraphError(f"the graph has a cycle through {names} with no neuron on it; the "
                             f"Lava runner runs loops of neuron -> Dense -> ... -> neuron only")
        edge = leaving[-1]
        if not isinstance(graph.nodes[edge[1]], DENSE):
            raise GraphError(f"the recurrent edge {edge} leaves neuron {edge[0]!r} into a "
                             f"{type(graph.nodes[edge[1]]).__name__}; the Lava runner needs a "
                             f"Dense (Affine/Linear) right after the neuron on a loop (its "
                             f"one-step delay is the loop's delay)")
        back.add(edge)
    recurrent = {d for _, d in back}
    deferred = [(s, d) for s, d in graph.edges if s in recurrent]
    for s, d in deferred:
        if not isinstance(graph.nodes[d], NEURONS):
            raise GraphError(f"the recurrent Dense {s!r} feeds {d!r} "
                             f"({type(graph.nodes[d]).__name__}); the Lava runner connects a "
                             f"recurrent Dense into neurons only (their input port sums it)")
    skip = set(deferred)
    preds = {n: [] for n in graph.nodes}
    succs = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if (src, dst) in skip:
            continue
        preds[dst].append(src)
        succs[src].append(dst)
    pending = {n: len(p) for n, p in preds.items()}
    ready = [n for n in graph.nodes if not pending[n]]
    order = []
    while ready:  # Kahn, ties by insertion order
        n = ready.pop(0)
        order.append(n)
        for s in succs[n]:
            pending[s] -= 1
            if not pending[s]:
                ready.append(s)
    if len(order) != len(graph.nodes):  # cannot happen: every cycle passes a deferred edge
        loop = sorted(n for n in graph.nodes if n not in order)
        raise GraphError(f"the graph has a cycle through {loop} the Lava runner cannot cut")
    return _Plan(order, back, recurrent, deferred)


def input_shape(graph: nir.NIRGraph) -> tuple[str, tuple[int, ...]]:
    """The one Input node's name and per-sample shape."""
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise GraphError(f"the graph needs exactly one Input node, it has {len(inputs)} "
                         f"({inputs})")
    node = graph.nodes[inputs[0]]
    shape = tuple(int(s) for s in np.asarray(next(iter(node.input_type.values()))).ravel())
    return inputs[0], shape


def parse_probes(graph: nir.NIRGraph, probes) -> tuple[list[str], list[str]]:
    """Split probes into node names ("NAME") and membranes ("v:NAME"), checking names."""
    spikes, membranes = [], []
    for p in probes:
        mem = p.startswith("v:")
        name = p[2:] if mem else p
        node = graph.nodes.get(name)
        if node is None:
            raise GraphError(f"probe {p!r}: no node named {name!r}; nodes: "
                             f"{', '.join(graph.nodes)}")
        if mem and not isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            raise GraphError(f"probe {p!r}: node {name!r} ({type(node).__name__}) has no "
                             f"membrane; 'v:' probes need a neuron node")
        (membranes if mem else spikes).append(name)
    return spikes, membranes


def build(graph: nir.NIRGraph, x: np.ndarray, probes=(), record_dir=None) -> Network:
    """Build the Lava network for integer inputs x [T, B, *input_shape] (see module doc).

    Recorders save into `record_dir` (a new temporary directory by default).
    """
    import tempfile
    from pathlib import Path

    from lava.proc.io.sink import Read
    from lava.proc.io.source import RingBuffer as Source

    from cf2neuro_lava.procs.recorder.process import Recorder

    in_name, shape = input_shape(graph)
    if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape:
        raise GraphError(f"inputs x must be [T, B, {', '.join(map(str, shape))}] (time first), "
                         f"got {list(x.shape)}")
    T, B = int(x.shape[0]), int(x.shape[1])
    if T < 1 or B < 1:
        raise GraphError(f"inputs x {list(x.shape)} hold no step or no sample")
    if x.min() < -2 ** 31 or x.max() >= 2 ** 31:
        raise GraphError(f"inputs range over [{x.min()}, {x.max()}]; Lava's input port carries "
                         f"int32 payloads")
    spike_probes, mem_probes = parse_probes(graph, probes)
    plan = _plan(graph)
    order = plan.order
    depth = _depths(graph, plan)
    latency = max(depth[n] for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    steps = B * T + max(depth.values())
    meta = _graph_meta(graph)
    if "latency" in meta and int(meta["latency"]) != latency:
        raise GraphError(f"the graph's metadata says latency {meta['latency']}, its Dense/Conv "
                         f"chain gives {latency}; the outputs would be misaligned")
    _check_input_range(x, meta)
    ctx = _Ctx(graph, T, recurrent=plan.recurrent)

    # the input: sample b step t at Lava step b*T + t, then zero steps
    in_index = _image_index(shape) if len(shape) == 3 else np.arange(math.prod(shape))
    lava_shape = (shape[2], shape[1], shape[0]) if len(shape) == 3 else shape
    stream = np.zeros((steps, math.prod(shape)), dtype=np.int64)
    flat = x.reshape(T, B, -1).transpose(1, 0, 2).reshape(B * T, -1)
    stream[:B * T, in_index] = flat
    source = Source(data=np.ascontiguousarray(stream.T.reshape(*lava_shape, steps)))
    ctx.values[in_name] = Value(source.s_out, shape, lava_shape, in_index, 0)

    outputs: dict[str, Value] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            continue
        ins = [ctx.values[s] for s, d in graph.edges if d == name and (s, d) not in
               plan.deferred]
        if isinstance(node, nir.Output):
            outputs[name] = _one_input(name, node, ins)
            continue
        lower = LOWERINGS.get(type(node))
        if lower is None:
            known = sorted(t.__name__ for t in LOWERINGS)
            raise GraphError(f"node {name!r}: the Lava runtime has no lowering for NIR "
                             f"{type(node).__name__} (it knows {known})")
        ctx.values[name] = lower(name, node, ins, ctx)
        _check_depth(name, node, ctx.values[name].depth)

    for s_name, d_name in plan.deferred:  # recurrent Dense -> neuron, summed at its a_in
        _connect_recurrent(s_name, d_name, ctx)

    for s_name, d_name in graph.edges:
        biased = ctx.values.get(s_name)
        if biased is not None and biased.offset is not None and \
                not isinstance(graph.nodes[d_name], nir.Output):
            raise GraphError(f"node {s_name!r} has a bias_int (a readout's bias, added after "
                             f"the run) but feeds {d_name!r}; a bias that drives other nodes "
                             f"belongs in the next neuron's bias_mant")
    net = Network(source, steps, T, B, latency, shape, ctx.values[in_name],
                  processes=ctx.processes, meta=meta)
    names = _output_order(graph, list(outputs))
    for k, name in enumerate(names):
        net.outputs["output" if k == 0 else name] = outputs[name]
    for name in spike_probes:
        net.outputs[name] = outputs[name] if name in outputs else ctx.values[name]
    record_dir = Path(record_dir if record_dir is not None else tempfile.mkdtemp())

    def record(key, port, value, offset, interval, count):
        path = record_dir / f"rec{len(net.records)}.npy"
        rec = Recorder(shape=value.lava_shape, path=str(path), steps=steps, offset=offset,
                       interval=interval, name=f"record {key}")
        port.connect(rec.a_in)
        net.records[key] = (path, value, count)

    for key, value in net.outputs.items():  # sample b's step t at b*T + t + depth
        record(key, value.port, value, value.depth, 1, B * T)
    for name in mem_probes:
        proc, value = ctx.processes[name], ctx.values[name]
        last = T - 1 + value.depth  # sample 0's last step at this depth
        if type(proc).__name__ == "CFNeuron":
            record("v:" + name, proc.v_out, value, last, T, B)
        else:  # Lava's LIF has no v port: a Read process copies v in its post-management
            reads = len(range(last % T, steps, T))
            reader = Read(buffer=reads, interval=T, offset=last % T)
            reader.connect_var(proc.v)
            net.reads["v:" + name] = (reader, value, last // T)
    return net


def _output_order(graph: nir.NIRGraph, names: list[str]) -> list[str]:
    """Output nodes in cf2neuro's node order (its ``cf2neuro.order`` metadata) when the file
    has it, else in the file's node order; the first one is "output"."""
    raw = _plain((graph.metadata or {}).get("cf2neuro.order"))
    order = list(graph.nodes)
    if isinstance(raw, str):
        try:
            listed = [n for n in json.loads(raw) if n in graph.nodes]
            order = listed + [n for n in order if n not in listed]
        except ValueError:
            pass
    return sorted(names, key=order.index)


def _check_input_range(x: np.ndarray, meta: dict) -> None:
    """Inputs must fit the input payload the graph was quantized for (when it says)."""
    if "input_bits" not in meta or x.size == 0:
        return
    bits, signed = int(meta["input_bits"]), bool(meta.get("input_signed", False))
    if bits == 0:
        lo, hi = 0, 1
    elif signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    if x.min() < lo or x.max() > hi:
        raise GraphError(f"inputs range over [{x.min()}, {x.max()}], outside the graph's input "
                         f"payload [{lo}, {hi}] ({bits} bits, signed={signed}); quantize them "
                         f"with the graph's input_scale and clip to that range")


def _check_depth(name: str, node, depth: int) -> None:
    fp = (getattr(node, "metadata", None) or {}).get(KEY_FP)
    if isinstance(fp, dict) and "depth" in fp and int(_plain(fp["depth"])) != depth:
        raise GraphError(f"node {name!r}: the quantizer placed it at pipeline depth "
                         f"{int(_plain(fp['depth']))}, the Lava network at {depth}; the two "
                         f"would not be aligned step for step")


def _depths(graph: nir.NIRGraph, plan: _Plan) -> dict[str, int]:
    """Pipeline depths: +1 per Dense/Conv/SumPool, none for a recurrent Dense (its delay is
    the back edge's); a recurrent Dense's consumer must sit at its depth."""
    delayed = (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d)
    depth = {}
    for name in plan.order:
        preds = [s for s, d in graph.edges if d == name and (s, d) not in plan.deferred]
        base = max((depth[p] for p in preds), default=0)
        own = isinstance(graph.nodes[name], delayed) and name not in plan.recurrent
        depth[name] = base + int(own)
    return depth


def _graph_meta(graph: nir.NIRGraph) -> dict:
    fp = (graph.metadata or {}).get(KEY_FP)
    return {k: _plain(v) for k, v in fp.items()} if isinstance(fp, dict) else {}
