"""Graph passes: plain functions Graph -> Graph that return a new graph.

Every pass is wrapped by `graph_pass`, which (like torch.fx's pass
infrastructure) validates the graph before and after, and runs the pass on
a copy, so the caller's graph is never mutated.

- `fold_batchnorm`: BatchNorm into the preceding Conv2d/Linear.
- `fold_thresholds`: each CF layer's θ into its incoming weights (θ -> 1).
- `remove_identities`: drop Identity nodes (eval-mode Dropout included).

`DEFAULT_PASSES` is the order the export pipeline uses.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

import numpy as np

from .graph import Graph, Node

log = logging.getLogger(__name__)
PASSES: dict[str, Callable[[Graph], Graph]] = {}


def graph_pass(fn: Callable[[Graph], Graph]) -> Callable[[Graph], Graph]:
    """Register a pass; check the graph before and after; run it on a copy."""
    @functools.wraps(fn)
    def run(graph: Graph) -> Graph:
        graph.validate()
        out = fn(graph.copy())
        return out.validate()
    PASSES[fn.__name__] = run
    return run


def run_passes(graph: Graph, passes=None) -> Graph:
    """Apply passes (functions or registered names) in order; default DEFAULT_PASSES."""
    for p in DEFAULT_PASSES if passes is None else passes:
        graph = (PASSES[p] if isinstance(p, str) else p)(graph)
    return graph


def _sole_reader(g: Graph, src: str, dst: str) -> bool:
    """`dst` is the only reader of `src`, over a forward edge."""
    return g.consumers(src) == [dst] and (src, dst) not in g.back_edges()


def _channel_axis(n: Node) -> int:
    """The per-sample axis of a Conv2d's / Linear's output channels."""
    return 0 if n.op == "Conv2d" else len(n.shape) - 1


@graph_pass
def fold_batchnorm(g: Graph) -> Graph:
    """Fold every BatchNorm whose input is a Conv2d/Linear read by it alone.

    W' = W·γ/σ (per output channel), b' = (b - μ)·γ/σ + β with σ = sqrt(var + eps),
    computed in float64 and stored in the weight's dtype. The merged node keeps
    the Conv2d/Linear's name; its meta["folded"] lists the BatchNorm. Other
    BatchNorms stay (logged).
    """
    for bn in [n for n in g.nodes.values() if n.op == "BatchNorm"]:
        p = g[bn.inputs[0]]
        if p.op not in ("Conv2d", "Linear") or not _sole_reader(g, p.name, bn.name) \
                or bn.attrs["axis"] != _channel_axis(p):
            log.info("fold_batchnorm: %s stays (its input is not a Conv2d/Linear that only "
                     "it reads, on the channel axis)", bn.where())
            continue
        gain = bn.params["weight"].astype(np.float64) / np.sqrt(
            bn.params["var"].astype(np.float64) + bn.attrs["eps"])
        w = p.params["weight"]
        b = p.params.get("bias", np.zeros(w.shape[0], w.dtype)).astype(np.float64)
        p.params["weight"] = (w.astype(np.float64) * gain.reshape(-1, *[1] * (w.ndim - 1))
                              ).astype(w.dtype)
        p.params["bias"] = ((b - bn.params["mean"]) * gain + bn.params["bias"]).astype(w.dtype)
        p.meta["folded"] = [*p.meta.get("folded", []), bn.name]
        g.replace_uses(bn.name, p.name)
        g.remove_node(bn.name)
    return g


# Ops that commute with a positive scale c: f(c·x) = c·f(x), parameter-free.
_PASS_THROUGH = {"Add", "Identity", "AvgPool2d", "SumPool2d", "MaxPool2d", "Flatten",
                 "Permute", "Mean"}
# Ops whose output scales by c when these params (or attrs) are multiplied by c.
_SCALABLE = {"Linear": ("weight", "bias"), "Conv2d": ("weight", "bias"),
             "BatchNorm": ("weight", "bias"), "Scale": ("scale",), "Attention": ()}


def _affine_cone(g: Graph, cf: Node) -> tuple[list[Node], str | None]:
    """The scalable nodes that alone feed `cf`, or (.., reason) why there are none."""
    back = g.back_edges()
    seen, terminals, todo = set(), [], [cf.inputs[0]]
    while todo:
        n = g[todo.pop()]
        if n.name in seen:
            continue
        seen.add(n.name)
        if n.op in _SCALABLE:
            terminals.append(n)
        elif n.op in _PASS_THROUGH:
            todo.extend(n.inputs)
        else:
            return [], (f"its input depends on {n.where()} without an affine layer between "
                        f"(only Linear/Conv2d/BatchNorm/Scale/Attention outputs can absorb 1/θ)")
    for name in seen:
        for user in g.consumers(name):
            if user != cf.name and user not in seen:
                return [], (f"node {name!r} on its input path also feeds {user!r}, which "
                            f"must not see the scaled values")
            if (name, user) in back:
                return [], f"its input path has a recurrent (back) edge {name!r} -> {user!r}"
    return terminals, None


@graph_pass
def fold_thresholds(g: Graph) -> Graph:
    """Scale each CF layer's incoming affine maps by 1/θ and set θ = 1.

    Exact in real arithmetic: with x' = x/θ the state is v' = v/θ and
    n = trunc(u'/1) = trunc(u/θ), for any β, K and signed. The incoming
    values are scaled at the affine layers that produce them (weights and
    bias of Linear/Conv2d/BatchNorm, Scale's gain, Attention's scale),
    through parameter-free linear ops (Add, pools, Flatten, Permute, Mean,
    Identity). A layer keeps its θ, with the reason in
    node.meta["theta_fold_skipped"], when:
    - a path into it starts at a non-affine node (spikes via an identity
      shortcut, an Input, a neuron): those values cannot absorb 1/θ;
    - a node on the path also feeds something else (e.g. a conv read by two
      CF layers, or an Add of branches shared with another layer): scaling it
      would change the other reader;
    - the path has a back edge, or θ is a per-neuron array (imported graphs).
    Folded layers record the old θ in node.meta["theta_folded"]; a membrane
    floor ``v_min`` is divided by θ with the state.
    """
    for cf in [n for n in g.nodes.values() if n.op == "CFNeuron"]:
        theta = float(cf.attrs["threshold"])
        if theta == 1.0:
            continue
        terminals, why = ([], "θ is a per-neuron array") if "threshold" in cf.params \
            else _affine_cone(g, cf)
        if why:
            cf.meta["theta_fold_skipped"] = why
            log.info("fold_thresholds: %s keeps θ=%g: %s", cf.where(), theta, why)
            continue
        for n in terminals:
            for k in _SCALABLE[n.op]:
                if k in n.params:
                    a = n.params[k]
                    n.params[k] = (a.astype(np.float64) / theta).astype(a.dtype)
            if n.op == "Attention":
                n.attrs["scale"] = float(n.attrs["scale"]) / theta
        if "v_min" in cf.params:  # the state is v/θ now: so is its floor
            cf.params["v_min"] = np.asarray(cf.params["v_min"], np.float64) / theta
        cf.attrs["threshold"] = 1.0
        cf.meta["theta_folded"] = theta
    return g


@graph_pass
def remove_identities(g: Graph) -> Graph:
    """Drop Identity nodes: their readers read the Identity's input instead."""
    for n in [n for n in g.nodes.values() if n.op == "Identity"]:
        g.replace_uses(n.name, n.inputs[0])
        g.remove_node(n.name)
    return g


DEFAULT_PASSES = [fold_batchnorm, fold_thresholds, remove_identities]
