"""Op specs of the graph IR: inputs, parameter and attribute names, shape inference.

One `OpSpec` per op in the registry `OPS` (keyed by op name). A spec says how
many inputs the op takes, which parameters (numpy arrays) it requires or
accepts, its attributes with defaults (`REQUIRED` marks those without one),
whether it carries state over time steps, and how it infers its output shape
from its input shapes. Shapes are per sample and per step (no T, no B).

`infer` functions raise `ValueError` with a short message; `Graph` wraps it
into an `IRError` that names the node. See `graph.py` for the meaning of
every op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

Shape = tuple[int, ...]
REQUIRED = object()  # attribute without a default
RESETS = ("zero", "subtract")  # reset modes of LIF, IF, CubaLIF


@dataclass(frozen=True)
class OpSpec:
    name: str
    infer: Callable[[Any, list[Shape]], Shape]   # (node, input shapes) -> output shape
    inputs: tuple[int, int | None] = (1, 1)      # (min, max); max None = unbounded
    params: tuple[str, ...] = ()                 # required numpy parameters
    optional: tuple[str, ...] = ()               # optional numpy parameters
    integer: tuple[str, ...] = ()                # integer arrays a quantized node may carry
    attrs: dict[str, Any] = field(default_factory=dict)  # name -> default or REQUIRED
    stateful: bool = False                       # keeps state from step to step
    doc: str = ""


OPS: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    """Add (or replace) an op; later stages may register their own ops."""
    OPS[spec.name] = spec
    return spec


def _pair(v, what: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return tuple(v)
    raise ValueError(f"{what} must be an int or a pair of ints, got {v!r}")


def _same(node, shapes: list[Shape]) -> Shape:
    return shapes[0]


def _broadcasts(node, shape: Shape, names) -> None:
    """Per-neuron parameters must broadcast to the node's shape (scalars do)."""
    for name in names:
        p = node.params.get(name)
        if p is not None and np.broadcast_shapes(p.shape, shape) != tuple(shape):
            raise ValueError(f"parameter {name} of shape {list(p.shape)} does not "
                             f"broadcast to the input shape {list(shape)}")


def _input(node, shapes):
    shape = node.attrs.get("shape")
    if (not isinstance(shape, (list, tuple)) or
            not all(isinstance(s, int) and s > 0 for s in shape)):
        raise ValueError(f"attribute shape must be a list of positive ints, got {shape!r}")
    return tuple(shape)


def _linear(node, shapes):
    (s,) = shapes
    w = node.params["weight"]
    if w.ndim != 2:
        raise ValueError(f"weight must be [out, in], got shape {list(w.shape)}")
    if not s or s[-1] != w.shape[1]:
        raise ValueError(f"input shape {list(s)} does not end in the weight's "
                         f"in-features {w.shape[1]}")
    b = node.params.get("bias")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias shape {list(b.shape)} != [out] = [{w.shape[0]}]")
    return (*s[:-1], w.shape[0])


