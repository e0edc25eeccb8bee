"""Number formats of the engine: the per-op math behind one graph walker.

A numerics object turns each IR node into a *kernel* once, before any step
runs (`kernel(node, graph)`), with its parameters already converted:

- a stateless kernel is a callable ``f(*inputs) -> out`` on tensors with ONE
  leading batch dim (``[N, *shape]``). It must not care what N is: the
  engine may fold T into it;
- a stateful kernel is a `Stateful(step, membrane)`:
  ``step(state, *inputs) -> (out, state)`` for one time step, state None at
  t = 0 (a kernel makes its zeros from the first input), and
  ``membrane(state) -> v`` for "v:" probes.

`FloatNumerics` is the float reference. Its per-op methods are looked up
through the registry `KERNELS` (op -> method name), so a subclass overrides
single ops and a new number format (fixed point) is another class with the
same methods; the engine does not change. The CF step is
`cf2neuro.dynamics.cf_step`, the function the training module mirrors.
"""

from __future__ import annotations

import functools
import operator
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedError
from ..dynamics import CFParameters, cf_step, spiking_attention
from .graph import Graph, IRError, Node


class Stateful(NamedTuple):
    step: Callable      # (state, *inputs) -> (out, state)
    membrane: Callable  # state -> membrane potential [N, *shape]


