"""The engine: a batched multi-step simulator of an IR graph (the `reference` runner).

    engine = Engine(graph)                       # float numerics by default
    out = engine(x)                              # x: [T, B, *input_shape]
    res = engine.run(x, probes=["layers.1", "v:layers.1"])
    res["output"], res["layers.1"], res["v:layers.1"]   # each [T, B, ...]

The engine walks the graph; a numerics object (`numerics.py`) owns the math.
Each node is resolved into a kernel once, when the engine is built. Two
schedules compute the same thing:

- ``"step"``: for t in 0..T-1, every node in topological order on [B, ...].
  A back edge reads its source's value of step t-1 (zeros at t = 0).
- ``"layer"``: node by node over the whole window; a stateless kernel sees
  T folded into the batch ([T·B, ...], as the PyTorch model computes it),
  a stateful one loops over T. Only for graphs without back edges; the
  default ``"auto"`` takes it when it can (much less Python per step).

Probes: "NAME" records a node's output, "v:NAME" the membrane potential of
a stateful node *after* its reset (what stays in the state), all [T, B, ...].
"""

from __future__ import annotations

import math
import time
from typing import Iterable, NamedTuple

import numpy as np
import torch

from ..errors import BadInputError, RunnerTimeoutError
from .graph import Graph
from .numerics import FloatNumerics, Stateful


