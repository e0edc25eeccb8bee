"""Sinabs 3.1.3 (SynSense): its NIR conventions, read from its source (sinabs/nir.py).

How `sinabs.from_nir` runs a graph (nirtorch 2.0.2 builds the modules):

- ``nir.IF`` -> ``IAFSqueeze(spike_threshold=θ, min_v_mem=-θ)``; ``r`` is ignored.
- ``nir.LIF`` -> ``LIFSqueeze(tau_mem=tau, norm_input=False, min_v_mem=None)``:
  ``tau`` counts **steps** (α = exp(-1/τ) in float32, no dt), ``r`` is ignored
  (unit input gain), ``v_leak`` must be 0. A LIF with multi-dimensional
  parameters (a conv layer's) fails to import (``any(node.v_leak)`` on a
  [C, H, W] array, nir.py:97).
- Both spike with ``MultiSpike``: n = (v > 0)·trunc(v/θ), **no cap**, reset by
  subtraction (v -= n·θ), then IF's floor v = relu(v + θ) - θ: a CF neuron,
  unsigned, reset "subtract", K = ∞, plus that floor.
- ``nir.LI`` -> ``ExpLeakSqueeze`` (v = α·v + x, r = 1, v_leak = 0 required).
- ``SumPool2d`` ignores ``padding``; Affine, Conv2d (bias always, as float32),
  Flatten, Input, Output as NIR says. Anything else (``nir.Linear``,
  AvgPool2d, Scale, Threshold, CubaLIF, ...) maps to no module: the graph
  then fails to run. A θ stored as float64 stays float64 in Sinabs.

`read` restates a graph that way: IF and LIF become CF neurons with
K = `K_READ` (255: Sinabs has no cap; more than 255 spikes per step and
neuron differ) and IF carries ``"v_min": -θ`` (an array) in its metadata,
the floor, which matches Sinabs bit for bit only when computed as Sinabs
does, relu(v - v_min) + v_min in float32. LI is read to float rounding.

`write` lowers unsigned, reset-by-subtraction CF layers with K >= 2 to what
Sinabs runs exactly: a LIF with τ (steps, float32) such that Sinabs's
float32 exp(-1/τ) is β (τ = ∞ for β = 1: no floor), r = 1, v_leak = 0, θ
in float32, parameters [C, 1, 1] for conv layers (nir.py:97); a CF layer
with the floor -θ and β = 1 as Sinabs's IF. nir.Linear becomes an Affine
with a zero bias; AvgPool2d a SumPool2d with 1/k² folded into the weights
after it (k² a power of two). Everything else Sinabs cannot run is refused
with every reason: signed, reset=zero or K = 1 layers, other β and floors,
per-pixel parameters, padded pools, plain (binary) neurons, residual adds
(nirtorch 2.0.2 drops a branch), recurrence. Sinabs never caps the spikes:
a CF layer agrees while u < (K+1)·θ (logged).
"""

from __future__ import annotations

import logging

import nir
import numpy as np
import torch

from ...errors import UnsupportedError
from ..values import _arr
from . import cf_metadata, cf_nodes, has_cycle, predecessors, refuse, successors

log = logging.getLogger(__name__)

NAME = "sinabs"
VERSION = "3.1.3"
NIR_104 = True
K_READ = 255
_CF_KEYS = ("threshold_array", "beta_array", "v_min")
_RUNS = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.SumPool2d, nir.Flatten)


def alpha(tau) -> np.ndarray:
    """Sinabs's decay exp(-1/τ), as LIF.alpha_mem_calculated computes it (float32 torch)."""
    t = torch.as_tensor(np.asarray(tau, dtype=np.float32))
    return torch.exp(-1.0 / t).numpy()


# --- read: a graph as Sinabs runs it -----------------------------------------------

def read(ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float | None]:
    has_li = _read_nodes(ng, dt if dt is not None else 1.0)
    return ng, (1.0 if dt is None and has_li else dt)


def _read_nodes(ng: nir.NIRGraph, dt: float) -> bool:
    has_li = False
    for name, node in ng.nodes.items():
        if isinstance(node, nir.NIRGraph):  # nirtorch maps nested graphs recursively
            has_li |= _read_nodes(node, dt)
        elif isinstance(node, (nir.IF, nir.LIF)):
            node.metadata = _neuron_meta(name, node)
        elif isinstance(node, nir.LI):
            a = alpha(node.tau).astype(np.float64)
            node.tau, node.r = dt / (1.0 - a), 1.0 / (1.0 - a)  # Euler-steps as v = α·v + x
            node.v_leak = np.zeros_like(node.tau)  # (to float rounding)
            has_li = True
        elif isinstance(node, nir.SumPool2d):
            node.padding = np.zeros(2, dtype=np.int64)  # Sinabs builds it without padding
    return has_li


