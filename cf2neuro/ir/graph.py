"""The graph IR: plain nodes, ordered edges, inferred shapes (DESIGN §2).

A `Graph` is an ordered dict of `Node`s plus JSON-able metadata
(`graph.meta`, e.g. ``{"dt": 1e-3, "timesteps": 4}``). A node is a plain
dataclass:

- ``name``: unique str; ``op``: an op name from `ops.OPS`;
- ``inputs``: ordered list of source node names. Order matters (the
  operands of Add, Q/K/V of Attention). ``graph.edges`` lists them as
  ``(src, dst)`` pairs in node order, then input order. A node takes its
  inputs only through its slots: several inputs are *not* summed implicitly
  (NIR's fan-in sum becomes an explicit Add);
- ``params``: dict of numpy arrays (dtype kept as given, float32 from
  tracing); ``attrs``: JSON-able dict (ints, floats, bools, str, lists);
- ``shape``: inferred output shape, per sample and per step (no T, no B),
  set by `Graph.infer_shapes()` / `validate()`;
- ``meta``: JSON-able provenance (``module``, ``class``, ``source``).

Execution model: every step t, each node reads its inputs and computes its
output; stateless ops map ``[B, *in] -> [B, *out]``, neurons keep state.
An edge that closes a cycle (a *back edge*) delivers its source's value of
step t-1 (zeros at t = 0): a one-step delay. Each cycle is cut at the edge
leaving a neuron (a stateful op) where it has one, so recurrent weights act
on the previous step's spikes (an Affine on the loop gives its bias from
t = 0, as in NIR). `topological_order()` is deterministic: cycles are found
by a depth-first search from the Input nodes (then any unreached node) in
insertion order, following each node's consumers in edge order; the rest is
ordered by Kahn's algorithm with ties broken by insertion order. Forward
edges deliver the same step's value.

Ops (params in brackets are optional; attrs with defaults):

=========  ===============================  =====================================
op         params                           attrs / meaning
=========  ===============================  =====================================
Input      -                                shape: list[int] (per sample)
Output     -                                one input, passed through
Identity   -                                passes its one input through
Linear     weight [out, in], [bias [out]]   y = x·Wᵀ + b over the LAST dim; input
                                            [..., in] -> [..., out] (tokens ok)
Conv2d     weight [Cout, Cin/g, kh, kw],    stride, padding, dilation: [h, w];
           [bias [Cout]]                    groups. PyTorch layout, cross-correl.
                                            [C, H, W] -> [Cout, H', W']
BatchNorm  mean, var, weight, bias: [C]     eps; axis: per-sample channel dim
                                            (0 for [C, H, W] and [F]; 1 for
                                            tokens [N, D]). y = (x-mean)/
                                            sqrt(var+eps)·weight + bias
AvgPool2d  -                                kernel, stride, padding: [h, w];
                                            count_include_pad (as PyTorch)
SumPool2d  -                                kernel, stride, padding (zeros)
MaxPool2d  -                                kernel, stride, padding (-inf pad)
Flatten    -                                start_dim, end_dim over the
                                            per-sample shape, C order
Permute    -                                perm: list[int] over per-sample dims
Mean       -                                dims: list[int], reduced and dropped
Add        -                                >= 2 inputs of equal shape, summed
Scale      scale (broadcasts to input)      y = scale · x (scalar or per element)
Threshold  threshold (broadcasts to input)  y = 1 where x > threshold, else 0;
                                            stateless (NIR's Threshold)
Delay      attr steps (int >= 1)            y_t = x_{t-steps} (zeros before): NIR's
                                            Delay in whole steps of dt
Attention  -                                heads, scale s. Inputs Q, K, V, each
                                            [N, D], D = heads·d. Per head h
                                            (columns h·d..(h+1)·d-1):
                                            out_h = Q_h·(K_hᵀ·V_h)·s, no softmax;
                                            output [N, D], heads concatenated
CFNeuron   [threshold], [beta] (per-neuron  threshold θ > 0, beta β in (0, 1],
           arrays, override the attrs)      max_spikes K, signed. Per step:
                                            u = β·v + x; n = clip(trunc(u/θ),
                                            -K·signed, K); v = u - n·θ; out n
                                            (u = θ fires: trunc, not LIF's >)
LIF        tau, r, v_leak, v_threshold,     reset: "zero" (v = v_reset) or
           [v_reset] (per neuron)           "subtract" (v -= v_threshold)
IF         r, v_threshold, [v_reset]        reset as LIF
LI         tau, r, v_leak                   output v (no spikes)
CubaLIF    tau_syn, tau_mem, r, v_leak,     reset as LIF
           v_threshold, [v_reset], [w_in]
=========  ===============================  =====================================

Continuous-time neurons are discretized by forward Euler with the graph's
``meta["dt"]`` (what snnTorch's NIR export/import assumes; a = dt/tau):

- LI:  ``v = v + a·(v_leak - v) + a·r·x``; output v.
- LIF: the same charge, then ``z = v > v_threshold`` (strict, as NIR), then
  the reset; output z. With ``tau = dt/(1-β)``, ``r = tau/dt`` this is
  ``v = β·v + x`` (snnTorch `Leaky`).
- IF:  ``v = v + r·x`` (no dt: Sinabs/snnTorch/Lava practice), then z, reset.
- CubaLIF: ``I = I + (dt/tau_syn)·(w_in·x - I)`` first, then the LIF update
  of v driven by the new I. snnTorch `Synaptic` with tau_syn = dt/(1-α),
  w_in = tau_syn/dt, tau_mem = dt/(1-β), r = tau_mem/dt.

Parameters of neurons broadcast to the node's shape (scalars allowed).

API: ``Graph(meta)``; ``add_node(name, op, inputs, params, attrs, meta) -> Node``
(missing attrs take the op's defaults; tuples become lists); ``add_edge(src,
dst)`` (appends an input slot); ``replace_uses``, ``remove_node``,
``unique_name``, ``copy``; ``nodes`` (dict, insertion order), ``inputs`` /
``outputs`` (names of Input / Output nodes), ``edges``, ``consumers(name)``,
``back_edges()``, ``topological_order()``, iteration (topological);
``infer_shapes()``, ``validate()`` (both return the graph); ``equals(other)``
(exact, dtypes included); ``str(graph)`` (a table). New ops: `ops.register_op`.
"""