def check_deadline(deadline: float | None, what: str = "the run") -> None:
    """Raise RunnerTimeoutError once `deadline` (a time.monotonic() value) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise RunnerTimeoutError(f"{what} did not finish within its timeout and was stopped; "
                                 f"pass a larger --timeout (seconds) or fewer samples")


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch 2.3+
    return bool(is_compiling and is_compiling())


def check_window(x, what: str = "the inputs") -> None:
    """x [T, B, ...] has a step and a sample, numbers, and no NaN or infinity.

    Checked before any numerics see it: T = 0 would fail deep inside torch, and a
    NaN input runs as garbage (float) or as a clipped payload (fixed point)."""
    shape = tuple(x.shape)
    if len(shape) < 2 or 0 in shape[:2]:
        raise BadInputError(f"{what} is shaped {list(shape)}; it must be [T, B, ...] with at "
                            f"least one time step T and one sample B")
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise BadInputError(f"{what} must be real numbers, got dtype {x.dtype}")
        finite = not x.is_floating_point() or bool(torch.isfinite(x).all())
    else:
        if np.asarray(x).dtype.kind not in "biuf":
            raise BadInputError(f"{what} must be real numbers, got dtype {np.asarray(x).dtype}")
        finite = np.asarray(x).dtype.kind != "f" or bool(np.isfinite(x).all())
    if not finite:
        raise BadInputError(f"{what} holds NaN or infinite values; clean the data (e.g. "
                            f"np.nan_to_num) before running it")


class _Op(NamedTuple):
    index: int
    name: str
    kernel: object               # stateless callable or Stateful
    sources: tuple               # ((source index, is back edge), ...)
    stateful: bool


class Engine:
    """A graph compiled against a numerics object; see the module docstring."""

    def __init__(self, graph: Graph, numerics=None):
        self.graph = graph.copy().validate()
        self.numerics = numerics if numerics is not None else FloatNumerics()
        order = self.graph.topological_order()
        index = {n: i for i, n in enumerate(order)}
        back = self.graph.back_edges()
        self.has_back_edges = bool(back)
        self.inputs = {n: index[n] for n in self.graph.inputs}
        self.outputs = {n: index[n] for n in self.graph.outputs}
        self.ops: list[_Op] = []
        for name in order:
            node = self.graph[name]
            if node.op == "Input":
                continue
            k = self.numerics.kernel(node, self.graph)
            self.ops.append(_Op(index[name], name, k,
                                tuple((index[s], (s, name) in back) for s in node.inputs),
                                isinstance(k, Stateful)))
        self.index = index
        self.shapes = [self.graph[n].shape for n in order]
        self.names = order
        self.stateful = {op.name for op in self.ops if op.stateful}
        last: dict[int, int] = {}  # source index -> position of its last reader
        for k, op in enumerate(self.ops):
            for j, _ in op.sources:
                last[j] = k
        self._free = [[j for j, _ in op.sources if last[j] == k] for k, op in enumerate(self.ops)]

    def __call__(self, x) -> torch.Tensor:
        return self.run(x)["output"]

    # --- arguments -----------------------------------------------------------
    def _inputs(self, x) -> dict[int, torch.Tensor]:
        given = x if isinstance(x, dict) else {self.graph.inputs[0]: x}
        if set(given) != set(self.inputs):
            raise BadInputError(f"the graph's inputs are {sorted(self.inputs)}, "
                                f"got {sorted(given)}")
        out, tb = {}, None
        for name, arr in given.items():
            if not isinstance(arr, torch.Tensor):
                arr = np.asarray(arr)
            if not (torch.jit.is_tracing() or _compiling()):  # an export
                check_window(arr, f"input {name!r}")  # traces symbolic inputs: no values
            t = self.numerics.prepare_input(arr)
            want = self.graph[name].shape
            if t.dim() != len(want) + 2 or tuple(t.shape[2:]) != want or (tb and t.shape[:2] != tb):
                raise BadInputError(f"input {name!r} must be [T, B, {', '.join(map(str, want))}]"
                                    f" (time first), got {list(t.shape)}")
            tb = t.shape[:2]
            out[self.inputs[name]] = t
        return out

    def _probes(self, probes: Iterable[str]) -> list[tuple[str, int, bool]]:
        out = []
        for p in probes:
            mem = p.startswith("v:")
            name = p[2:] if mem else p
            if name not in self.index:
                raise BadInputError(f"probe {p!r}: no node named {name!r}; nodes: "
                                    f"{', '.join(self.names)}")
            if mem and name not in self.stateful:
                raise BadInputError(f"probe {p!r}: node {name!r} ({self.graph[name].op}) has "
                                    f"no membrane; 'v:' probes need a neuron node")
            out.append((p, self.index[name], mem))
        return out

    # --- running -------------------------------------------------------------
    def run(self, x, probes: Iterable[str] = (), schedule: str = "auto",
            deadline: float | None = None) -> dict:
        """Simulate x ([T, B, *input_shape], or {input name: array}); see module docstring.

        `deadline` (a time.monotonic() value) stops the run with a
        RunnerTimeoutError between steps and layers once it has passed.

        Returns {"output": first Output's trace, <other Output names>: ...,
        <probe>: ...}, every value [T, B, ...].
        """
        xs = self._inputs(x)
        wanted = self._probes(probes)
        if schedule == "auto":
            schedule = "layer" if (not self.has_back_edges and
                                   getattr(self.numerics, "time_batched", False)) else "step"
        if schedule == "layer" and self.has_back_edges:
            raise BadInputError("schedule 'layer' cannot run a graph with back edges; "
                                "use 'step' or 'auto'")
        if schedule not in ("layer", "step"):
            raise BadInputError(f"schedule must be 'auto', 'layer' or 'step', got {schedule!r}")
        with torch.no_grad():
            run = self._run_layers if schedule == "layer" else self._run_steps
            keep = set(self.outputs.values()) | {i for _, i, m in wanted if not m}
            self._check_memory(xs, keep | {i for _, i, m in wanted if m})
            values, membranes = run(xs, keep, {i for _, i, m in wanted if m}, deadline)
        res = {}
        for k, (name, i) in enumerate(self.outputs.items()):
            res["output" if k == 0 else name] = values[i]
        for p, i, mem in wanted:
            res[p] = membranes[i] if mem else values[i]
        return res

    def _check_memory(self, xs, kept: set) -> None:
        """Refuse, with the GiB, a run whose windows cannot fit: every kept trace plus the
        widest layers in flight, at 8 bytes a value (int64 / float64 kernels)."""
        from ..device import check_fits

        T, B = next(iter(xs.values())).shape[:2]
        if not (type(T) is int and type(B) is int) or _compiling():  # an export: symbolic
            return
        sizes = [math.prod(s) for s in self.shapes]
        need = 8 * T * B * (sum(sizes[i] for i in kept) + 3 * max(sizes, default=0))
        check_fits(need, f"running {B} samples x {T} steps through the graph",
                   getattr(self.numerics, "device", None),
                   "Run fewer samples at a time (--limit, or split the inputs)")

    def _run_layers(self, xs, keep, mem_wanted, deadline):
        values: list = [None] * len(self.names)
        membranes = {}
        for i, t in xs.items():
            values[i] = t
        T, B = next(iter(xs.values())).shape[:2]
        for k, op in enumerate(self.ops):
            args = [values[j] for j, _ in op.sources]
            if op.stateful:
                state, outs, vs = None, [], []
                for t in range(T):
                    check_deadline(deadline)
                    out, state = op.kernel.step(state, *(a[t] for a in args))
                    outs.append(out)
                    if op.index in mem_wanted:
                        vs.append(op.kernel.membrane(state))
                values[op.index] = torch.stack(outs)
                if vs:
                    membranes[op.index] = torch.stack(vs)
            else:
                check_deadline(deadline)
                y = op.kernel(*(a.flatten(0, 1) for a in args))
                values[op.index] = y.unflatten(0, (T, B))
            for j in self._free[k]:  # drop windows nobody reads any more
                if j not in keep:
                    values[j] = None
        return values, membranes

    def _run_steps(self, xs, keep, mem_wanted, deadline):
        n = len(self.names)
        T, B = next(iter(xs.values())).shape[:2]
        like = next(iter(xs.values()))
        states: list = [None] * n
        prev: list = [None] * n
        traces: dict = {i: [] for i in keep}
        mem: dict = {i: [] for i in mem_wanted}
        for t in range(T):
            check_deadline(deadline)
            cur: list = [None] * n
            for i, x in xs.items():
                cur[i] = x[t]
            for op in self.ops:
                args = []
                for j, back in op.sources:
                    v = prev[j] if back else cur[j]
                    if v is None:  # a back edge at t = 0 delivers zeros
                        v = like.new_zeros((B, *self.shapes[j]))
                    args.append(v)
                if op.stateful:
                    cur[op.index], states[op.index] = op.kernel.step(states[op.index], *args)
                    if op.index in mem:
                        mem[op.index].append(op.kernel.membrane(states[op.index]))
                else:
                    cur[op.index] = op.kernel(*args)
            for i, tr in traces.items():
                tr.append(cur[i])
            prev = cur
        values = {i: torch.stack(tr) for i, tr in traces.items()}
        return values, {i: torch.stack(v) for i, v in mem.items()}


def run(graph: Graph, x, probes: Iterable[str] = (), numerics=None, schedule: str = "auto"):
    """Build an `Engine` for `graph` and run it once; see `Engine.run`."""
    return Engine(graph, numerics).run(x, probes, schedule)