class FloatNumerics:
    """Float32 (or float64) math in torch, on any device."""

    name = "float"
    time_batched = True  # stateless kernels accept T folded into the batch
    KERNELS = {
        "Identity": "identity", "Output": "identity", "Linear": "linear", "Conv2d": "conv2d",
        "BatchNorm": "batchnorm", "AvgPool2d": "avgpool2d", "SumPool2d": "sumpool2d",
        "MaxPool2d": "maxpool2d", "Flatten": "flatten", "Permute": "permute", "Mean": "mean",
        "Add": "add", "Scale": "scale", "Threshold": "threshold", "Attention": "attention",
        "Delay": "delay",
        "CFNeuron": "cf_neuron", "LIF": "lif", "IF": "if_neuron", "LI": "li", "CubaLIF": "cuba_lif",
    }

    def __init__(self, dtype: torch.dtype = torch.float32, device=None):
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def kernel(self, node: Node, graph: Graph):
        method = self.KERNELS.get(node.op)
        if method is None:
            raise UnsupportedError(f"{node.where()}: the {self.name} numerics have no kernel "
                                   f"for op {node.op}; known: {sorted(self.KERNELS)}")
        return getattr(self, method)(node, graph)

    def prepare_input(self, x) -> torch.Tensor:
        """An input window as this format's tensor."""
        x = torch.as_tensor(x)
        return x.to(device=self.device, dtype=self.dtype)

    def tensor(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a)).to(device=self.device, dtype=self.dtype)

    def param(self, node: Node, name: str, default=None):
        if name in node.params:
            return self.tensor(node.params[name])
        return None if default is None else self.tensor(default)

    # --- stateless ops -------------------------------------------------------
    def identity(self, node, graph):
        return lambda x: x

    def linear(self, node, graph):
        w, b = self.param(node, "weight"), self.param(node, "bias")
        return lambda x: F.linear(x, w, b)

    def conv2d(self, node, graph):
        w, b, a = self.param(node, "weight"), self.param(node, "bias"), node.attrs
        kw = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                  groups=a["groups"])
        return lambda x: F.conv2d(x, w, b, **kw)

    def batchnorm(self, node, graph):
        mean, var, w, b = (self.param(node, k) for k in ("mean", "var", "weight", "bias"))
        eps, axis, last = node.attrs["eps"], node.attrs["axis"], len(node.shape) - 1

        def bn(x):
            if axis == last and axis > 0:  # features last (tokens): as BatchNorm1d on [N·L, C]
                return F.batch_norm(x.reshape(-1, x.shape[-1]), mean, var, w, b, False, 0.0,
                                    eps).reshape(x.shape)
            y = F.batch_norm(x.movedim(axis + 1, 1), mean, var, w, b, False, 0.0, eps)
            return y.movedim(1, axis + 1)
        return bn

    def _pool_args(self, node):
        a = node.attrs
        return dict(kernel_size=a["kernel"], stride=a["stride"], padding=a["padding"])

    def avgpool2d(self, node, graph):
        kw = self._pool_args(node)
        cip = node.attrs["count_include_pad"]
        return lambda x: F.avg_pool2d(x, count_include_pad=cip, **kw)

    def sumpool2d(self, node, graph):
        # a grouped Conv of ones (as Lava computes it): exact sums, and torch's ONNX exporter
        # keeps it, where it drops avg_pool2d's divisor_override and would average
        a, c = node.attrs, graph[node.inputs[0]].shape[0]
        k = [a["kernel"]] * 2 if isinstance(a["kernel"], int) else list(a["kernel"])
        ones = torch.ones((c, 1, *k), dtype=self.dtype, device=self.device)
        return lambda x: F.conv2d(x, ones, None, stride=a["stride"], padding=a["padding"],
                                  groups=c)

    def maxpool2d(self, node, graph):
        kw = self._pool_args(node)
        return lambda x: F.max_pool2d(x, **kw)

    def flatten(self, node, graph):
        nd = len(graph[node.inputs[0]].shape)
        a, b = node.attrs["start_dim"] % nd + 1, node.attrs["end_dim"] % nd + 1
        return lambda x: x.flatten(a, b)

    def permute(self, node, graph):
        perm = [0, *(p + 1 for p in node.attrs["perm"])]
        return lambda x: x.permute(perm)

    def mean(self, node, graph):
        nd = len(graph[node.inputs[0]].shape)
        dims = [d % nd + 1 for d in node.attrs["dims"]]
        return lambda x: x.mean(dims)

    def add(self, node, graph):
        if len(node.inputs) == 2:
            return operator.add
        return lambda *xs: functools.reduce(operator.add, xs)

    def scale(self, node, graph):
        s = self.param(node, "scale")
        return lambda x: x * s

    def threshold(self, node, graph):
        thr = self.param(node, "threshold")
        return lambda x: (x > thr).to(x.dtype)  # a Heaviside step per step, no state

    def delay(self, node, graph):
        steps = int(node.attrs["steps"])

        def step(buffer, x):  # buffer: the last `steps` inputs, oldest first
            buffer = [torch.zeros_like(x)] * steps if buffer is None else buffer
            return buffer[0], buffer[1:] + [x]
        return Stateful(step, lambda buffer: buffer[-1])

    def attention(self, node, graph):
        heads, scale = node.attrs["heads"], node.attrs["scale"]
        return lambda q, k, v: spiking_attention(q, k, v, heads, scale)  # the model's own math

    # --- neurons -------------------------------------------------------------
    def cf_neuron(self, node, graph):
        a = node.attrs
        theta = self.param(node, "threshold", np.float32(a["threshold"]))
        beta = self.param(node, "beta") if "beta" in node.params else float(a["beta"])
        p = CFParameters(beta, int(a["max_spikes"]), bool(a["signed"]),
                         reset=a.get("reset", "subtract"))
        v_min = self.param(node, "v_min") if "v_min" in node.params else None

        def step(v, x):
            n, v, _ = cf_step(torch.zeros_like(x) if v is None else v, x, theta, p, v_min)
            return n, v
        return Stateful(step, lambda v: v)

    def _dt(self, node, graph) -> float:
        dt = graph.meta.get("dt")
        if not isinstance(dt, (int, float)) or not dt > 0:
            raise IRError(f"{node.where()} is a continuous-time neuron but the graph's "
                          f"meta has no dt > 0 (got {dt!r}); set graph.meta['dt'] (seconds)")
        return float(dt)

    def _fire(self, node):
        """Spike and reset after the charge: z = v > v_threshold (strict)."""
        thr = self.param(node, "v_threshold")
        v_reset = self.param(node, "v_reset", np.zeros((), np.float32))
        if node.attrs["reset"] == "subtract":
            def fire(v):
                z = (v > thr).to(v.dtype)
                return z, v - z * thr
        else:
            def fire(v):
                z = v > thr
                return z.to(v.dtype), torch.where(z, v_reset, v)
        return fire

    def lif(self, node, graph):
        a = self._dt(node, graph) / self.param(node, "tau")
        r, leak, fire = self.param(node, "r"), self.param(node, "v_leak"), self._fire(node)

        def step(v, x):
            v = torch.zeros_like(x) if v is None else v
            return fire(v + a * (leak - v) + a * r * x)
        return Stateful(step, lambda v: v)

    def if_neuron(self, node, graph):
        r, fire = self.param(node, "r"), self._fire(node)

        def step(v, x):
            return fire((0 if v is None else v) + r * x)
        return Stateful(step, lambda v: v)

    def li(self, node, graph):
        a = self._dt(node, graph) / self.param(node, "tau")
        r, leak = self.param(node, "r"), self.param(node, "v_leak")

        def step(v, x):
            v = torch.zeros_like(x) if v is None else v
            v = v + a * (leak - v) + a * r * x
            return v, v
        return Stateful(step, lambda v: v)

    def cuba_lif(self, node, graph):
        dt = self._dt(node, graph)
        a_syn, a_mem = dt / self.param(node, "tau_syn"), dt / self.param(node, "tau_mem")
        r, leak, fire = self.param(node, "r"), self.param(node, "v_leak"), self._fire(node)
        w_in = self.param(node, "w_in", np.ones((), np.float32))

        def step(state, x):
            i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
            i = i + a_syn * (w_in * x - i)
            z, v = fire(v + a_mem * (leak - v) + a_mem * r * i)
            return z, (i, v)
        return Stateful(step, lambda s: s[1])