def _conv2d(node, shapes):
    (s,) = shapes
    w = node.params["weight"]
    a = node.attrs
    g = a["groups"]
    if len(s) != 3:
        raise ValueError(f"Conv2d takes [C, H, W] input, got {list(s)}")
    if w.ndim != 4 or s[0] != w.shape[1] * g or w.shape[0] % g:
        raise ValueError(f"weight {list(w.shape)} (groups={g}) does not fit "
                         f"input channels {s[0]}: expected [Cout, Cin/groups, kh, kw]")
    b = node.params.get("bias")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"bias shape {list(b.shape)} != [Cout] = [{w.shape[0]}]")
    out = [w.shape[0]]
    for i, (n, k) in enumerate(zip(s[1:], w.shape[2:])):
        st, p, d = (_pair(a[x], x)[i] for x in ("stride", "padding", "dilation"))
        out.append((n + 2 * p - d * (k - 1) - 1) // st + 1)
    if min(out[1:]) < 1:
        raise ValueError(f"input {list(s)} is too small for kernel {list(w.shape[2:])}")
    return tuple(out)


def _batchnorm(node, shapes):
    (s,) = shapes
    ax = node.attrs["axis"]
    if not (isinstance(ax, int) and 0 <= ax < len(s)):
        raise ValueError(f"axis {ax!r} is not a dimension of the input shape {list(s)}")
    for p in ("mean", "var", "weight", "bias"):
        if node.params[p].shape != (s[ax],):
            raise ValueError(f"parameter {p} has shape {list(node.params[p].shape)}, "
                             f"expected [{s[ax]}] (the channels of axis {ax})")
    return s


def _pool(node, shapes):
    (s,) = shapes
    if len(s) != 3:
        raise ValueError(f"pooling takes [C, H, W] input, got {list(s)}")
    k, st, p = (_pair(node.attrs[x], x) for x in ("kernel", "stride", "padding"))
    out = (s[0], *((n + 2 * p[i] - k[i]) // st[i] + 1 for i, n in enumerate(s[1:])))
    if min(out[1:]) < 1:
        raise ValueError(f"input {list(s)} is too small for kernel {list(k)}")
    return out


def _flatten(node, shapes):
    (s,) = shapes
    a, b = node.attrs["start_dim"], node.attrs["end_dim"]
    a, b = a % len(s), b % len(s)
    if a > b:
        raise ValueError(f"start_dim {a} is after end_dim {b} for input {list(s)}")
    return (*s[:a], math.prod(s[a:b + 1]), *s[b + 1:])


def _permute(node, shapes):
    (s,) = shapes
    perm = node.attrs["perm"]
    if sorted(perm) != list(range(len(s))):
        raise ValueError(f"perm {perm!r} is not a permutation of the {len(s)} input dims")
    return tuple(s[i] for i in perm)


def _mean(node, shapes):
    (s,) = shapes
    dims = sorted(d % len(s) for d in node.attrs["dims"])
    if len(set(dims)) != len(dims) or len(dims) == len(s):
        raise ValueError(f"dims {node.attrs['dims']!r} must be distinct and leave one dim "
                         f"of input {list(s)}")
    return tuple(n for i, n in enumerate(s) if i not in dims)


def _add(node, shapes):
    if any(x != shapes[0] for x in shapes):
        raise ValueError(f"inputs have different shapes {[list(x) for x in shapes]}")
    return shapes[0]


def _scale(node, shapes):
    _broadcasts(node, shapes[0], ["scale"])
    return shapes[0]


def _threshold(node, shapes):
    _broadcasts(node, shapes[0], ["threshold"])
    return shapes[0]


def _delay(node, shapes):
    steps = node.attrs["steps"]
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    return shapes[0]


def _attention(node, shapes):
    if any(x != shapes[0] for x in shapes) or len(shapes[0]) != 2:
        raise ValueError(f"Q, K, V must share one [tokens, dim] shape, got "
                         f"{[list(x) for x in shapes]}")
    if shapes[0][1] % node.attrs["heads"]:
        raise ValueError(f"dim {shapes[0][1]} is not a multiple of heads={node.attrs['heads']}")
    return shapes[0]


def _neuron(*names):
    def infer(node, shapes):
        if node.attrs.get("reset", "zero") not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {node.attrs['reset']!r}")
        _broadcasts(node, shapes[0], names)
        return shapes[0]
    return infer


def _cf(node, shapes):
    a = node.attrs
    if not a["threshold"] > 0 or not 0 < a["beta"] <= 1:
        raise ValueError(f"needs threshold > 0 and beta in (0, 1], got "
                         f"threshold={a['threshold']}, beta={a['beta']}")
    if not isinstance(a["max_spikes"], int) or a["max_spikes"] < 1:
        raise ValueError(f"max_spikes must be an int >= 1, got {a['max_spikes']!r}")
    return _neuron("threshold", "beta", "v_min")(node, shapes)


_LIF = ("tau", "r", "v_leak", "v_threshold")
_BIAS = ("bias_mant",)  # a quantized neuron's bias mantissa
_CONV = {"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1}
_POOL = {"kernel": REQUIRED, "stride": REQUIRED, "padding": [0, 0]}

for _spec in [
    OpSpec("Input", _input, (0, 0), attrs={"shape": REQUIRED}),
    OpSpec("Output", _same),
    OpSpec("Identity", _same),
    OpSpec("Linear", _linear, params=("weight",), optional=("bias",),
           integer=("weight_mant", "bias_int")),
    OpSpec("Conv2d", _conv2d, params=("weight",), optional=("bias",), attrs=dict(_CONV),
           integer=("weight_mant",)),
    OpSpec("BatchNorm", _batchnorm, params=("mean", "var", "weight", "bias"),
           attrs={"eps": 1e-5, "axis": 0}),
    OpSpec("AvgPool2d", _pool, attrs={**_POOL, "count_include_pad": True}),
    OpSpec("SumPool2d", _pool, attrs=dict(_POOL)),
    OpSpec("MaxPool2d", _pool, attrs=dict(_POOL)),
    OpSpec("Flatten", _flatten, attrs={"start_dim": 0, "end_dim": -1}),
    OpSpec("Permute", _permute, attrs={"perm": REQUIRED}),
    OpSpec("Mean", _mean, attrs={"dims": REQUIRED}),
    OpSpec("Add", _add, (2, None)),
    OpSpec("Scale", _scale, params=("scale",)),
    OpSpec("Threshold", _threshold, params=("threshold",),
           doc="NIR's Threshold, stateless: 1 where x > threshold (strict), else 0"),
    OpSpec("Delay", _delay, attrs={"steps": REQUIRED}, stateful=True,
           doc="NIR's Delay, in steps: the input of `steps` steps ago (zeros before)"),
    OpSpec("Attention", _attention, (3, 3), attrs={"heads": REQUIRED, "scale": REQUIRED}),
    OpSpec("CFNeuron", _cf, optional=("threshold", "beta", "v_min"), stateful=True,
           integer=_BIAS + ("v_min_int",),
           attrs={"threshold": 1.0, "beta": 0.5, "max_spikes": 1, "signed": True,
                  "reset": "subtract"}),
    OpSpec("LIF", _neuron(*_LIF, "v_reset"), params=_LIF, optional=("v_reset",), integer=_BIAS,
           attrs={"reset": "zero"}, stateful=True),
    OpSpec("IF", _neuron("r", "v_threshold", "v_reset"), params=("r", "v_threshold"),
           optional=("v_reset",), attrs={"reset": "zero"}, stateful=True, integer=_BIAS),
    OpSpec("LI", _neuron("tau", "r", "v_leak"), params=("tau", "r", "v_leak"), stateful=True),
    OpSpec("CubaLIF", _neuron("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset",
                              "w_in"),
           params=("tau_syn", "tau_mem", "r", "v_leak", "v_threshold"),
           optional=("v_reset", "w_in"), attrs={"reset": "zero"}, stateful=True,
           integer=_BIAS),
]:
    register_op(_spec)
