"""Trace a multi-step PyTorch model into the graph IR with torch.fx.

`trace_model` symbolically traces the model (CFNeuron and
SpikingSelfAttention stay leaf modules), then runs the fx graph once on a
small example input ([T=2, B=3, *input_shape], eval mode) through an
`fx.Interpreter` that lowers every fx node to IR nodes via three registries:
`MODULES` (keyed by module type), `FUNCTIONS` (keyed by function) and
`METHODS` (keyed by Tensor method name). Anything not in them is an
`UnsupportedError` naming the module or function and its source line.

The IR is per sample and per step, so the converter tracks each tensor's
*layout*: a `Value` (IR node, m, per-sample shape s) stands for a tensor of
shape (prod(full[:m]), *full[m:]) with full = (T, B, *s). m = 1 is
multi-step [T, B, *s]; SeqToANN's `flatten(0, 1)` makes m = 2 ([T·B, *s]),
Tokenwise's `flatten(0, 2)` m = 3, and `unflatten(0, ...)` undoes it. Those
reshapes produce no IR node. After every node, the real tensor's shape is
checked against the layout, so a reshape the converter misreads fails loudly.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from ..errors import UnsupportedError
from ..nn.models.spikformer import SpikingSelfAttention
from ..nn.neuron import CFNeuron
from .graph import Graph
from .ops import OPS

LEAVES: tuple[type, ...] = (CFNeuron, SpikingSelfAttention)
"""Modules kept whole by the tracer (besides torch.nn's own modules)."""

_T, _B = 2, 3  # example window: distinct, so a swapped unflatten is caught


@dataclass(frozen=True)
class Value:
    node: str                # IR node holding this tensor's values
    m: int                   # leading dims of (T, B, *s) merged into tensor dim 0
    s: tuple[int, ...]       # per-sample shape

    def tensor_shape(self) -> tuple[int, ...]:
        full = (_T, _B, *self.s)
        return (math.prod(full[:self.m]), *full[self.m:])

    def axis(self, dim: int, ndim: int) -> int:
        """Per-sample axis of tensor dim `dim` (negative: it touches T or B)."""
        return self.m + (dim % ndim) - 3


class _Tracer(fx.Tracer):
    def __init__(self):
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def source_line(n: fx.Node) -> str:
    """'file:line: code' of the user frame that made fx node n ('' if unknown)."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in \w+\n\s*(.*)', n.stack_trace or "")
    user = [f for f in frames if "/torch/" not in f[0].replace("\\", "/")]
    return f"{user[-1][0]}:{user[-1][1]}: {user[-1][2].strip()}" if user else ""


class _Converter(fx.Interpreter):
    """Runs the fx graph on real tensors and lowers each node to IR alongside."""

    def __init__(self, gm: fx.GraphModule, graph: Graph, root: nn.Module):
        super().__init__(gm)
        self.root = root  # the user's model: class names survive only there
        self.ir = graph
        self.values: dict[fx.Node, Value] = {}
        self.fx_node: fx.Node | None = None
        self.extra_traceback = False  # our messages already say where

    # --- helpers for the registry functions -------------------------------
    def where(self) -> str:
        n = self.fx_node
        what = (f"module {n.target!r} ({type(self.root.get_submodule(n.target)).__name__})"
                if n.op == "call_module" else f"{n.op} {getattr(n.target, '__name__', n.target)}")
        line = source_line(n)
        return what + (f" at {line}" if line else "")

    def fail(self, why: str):
        raise UnsupportedError(f"cannot trace {self.where()}: {why}")

    def value(self, arg) -> Value:
        if isinstance(arg, fx.Node) and arg in self.values:
            return self.values[arg]
        self.fail(f"argument {arg!r} is not a traced tensor")

    def emit(self, op: str, inputs: list[Value], params=None, attrs=None, m=None) -> Value:
        """Add an IR node fed by `inputs`; returns its Value (layout m of input 0)."""
        n = self.fx_node
        owner = n.target if n.op == "call_module" else ".".join(
            [*list(n.meta.get("nn_module_stack", {}))[-1:], n.name])
        params = {k: v.detach().cpu().numpy().copy() if torch.is_tensor(v) else np.asarray(v)
                  for k, v in (params or {}).items()}
        meta = {"module": owner, "source": source_line(n)}
        if n.op == "call_module":
            meta["class"] = type(self.root.get_submodule(n.target)).__name__
        node = self.ir.add_node(self.ir.unique_name(owner), op, [v.node for v in inputs],
                                   params, attrs, meta)
        try:
            node.shape = tuple(OPS[op].infer(node, [self.ir[v.node].shape for v in inputs]))
        except (ValueError, KeyError, TypeError) as e:
            self.fail(f"the {op} node it maps to is invalid: {e}")
        return Value(node.name, inputs[0].m if m is None else m, node.shape)

    # --- the interpreter hook ---------------------------------------------
    def run_node(self, n: fx.Node):
        self.fx_node = n
        result = super().run_node(n)
        if n.op == "placeholder":
            v = Value(self.ir.add_node(n.name, "Input", attrs={
                "shape": list(result.shape[2:])}).name, 1, tuple(result.shape[2:]))
            self.ir[v.node].shape = v.s
        elif n.op == "output":
            outs = n.args[0] if isinstance(n.args[0], (tuple, list)) else [n.args[0]]
            for i, a in enumerate(outs):
                v = self.value(a)
                if v.m != 1:
                    self.fail("the model's output is not multi-step [T, B, ...]")
                name = "output" if len(outs) == 1 else f"output_{i}"
                self.ir.add_node(self.ir.unique_name(name), "Output", [v.node])
            return result
        elif n.op == "get_attr":
            owner, _, attr = n.target.rpartition(".")
            cls = type(self.root.get_submodule(owner)).__name__
            raise UnsupportedError(
                f"cannot trace module {owner or '<root>'!r} ({cls}): it reads its tensor "
                f"{attr!r} in its own forward; the IR knows only the modules registered in "
                f"cf2neuro.ir.trace.MODULES (by exact type) and their parts")
        else:
            v = self.lower(n, result)
        if v is not None:
            if not torch.is_tensor(result) or tuple(result.shape) != v.tensor_shape():
                got = tuple(result.shape) if torch.is_tensor(result) else type(result).__name__
                self.fail(f"the IR reads its result as {v.tensor_shape()} (T={_T}, B={_B}, "
                          f"per-sample {list(v.s)}) but PyTorch gives {got}; this layout "
                          f"change is not supported")
            self.values[n] = v
        elif torch.is_tensor(result):
            self.fail("it produces a tensor the IR cannot represent")
        return result

    def lower(self, n: fx.Node, result):
        if n.op == "call_module":
            mod = self.module.get_submodule(n.target)
            fn, key = MODULES.get(type(mod)), mod
        elif n.op == "call_method":
            fn, key = METHODS.get(n.target), n.target
        else:
            fn, key = FUNCTIONS.get(n.target), n.target
        if fn is None:
            self.fail("no IR lowering is registered for it; register one in "
                      "cf2neuro.ir.trace.MODULES/FUNCTIONS/METHODS or rewrite it with "
                      "supported layers")
        return fn(self, key, *n.args, **n.kwargs)


def trace_model(model: nn.Module, input_shape=None, dt: float | None = None) -> Graph:
    """Trace a multi-step model ([T, B, *input_shape] -> [T, B, ...]) into an IR Graph.

    input_shape defaults to `model.config["input_shape"]` (zoo models). The
    trace runs in eval mode (running BN statistics, dropout off) and puts the
    model's training flag back afterwards. `dt` (seconds), when given, is
    stored in `graph.meta["dt"]`.
    """
    cfg = getattr(model, "config", None)
    cfg = cfg if isinstance(cfg, dict) else {}
    shape = input_shape if input_shape is not None else cfg.get("input_shape")
    if shape is None:
        raise UnsupportedError(f"trace_model needs input_shape for {type(model).__name__} "
                               f"(per sample, without T and B, e.g. [1, 8, 8])")
    meta = {"source": type(model).__name__}
    meta.update({k: cfg[k] for k in ("name", "timesteps") if k in cfg})
    if dt is not None:
        meta["dt"] = float(dt)
    training = model.training
    model.eval()
    try:
        gm = fx.GraphModule(model, _Tracer().trace(model))
        graph = Graph(meta)
        p = next(model.parameters(), None)
        x = torch.rand(_T, _B, *shape, dtype=p.dtype if p is not None else torch.float32,
                       device=p.device if p is not None else "cpu")
        with torch.no_grad():
            _Converter(gm, graph, model).run(x)
    finally:
        model.train(training)
    return graph.validate()


# --- lowering registries: fn(converter, key, *fx_args, **fx_kwargs) -> Value | None
# (None: the result is not a tensor, e.g. x.shape). Add entries for new layers.
Rule = Callable[..., "Value | None"]


def _linear(c: _Converter, mod: nn.Linear, x):
    x = c.value(x)
    if x.axis(-1, len(x.tensor_shape())) < 0:
        c.fail("Linear would act on the time or batch dim")
    return c.emit("Linear", [x], {"weight": mod.weight, **_bias(mod)})


def _bias(mod) -> dict:
    return {} if mod.bias is None else {"bias": mod.bias}


def _per_image(c: _Converter, x) -> Value:
    x = c.value(x)
    if x.m != 2 or len(x.s) != 3:
        c.fail(f"2d layers must see images [T·B, C, H, W] (wrap them in SeqToANN); got a "
               f"tensor of shape {x.tensor_shape()}")
    return x


def _conv2d(c: _Converter, mod: nn.Conv2d, x):
    if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        c.fail(f"padding {mod.padding!r} / padding_mode {mod.padding_mode!r}: only explicit "
               f"zero padding is supported")
    return c.emit("Conv2d", [_per_image(c, x)], {"weight": mod.weight, **_bias(mod)}, {
        "stride": list(mod.stride), "padding": list(mod.padding),
        "dilation": list(mod.dilation), "groups": mod.groups})


def _batchnorm(c: _Converter, mod: nn.modules.batchnorm._BatchNorm, x):
    x = c.value(x)
    if mod.running_mean is None:
        c.fail("BatchNorm without running statistics (track_running_stats=False)")
    axis = x.axis(1, len(x.tensor_shape()))
    if axis < 0:
        c.fail("BatchNorm's channel dim is the time or batch dim")
    ones = torch.ones_like(mod.running_mean)
    return c.emit("BatchNorm", [x], {
        "mean": mod.running_mean, "var": mod.running_var,
        "weight": mod.weight if mod.affine else ones,
        "bias": mod.bias if mod.affine else ones * 0}, {"eps": float(mod.eps), "axis": axis})


def _pool(op: str):
    def rule(c: _Converter, mod, x):
        if getattr(mod, "ceil_mode", False) or getattr(mod, "divisor_override", None) or \
                getattr(mod, "dilation", 1) not in (1, (1, 1)):
            c.fail("ceil_mode, divisor_override and dilation are not supported")
        pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
        attrs = {"kernel": pair(mod.kernel_size), "stride": pair(mod.stride or mod.kernel_size),
                 "padding": pair(mod.padding)}
        if op == "AvgPool2d":
            attrs["count_include_pad"] = bool(mod.count_include_pad)
        return c.emit(op, [_per_image(c, x)], attrs=attrs)
    return rule


def _flatten_module(c: _Converter, mod: nn.Flatten, x):
    return _flatten(c, None, x, mod.start_dim, mod.end_dim)


def _flatten(c: _Converter, _key, x, start_dim=0, end_dim=-1):
    x = c.value(x)
    nd = len(x.tensor_shape())
    a, b = start_dim % nd, end_dim % nd
    if a == 0:  # merging leading dims into the batch: a layout change only
        return Value(x.node, x.m + b, x.s)
    if x.axis(a, nd) < 0:
        c.fail("flatten would merge the batch dim into the sample")
    return c.emit("Flatten", [x], attrs={"start_dim": x.axis(a, nd), "end_dim": x.axis(b, nd)})


def _unflatten(c: _Converter, _key, x, dim, sizes):
    x = c.value(x)
    if dim != 0 or x.m - len(sizes) + 1 < 1:
        c.fail("only unflatten(0, ...) that undoes a flatten(0, k) is supported")
    return Value(x.node, x.m - len(sizes) + 1, x.s)


def _transpose(c: _Converter, _key, x, d0, d1):
    x = c.value(x)
    nd = len(x.tensor_shape())
    perm = list(range(len(x.s)))
    a, b = x.axis(d0, nd), x.axis(d1, nd)
    if min(a, b) < 0:
        c.fail("transpose would move the time or batch dim")
    perm[a], perm[b] = perm[b], perm[a]
    return c.emit("Permute", [x], attrs={"perm": perm})


def _mean(c: _Converter, _key, x, dim=None, keepdim=False, **kw):
    x = c.value(x)
    nd = len(x.tensor_shape())
    dims = [dim] if isinstance(dim, int) else list(dim or [])
    axes = [x.axis(d, nd) for d in dims]
    if keepdim or kw or not axes or min(axes) < 0:
        c.fail("only mean over per-sample dims, keepdim=False, no dtype, is supported")
    return c.emit("Mean", [x], attrs={"dims": axes})


def _add(c: _Converter, _key, a, b, **kw):
    if kw or not all(isinstance(t, fx.Node) and t in c.values for t in (a, b)):
        c.fail("only the sum of two traced tensors is supported (no constants, no alpha)")
    a, b = c.value(a), c.value(b)
    if (a.m, a.s) != (b.m, b.s):
        c.fail(f"the operands' layouts differ: {a.tensor_shape()} vs {b.tensor_shape()}")
    return c.emit("Add", [a, b])


def _mul(div: bool):
    def rule(c: _Converter, _key, a, b):
        if isinstance(a, (int, float)) and not div:
            a, b = b, a
        if not isinstance(b, (int, float)) or isinstance(b, bool):
            c.fail("only multiplying or dividing by a Python number is supported")
        x = c.value(a)
        gain = np.asarray(1.0 / b if div else b, dtype=np.float32)
        return c.emit("Scale", [x], {"scale": gain})
    return rule


def _shape_only(c: _Converter, key, x, *args):
    if key in (getattr, "size") and (key == "size" or args == ("shape",)):
        return None
    if key is operator.getitem and not (isinstance(x, fx.Node) and x in c.values):
        return None  # indexing a shape tuple
    c.fail("indexing or attributes of tensors other than .shape/.size() are not supported")


def _identity(c: _Converter, _mod, x):
    return c.emit("Identity", [c.value(x)])


def _cf(c: _Converter, mod: CFNeuron, x):
    x = c.value(x)
    if x.m != 1:
        c.fail("a CFNeuron must see multi-step input [T, B, ...]")
    theta = mod.threshold.clamp(min=1e-3) if mod.config.learn_threshold else mod.threshold
    p = mod.params  # α (the surrogate) is training-only: not part of the IR
    return c.emit("CFNeuron", [x], attrs={"threshold": float(theta), "beta": float(p.beta),
                                          "max_spikes": int(p.max_spikes),
                                          "signed": bool(p.signed), "reset": p.reset})


def _attention(c: _Converter, mod: SpikingSelfAttention, q, k, v):
    qkv = [c.value(t) for t in (q, k, v)]
    if any(t.m != 1 or len(t.s) != 2 for t in qkv):
        c.fail("attention takes multi-step tokens [T, B, N, D] as Q, K, V")
    return c.emit("Attention", qkv, attrs={"heads": int(mod.heads), "scale": float(mod.scale)})


MODULES: dict[type, Rule] = {
    nn.Linear: _linear, nn.Conv2d: _conv2d, nn.BatchNorm1d: _batchnorm,
    nn.BatchNorm2d: _batchnorm, nn.AvgPool2d: _pool("AvgPool2d"),
    nn.MaxPool2d: _pool("MaxPool2d"), nn.Flatten: _flatten_module, nn.Identity: _identity,
    nn.Dropout: _identity,  # traced in eval mode: dropout is the identity
    CFNeuron: _cf, SpikingSelfAttention: _attention,
}
FUNCTIONS: dict[Callable, Rule] = {
    operator.add: _add, torch.add: _add, operator.mul: _mul(False), torch.mul: _mul(False),
    operator.truediv: _mul(True), torch.flatten: _flatten, torch.transpose: _transpose,
    torch.mean: _mean, getattr: _shape_only, operator.getitem: _shape_only,
}
METHODS: dict[str, Rule] = {
    "flatten": _flatten, "unflatten": _unflatten, "transpose": _transpose, "mean": _mean,
    "add": _add, "mul": _mul(False), "size": _shape_only,
}