def _neuron_meta(name: str, node) -> dict:
    theta = _arr(node.v_threshold)
    if isinstance(node, nir.IF):
        beta = np.ones_like(theta, dtype=np.float64)
    else:
        if np.any(_arr(node.v_leak) != 0):
            raise UnsupportedError(f"node {name!r}: Sinabs refuses a LIF with v_leak != 0")
        beta = np.broadcast_to(alpha(node.tau).astype(np.float64), theta.shape)
    old = {k: v for k, v in (node.metadata or {}).items() if k not in _CF_KEYS}
    meta = {**old, **cf_metadata(beta, theta, K_READ, False, "subtract")}
    if isinstance(node, nir.IF):
        meta["v_min"] = -theta.astype(np.float64)  # an array: nir.write cannot store 0-d
    return meta


# --- write: what Sinabs's importer runs exactly ------------------------------------

def write(ng: nir.NIRGraph) -> nir.NIRGraph:
    problems: list[str] = []
    cfs = cf_nodes(ng)
    for name, node in list(ng.nodes.items()):
        if name in cfs:
            neuron = _cf_neuron(name, node, cfs[name], problems)
            if neuron is not None:
                ng.nodes[name] = neuron
        elif isinstance(node, nir.Linear) and not isinstance(node, nir.Affine):
            w = _arr(node.weight)  # Sinabs builds only Affine: a zero bias adds nothing
            ng.nodes[name] = nir.Affine(weight=w, bias=np.zeros(w.shape[0], w.dtype),
                                        metadata=dict(node.metadata or {}))
        elif isinstance(node, nir.AvgPool2d):
            _avgpool(ng, name, node, problems)
        elif isinstance(node, nir.SumPool2d) and np.any(_arr(node.padding) != 0):
            problems.append(f"SumPool2d {name!r} has padding; Sinabs builds it without")
        elif isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF, nir.LI)):
            problems.append(f"{type(node).__name__} {name!r} is not a CF layer: Sinabs reads "
                            f"every neuron as multi-spike, reset by subtraction, where it "
                            f"fires binary spikes")
        elif not isinstance(node, _RUNS):
            problems.append(f"{type(node).__name__} {name!r}: Sinabs's importer has no "
                            f"module for it")
    joins = sorted({b for _, b in ng.edges if len(predecessors(ng, b)) > 1})
    if joins:  # nirtorch/graph_utils.py:71 orders nodes depth-first, not topologically
        problems.append(f"{', '.join(map(repr, joins))} sum several inputs (a residual "
                        f"add); nirtorch 2.0.2 runs Sinabs's graph depth first and drops "
                        f"an input not computed yet: no residual networks")
    if has_cycle(ng):
        problems.append("the graph is recurrent; Sinabs's layers run the whole window at "
                        "once, so no NIR edge can close a loop")
    refuse(NAME, problems)
    if cfs:
        log.warning("export for Sinabs: Sinabs emits trunc(u/θ) spikes without cf2neuro's "
                    "cap K, so each CF layer runs identically while u < (K+1)·θ [nodes: %s]",
                    ", ".join(f"{n} (K={p['K']})" for n, p in cfs.items()))
    return ng