from __future__ import annotations

import copy
import heapq
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ..errors import BadInputError
from .ops import OPS, REQUIRED


class IRError(BadInputError):
    """A graph is malformed: unknown op, dangling edge, missing Input, bad shapes."""


@dataclass
class Node:
    """One IR node; see the module docstring for ops, params and attrs."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        """'node NAME (OP)' plus its source module, for error messages."""
        src = f" from {self.meta['module']}" if self.meta.get("module") else ""
        return f"node {self.name!r} ({self.op}{src})"


class Graph:
    """Nodes in insertion order plus graph metadata; see the module docstring."""

    def __init__(self, meta: dict | None = None):
        self.nodes: dict[str, Node] = {}
        self.meta: dict[str, Any] = dict(meta or {})

    # --- building ----------------------------------------------------------
    def add_node(self, name: str, op: str, inputs=(), params=None, attrs=None,
                 meta=None) -> Node:
        """Add a node; attrs missing from it take the op's defaults."""
        if name in self.nodes:
            raise IRError(f"a node named {name!r} already exists; pick a unique name "
                          f"(see Graph.unique_name)")
        spec = OPS.get(op)
        try:
            full = {str(k): _plain(v) for k, v in (attrs or {}).items()}
            meta = {str(k): _plain(v) for k, v in (meta or {}).items()}
        except TypeError as e:
            raise IRError(f"node {name!r} ({op}): {e}; attrs and meta must be JSON values "
                          f"(put arrays in params)") from None
        if spec is not None:
            full = {k: v for k, v in spec.attrs.items() if v is not REQUIRED} | full
        node = Node(name, op, list(inputs), {k: np.asarray(v) for k, v in (params or {}).items()},
                    full, None, meta)
        self.nodes[name] = node
        return node

    def add_edge(self, src: str, dst: str) -> None:
        """Append `src` as the next input of `dst`."""
        self[dst].inputs.append(src)

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self.nodes:
            name, i = f"{base}_{i}", i + 1
        return name

    def remove_node(self, name: str) -> None:
        """Delete a node; edges from it must have been rewired first."""
        users = [n.name for n in self.nodes.values() if name in n.inputs]
        if users:
            raise IRError(f"cannot remove node {name!r}: it still feeds {users}")
        del self.nodes[name]

    def replace_uses(self, old: str, new: str) -> None:
        """Make every consumer of `old` read `new` instead (same input slot)."""
        for n in self.nodes.values():
            n.inputs = [new if s == old else s for s in n.inputs]

    def copy(self) -> "Graph":
        """A deep copy (parameters copied): passes return a new graph."""
        return copy.deepcopy(self)

    # --- reading -----------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise IRError(f"no node named {name!r} in the graph") from None

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        """Nodes in topological order (back edges cut)."""
        return (self.nodes[n] for n in self.topological_order())

    @property
    def inputs(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.op == "Input"]

    @property
    def outputs(self) -> list[str]:
        return [n.name for n in self.nodes.values() if n.op == "Output"]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(s, n.name) for n in self.nodes.values() for s in n.inputs]

    def consumers(self, name: str) -> list[str]:
        """Nodes reading `name`, once per reading slot, in node order."""
        return [n.name for n in self.nodes.values() for s in n.inputs if s == name]

    def back_edges(self) -> set[tuple[str, str]]:
        """Edges that close a cycle: they deliver the previous step's value.

        Each cycle is cut at the edge leaving a stateful node (a neuron) where
        it has one: the recurrent weights then act on the neuron's previous
        output, so an Affine on the loop gives its bias from t = 0 on, as NIR
        and snnTorch's recurrent layers do. A cycle without one is cut where
        the depth-first search closes it.
        """
        self._check_dangling()
        cut: set[tuple[str, str]] = set()
        while (cycle := self._find_cycle(cut)) is not None:
            stateful = [e for e in cycle if OPS[self.nodes[e[0]].op].stateful]
            cut.add(stateful[-1] if stateful else cycle[-1])
        return cut

    def _find_cycle(self, cut: set) -> list[tuple[str, str]] | None:
        """The edges of one cycle that avoids `cut` (in order, closing edge last), or None."""
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for s, d in self.edges:
            if (s, d) not in cut:
                succ[s].append(d)
        state: dict[str, int] = {}  # 1 = on the DFS stack, 2 = done
        roots = self.inputs + [n for n in self.nodes if n not in self.inputs]
        for root in roots:
            if root in state:
                continue
            state[root] = 1
            stack = [(root, iter(succ[root]))]
            while stack:  # iterative DFS: deep graphs must not hit the recursion limit
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

    def topological_order(self) -> list[str]:
        back = self.back_edges()
        order_of = {n: i for i, n in enumerate(self.nodes)}
        indeg = {n: 0 for n in self.nodes}
        succ: dict[str, list[str]] = {n: [] for n in self.nodes}
        for s, d in self.edges:
            if (s, d) not in back:
                indeg[d] += 1
                succ[s].append(d)
        ready = [order_of[n] for n, k in indeg.items() if k == 0]
        heapq.heapify(ready)
        names = list(self.nodes)
        out = []
        while ready:
            n = names[heapq.heappop(ready)]
            out.append(n)
            for d in succ[n]:
                indeg[d] -= 1
                if indeg[d] == 0:
                    heapq.heappush(ready, order_of[d])
        return out

    # --- checking ----------------------------------------------------------
    def _check_dangling(self) -> None:
        for n in self.nodes.values():
            for s in n.inputs:
                if s not in self.nodes:
                    raise IRError(f"{n.where()} reads from {s!r}, which is not a node "
                                  f"of the graph (dangling edge); add it or fix the edge")

    def _check_node(self, n: Node) -> None:
        spec = OPS.get(n.op)
        if spec is None:
            raise IRError(f"{n.where()}: unknown op {n.op!r}; known ops: {sorted(OPS)}")
        lo, hi = spec.inputs
        if len(n.inputs) < lo or (hi is not None and len(n.inputs) > hi):
            want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
            raise IRError(f"{n.where()} has {len(n.inputs)} input(s), the op takes {want}")
        missing = [p for p in spec.params if p not in n.params]
        missing += [a for a, d in spec.attrs.items() if d is REQUIRED and a not in n.attrs]
        if missing:
            raise IRError(f"{n.where()} lacks required parameter/attribute(s) {missing}")
        unknown = set(n.params) - set(spec.params) - set(spec.optional) - set(spec.integer)
        if unknown:
            raise IRError(f"{n.where()} has unknown parameter(s) {sorted(unknown)}; the op "
                          f"takes {list(spec.params) + list(spec.optional) + list(spec.integer)}")

    def infer_shapes(self) -> "Graph":
        """Set every node's `shape`; raises IRError naming the node at fault.

        Back-edge sources are inferred after their consumers, so the walk
        repeats until nothing changes (at most once per back edge, plus one).
        """
        order = self.topological_order()
        for n in self.nodes.values():
            n.shape = None
        for _ in range(len(self.back_edges()) + 2):
            changed = False
            for name in order:
                n = self.nodes[name]
                shapes = [self.nodes[s].shape for s in n.inputs]
                known = [s for s in shapes if s is not None]
                if len(known) < len(shapes) and not (n.op == "Add" and known):
                    continue
                if n.op == "Add":  # shapes must agree: a known one stands for the rest
                    shapes = [s if s is not None else known[0] for s in shapes]
                try:
                    shape = tuple(int(x) for x in OPS[n.op].infer(n, shapes))
                except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError) as e:
                    raise IRError(f"{n.where()}: {e}") from None
                changed |= shape != n.shape
                n.shape = shape
            if not changed:
                break
        unknown = [n.name for n in self.nodes.values() if n.shape is None]
        if unknown:
            raise IRError(f"cannot infer the shapes of {unknown}: they are not reachable "
                          f"from an Input node; connect them or remove them")
        return self

    def validate(self) -> "Graph":
        """Check ops, arity, params, edges, the Input/Output nodes and all shapes."""
        if not self.inputs:
            raise IRError("the graph has no Input node; add one (op 'Input', attrs shape)")
        if not self.outputs:
            raise IRError("the graph has no Output node; add one reading the result")
        self._check_dangling()
        for n in self.nodes.values():
            self._check_node(n)
        return self.infer_shapes()

    def equals(self, other: "Graph") -> bool:
        """Exact equality: structure, attrs, meta, parameter values and dtypes."""
        if self.meta != other.meta or list(self.nodes) != list(other.nodes):
            return False
        for a, b in zip(self.nodes.values(), other.nodes.values()):
            if (a.op, a.inputs, a.attrs, a.meta, a.shape) != (b.op, b.inputs, b.attrs,
                                                              b.meta, b.shape):
                return False
            if set(a.params) != set(b.params) or not all(
                    a.params[k].dtype == b.params[k].dtype and
                    a.params[k].shape == b.params[k].shape and
                    np.array_equal(a.params[k], b.params[k], equal_nan=True)
                    for k in a.params):
                return False
        return True

    def __str__(self) -> str:
        """A table: one row per node in topological order."""
        back = self.back_edges()
        rows = [("name", "op", "inputs", "shape", "params / attrs")]
        for n in self:
            ins = ", ".join(s + ("(t-1)" if (s, n.name) in back else "") for s in n.inputs)
            shape = "?" if n.shape is None else "[" + ", ".join(map(str, n.shape)) + "]"
            rows.append((n.name, n.op, ins, shape, _summary(n)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4] for r in rows]
        lines.insert(1, "-" * max(len(x) for x in lines))
        if self.meta:
            lines.append("meta: " + ", ".join(f"{k}={v}" for k, v in self.meta.items()))
        return "\n".join(x.rstrip() for x in lines)

    def __repr__(self) -> str:
        return f"<Graph: {len(self)} nodes, inputs {self.inputs}, outputs {self.outputs}>"


def _plain(v):
    """A JSON value: tuples become lists, numpy scalars Python numbers."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, np.generic) and v.ndim == 0:
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"{type(v).__name__} value {v!r} is not JSON-able")


def _summary(n: Node) -> str:
    """Parameter names with shapes, then attributes that differ from defaults."""
    spec = OPS.get(n.op)
    parts = [f"{k}{list(v.shape)}" for k, v in n.params.items()]
    defaults = spec.attrs if spec else {}
    for k, v in n.attrs.items():
        if n.op == "Input" or (spec and spec.stateful) or defaults.get(k, REQUIRED) != v:
            v = f"{v:.4g}" if isinstance(v, float) else v
            parts.append(f"{k}={v}")
    return " ".join(parts)
