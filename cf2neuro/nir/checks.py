"""What an imported NIR graph must satisfy before anything runs it.

The importer builds the IR; these checks refuse what would run as garbage
without a word (issue 13):

- a parameter that is NaN or infinite (a NaN weight ran as zeros);
- a neuron whose forward-Euler step is not a leaky integration: dt/tau >= 1
  or tau <= 0. The decay 1 - dt/tau is then <= 0: the reference would
  oscillate and blow up (NaN), the fixed-point emulator would clip the decay
  to its smallest code, so each would compute something else. cf2neuro
  refuses it (as it refuses β outside (0, 1] for CF neurons); the usual cause
  is a wrong dt, so the message names the node, tau and dt and says to pass
  the exporting framework's --dt;
- a cycle without a neuron on it: NIR edges are instantaneous, so such a loop
  is an algebraic loop that has no value. (The IR itself would cut it into a
  one-step delay, which is not what the file says.)

Each refusal is an UnsupportedError (CLI exit 2) naming the file and node.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..ir import Graph
from ..ir.ops import OPS

# NIR time constants per op, with the parameter that holds each.
TIME_CONSTANTS = {"LIF": ("tau",), "LI": ("tau",), "CubaLIF": ("tau_syn", "tau_mem")}


def check_imported(graph: Graph, where: str) -> None:
    """Refuse non-finite parameters, unstable Euler steps and neuron-less cycles."""
    for node in graph.nodes.values():
        _check_finite(node, where)
        _check_steps(node, graph.meta.get("dt"), where)
    _check_cycles(graph, where)


def _check_finite(node, where: str) -> None:
    for key, value in node.params.items():
        a = np.asarray(value)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = int((~np.isfinite(a)).sum())
            raise UnsupportedError(
                f"{where}: node {node.name!r} ({node.op}): parameter {key!r} holds {bad} NaN "
                f"or infinite value(s); the graph would compute garbage. Re-export it from "
                f"a model with finite weights")
    for key, value in node.attrs.items():
        if isinstance(value, float) and not np.isfinite(value):
            raise UnsupportedError(f"{where}: node {node.name!r} ({node.op}): {key} is "
                                   f"{value}; re-export the graph with finite values")


def _check_steps(node, dt, where: str) -> None:
    if node.op == "CFNeuron":
        betas = np.asarray(node.params.get("beta", node.attrs.get("beta", 1.0)), np.float64)
        theta = np.asarray(node.params.get("threshold", node.attrs.get("threshold", 1.0)))
        if np.any(betas <= 0) or np.any(betas > 1):
            raise UnsupportedError(
                f"{where}: CF node {node.name!r} has beta {_span(betas)}, outside (0, 1] "
                f"(from dt/tau >= 1 or a negative tau); pass the exporting framework's "
                f"--dt (smaller than tau) or fix the node's tau")
        if np.any(theta <= 0):
            raise UnsupportedError(f"{where}: CF node {node.name!r} has threshold "
                                   f"{_span(theta)}; a threshold must be > 0")
        return
    if node.op not in TIME_CONSTANTS or dt is None:
        return
    for key in TIME_CONSTANTS[node.op]:
        if key not in node.params:
            continue
        tau = np.asarray(node.params[key], np.float64)
        if np.any(tau <= 0) or np.any(dt / tau >= 1):
            raise UnsupportedError(
                f"{where}: node {node.name!r} ({node.op}): {key} {_span(tau)} s with dt = "
                f"{dt:g} s gives dt/{key} = {_span(dt / tau)}, not below 1: the forward-Euler "
                f"step is unstable (no decay left), so the reference and the fixed-point "
                f"emulator would each compute something else. Pass the exporting "
                f"framework's --dt (smaller than {key}) or fix {key}")


def _check_cycles(graph: Graph, where: str) -> None:
    for src, dst in sorted(graph.back_edges()):
        if not OPS[graph[src].op].stateful:  # cut at a neuron wherever a cycle has one
            raise UnsupportedError(
                f"{where}: the edge ({src!r}, {dst!r}) closes a cycle with no neuron on it; "
                f"NIR edges are instantaneous, so the loop has no value (cf2neuro will not "
                f"turn it into a delay silently). Put a neuron (LIF/IF) on the loop")


def _span(a) -> str:
    a = np.asarray(a, np.float64).reshape(-1)
    lo, hi = float(a.min()), float(a.max())
    return f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