def _cf_neuron(name: str, node, p: dict, problems: list[str]):
    """A CF layer as the NIR neuron Sinabs runs as that CF neuron (None: refused).

    No floor: a nir.LIF (β = 1: τ = ∞, which exp(-1/τ) makes exactly 1 and which gets no
    floor, unlike IF). A floor v_min = -θ with β = 1 (read --from sinabs): Sinabs's IF.
    """
    bad = []
    if p["signed"]:
        bad.append("signed (Sinabs never spikes below zero): train with --neuron "
                   "signed=false")
    if p["reset"] != "subtract":
        bad.append("reset=zero (Sinabs resets by subtraction): train with --neuron "
                   "reset=subtract")
    if p["K"] < 2:
        bad.append("max_spikes=1 (Sinabs emits trunc(u/θ) spikes without a cap, so it "
                   "differs wherever u >= 2θ): train with --neuron max_spikes=2 or more")
    full = tuple(int(s) for s in np.asarray(node.input_type["input"]).reshape(-1))
    theta = np.broadcast_to(np.asarray(p["threshold"], np.float32), full)  # as cf2neuro runs it
    beta = np.asarray(p["beta"], dtype=np.float64)
    v_min = (node.metadata or {}).get("v_min")
    if v_min is not None:  # Sinabs has one floor: IF's -θ
        if np.all(beta == 1.0) and np.array_equal(np.broadcast_to(
                np.asarray(v_min, np.float32), full), -theta):
            if bad:
                problems.append(f"CF layer {name!r}: " + "; ".join(bad))
                return None
            return nir.IF(r=np.ones(full, np.float32), v_threshold=theta.copy(),
                          v_reset=np.zeros(full, np.float32), metadata=dict(node.metadata))
        bad.append("a membrane floor v_min other than -θ with beta=1 (Sinabs's IF's)")
    tau = np.full(beta.shape, np.inf, np.float32)
    for b in np.unique(beta[beta != 1.0]):
        t = tau_for(float(b))
        if t is None:
            bad.append(f"beta={float(b)!r} is no float32 exp(-1/tau) (Sinabs's decay; "
                       f"every beta >= 0.5 tried is)")
            break
        tau[beta == b] = t
    shape = _shape(full, theta, beta)
    if shape is None:
        bad.append("per-pixel threshold or beta: Sinabs cannot import a LIF whose "
                   "parameters vary over H, W (sinabs/nir.py:97); use per-channel ones")
    if bad:
        problems.append(f"CF layer {name!r}: " + "; ".join(bad))
        return None

    def fit(a):  # float32 (Sinabs keeps a float64 θ float64), in the parameter shape
        a = np.broadcast_to(np.asarray(a, np.float32), full)
        return (a if shape == full else a.reshape(full[0], -1)[:, 0].reshape(shape)).copy()
    return nir.LIF(tau=fit(tau), r=fit(1.0), v_leak=fit(0.0), v_threshold=fit(theta),
                   metadata=dict(node.metadata))


def _shape(full: tuple, theta: np.ndarray, beta: np.ndarray):
    """The parameter shape: the layer's if 1-D, else [C, 1, 1] (Sinabs's any(v_leak))."""
    if len(full) <= 1:
        return full
    for a in (theta, beta):
        b = np.broadcast_to(a, full).reshape(full[0], -1)
        if not np.all(b == b[:, :1]):
            return None
    return (full[0],) + (1,) * (len(full) - 1)


def tau_for(beta: float) -> float | None:
    """A float32 τ (steps) with Sinabs's float32 exp(-1/τ) == float32(β), if one exists."""
    target = np.float32(beta)
    t0 = np.float32(-1.0 / np.log(beta))
    cands = [t0]
    up = down = t0
    for _ in range(64):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
        cands += [up, down]
    hits = np.asarray(cands)[alpha(np.asarray(cands)) == target]
    return float(hits[0]) if hits.size else None


def _avgpool(ng: nir.NIRGraph, name: str, node, problems: list[str]) -> None:
    """AvgPool2d(k) as SumPool2d(k) with 1/k² folded into the weight layers it feeds.

    Exact only where 1/k² is a power of two (avg(x)·w == sum(x)·(w/k²) bit for bit).
    """
    k = [int(v) for v in _arr(node.kernel_size).reshape(-1)]
    k = k * 2 if len(k) == 1 else k
    area = k[0] * k[1]
    why = []
    if np.any(_arr(node.padding) != 0):
        why.append("it has padding")
    if area & (area - 1):
        why.append(f"its 1/{area} is no power of two (folding it into the next weights "
                   f"rounds); use 2x2 or 4x4 pools")
    targets, seen = [], set()
    todo = list(successors(ng, name))
    while todo and not why:
        s = todo.pop()
        n = ng.nodes[s]
        if isinstance(n, nir.Flatten) and s not in seen:
            seen.add(s)
            todo += successors(ng, s)
        elif isinstance(n, (nir.Affine, nir.Linear, nir.Conv2d)) and \
                all(p in seen or p == name for p in predecessors(ng, s)):
            targets.append(s)
        else:
            why.append(f"it feeds {s!r} ({type(n).__name__}), not only weight layers")
    if why:
        problems.append(f"AvgPool2d {name!r} (Sinabs imports only SumPool2d, so cf2neuro "
                        f"folds 1/k² into the weights after it): " + "; ".join(why))
        return
    for t in targets:
        n = ng.nodes[t]
        n.weight = (_arr(n.weight) / area).astype(_arr(n.weight).dtype)
    ng.nodes[name] = nir.SumPool2d(kernel_size=np.array(k), stride=_arr(node.stride),
                                   padding=np.zeros(2, np.int64))
