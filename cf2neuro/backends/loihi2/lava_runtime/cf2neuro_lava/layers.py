"""The lowering of each NIR node to Lava processes, and the values they pass on.

`LOWERINGS` maps a NIR node type to ``fn(name, node, input values, ctx) ->
Value``; `build.py` walks the graph and calls them (its docstring has the
table of node -> process, the layouts and the timing).
"""

from __future__ import annotations

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
    bound: int | None = None     # largest |payload| it sends (None: unknown)

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
    cost: dict = field(default_factory=dict)                   # per step (see _Ctx.cost)


@dataclass
class _Ctx:
    graph: nir.NIRGraph
    timesteps: int
    recurrent: set = field(default_factory=set)  # Denses on a back edge (ResetDense)
    values: dict = field(default_factory=dict)
    processes: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)  # per step: convolve2d calls, sparse synapses


def _image_index(shape: tuple[int, ...]) -> np.ndarray:
    """For a [C, H, W] value held as (W, H, C): the Lava flat index of each IR element."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(w, h, c).transpose(2, 1, 0).ravel()


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


def _conv_value(name, src: Value, weight, groups: int, fp: dict, strides, ctx) -> Value:
    """Lava's Conv or Sparse (cf2neuro_lava.synapses) for a convolution; its output Value."""
    from .synapses import conv_synapse

    c, h, wd = src.shape
    stride, padding, dilation = strides
    proc, port, (x, y, cout), bound, kind = conv_synapse(
        name, src.port, weight, (wd, h, c), stride, padding, dilation, groups,
        _int(name, fp, "num_message_bits", 0, 31), src.bound)
    if cout != weight.shape[0]:
        raise GraphError(f"node {name!r}: Lava gives {cout} channels, expected {weight.shape[0]}")
    ctx.processes[name] = proc
    if kind == "conv":  # conv_scipy: one convolve2d per (output, input-of-its-group) channel
        key, count = "conv_calls", weight.shape[0] * weight.shape[3]
    else:
        key, count = "sparse_synapses", int(proc.weights.init.nnz)
    ctx.cost[key] = ctx.cost.get(key, 0) + count
    return Value(port, (cout, y, x), (x, y, cout), _image_index((cout, y, x)), src.depth + 1,
                 bound=bound)


def _image_src(name, node, ins) -> Value:
    src = _one_input(name, node, ins)
    if len(src.shape) != 3:
        raise GraphError(f"node {name!r} ({type(node).__name__}) takes a [C, H, W] input, got "
                         f"{list(src.shape)}")
    return src


def _conv(name, node, ins, ctx) -> Value:
    src = _image_src(name, node, ins)
    fp = fixed_point(name, node, ("weight_mant", "num_message_bits"),
                     ("stride", "padding", "dilation", "groups"))
    for key in ("stride", "padding", "dilation", "groups"):  # else the NIR node's own
        fp.setdefault(key, getattr(node, key, 1))
    w = _ints(name, fp, "weight_mant")
    groups = _int(name, fp, "groups", 1, GROUPS_MAX)  # int8 in Lava's Conv
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
    return _conv_value(name, src, lava_w, groups, fp, ((sw, sh), (pw, ph), (dw, dh)), ctx)


GROUPS_MAX = 127  # Lava's Conv keeps `groups` as int8: 128 or more wraps and computes garbage


def pooling_weights(c: int, kh: int, kw: int) -> tuple[int, np.ndarray]:
    """Sum pooling over c channels as a Lava Conv: (groups, weight (C_out, kx, ky, C_in/g)).

    One group per channel is exact only below 128 channels (int8 groups), so
    the groups are the largest divisor of c up to 127, and within a group each
    output channel sums its own input channel (a diagonal of ones). Lava runs
    c^2/groups convolve2d calls a step: c calls when c < 128.
    """
    groups = max(d for d in range(1, min(c, GROUPS_MAX) + 1) if c % d == 0)
    per = c // groups
    weight = np.zeros((c, kw, kh, per), dtype=np.int64)
    weight[np.arange(c), :, :, np.arange(c) % per] = 1
    return groups, weight


def _sumpool(name, node, ins, ctx) -> Value:
    src = _image_src(name, node, ins)
    fp = fixed_point(name, node, ("num_message_bits",), ("kernel", "stride", "padding"))
    kh, kw = _pair(name, fp.get("kernel", node.kernel_size), "kernel")
    sh, sw = _pair(name, fp.get("stride", node.stride), "stride")
    ph, pw = _pair(name, fp.get("padding", getattr(node, "padding", 0)), "padding")
    c, h, wd = src.shape
    groups, weight = pooling_weights(c, kh, kw)
    return _conv_value(name, src, weight, groups, fp, ((sw, sh), (pw, ph), (1, 1)), ctx)


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
    return Value(port, (n,), (n,), src.index.copy(), src.depth, bound=src.bound)


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
    bound = int(proc.proc_params["max_spikes"]) if make is _cf else 1  # CF: |n| <= K; LIF: 1
    return Value(proc.s_out, first.shape, first.lava_shape, first.index, depth, bound=bound)


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

    fp = fixed_point(name, node, ("vth", "dv", "max_spikes", "signed"),
                     ("bias_mant", "bias_exp", "reset", "v_min_int"))
    fp.setdefault("bias_mant", 0)
    fp.setdefault("bias_exp", 0)
    signed = fp["signed"]
    if not isinstance(signed, (bool, np.bool_)) and signed not in (0, 1):
        raise GraphError(f"node {name!r}: fixed-point field signed must be a bool, got {signed!r}")
    per = {k: src.to_lava(_ints(name, fp, k, src.shape)) for k in ("bias_mant", "vth", "dv",
                                                                   "bias_exp")}
    if "v_min_int" in fp:  # a membrane floor (Sinabs's min_v_mem)
        per["v_min"] = src.to_lava(_ints(name, fp, "v_min_int", src.shape))
    reset = fp.get("reset", "subtract")
    if reset not in ("subtract", "zero"):
        raise GraphError(f"node {name!r}: fixed-point field reset must be 'subtract' or "
                         f"'zero', got {reset!r}")
    return CFNeuron(shape=src.lava_shape, **per, max_spikes=_int(name, fp, "max_spikes", 1),
                    signed=bool(signed), reset_zero=reset == "zero",
                    reset_interval=ctx.timesteps,
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
