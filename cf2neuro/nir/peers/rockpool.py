"""Rockpool 3.1.0 (SynSense): its NIR conventions, read from its source
(rockpool/nn/modules/torch/nir.py, lif_torch.py, lif_neuron_torch.py, exp_syn_torch.py).

How Rockpool computes (per step, float32, decays ``exp(-dt/τ)``, not Euler):

- ``LIFTorch`` (written and read as ``nir.CubaLIF``): ``i = β_s·(i + x + W_rec·s)``,
  ``v = α·v + i + bias``, ``n = (v >= θ)·floor(v/θ)`` capped at ``max_spikes_per_dt``
  = 2^16, ``v -= n·θ`` (lif_torch.py:43-46, 686-709): after its synapse, a CF neuron
  (unsigned, reset "subtract", K = 2^16). ``LIFNeuronTorch`` (``nir.LIF``): the same
  without the synapse (lif_neuron_torch.py:256-272). ``ExpSynTorch`` (``nir.LI``):
  ``i = β·(i + x)`` (exp_syn_torch.py:128-131).
- Its exporter writes ``r = τ·exp(-dt/τ)/dt`` (nir.py:249/267/288: the file encodes dt)
  and ``v_leak = 0`` (the bias is lost); its importer reads ``dt = min(τ/(1+r))``
  (nir.py:91/121/133: not the inverse of that r), the bias from v_leak, ignores r and
  w_in, and has no LIF (``node.tau_mem`` on a nir.LIF, nir.py:118), IF, Flatten, Conv2d,
  pooling or Scale (nir.py:153): from_nir then fails.

`read` restates a graph as the Rockpool network it describes: dt from the user,
else the file's metadata, else decoded from Rockpool's r (files cf2neuro wrote
``--for rockpool`` by its importer's rule instead). Each neuron becomes a CF
neuron (its float32 α and θ), a non-zero bias an identity Affine in front of it, and
the synapse ``i = β_s·(i + x)`` a NIR LI Euler-stepped as ``i + (1-β_s)·(0 - i) +
β_s·x``: the same to float32 rounding (the IR has no op that computes it exactly), or
a Scale by β_s when every β_s < 2^-24 (no memory at float32 resolution).

`write` lowers CF layers (K = 2^16, unsigned, reset subtract) to CubaLIF with
τ_syn = dt/40 (β_s = e^-40: the synapse keeps only the current step, to float32
rounding) and 1/β_s folded into the weights in front; anything else is refused.
"""

from __future__ import annotations

import json
import logging

import nir
import numpy as np
import torch

from ...errors import BadInputError
from ..values import KEY_ORDER, _arr, _plain
from . import (cf_metadata, cf_nodes, cf_params, has_cycle, predecessors, refuse, scale_inputs,
               successors)

log = logging.getLogger(__name__)

NAME = "rockpool"
VERSION = "3.1.0"
NIR_104 = True
K = 2 ** 16               # LIFTorch's max_spikes_per_dt, which from_nir keeps
SYN_STEPS = 40.0          # write: τ_syn = dt/40, β_s = exp(-40) ≈ 4e-18
TINY = 2.0 ** -24         # a synapse decay below float32 resolution: no memory
TRAIN = ("train with --neuron signed=false reset=subtract max_spikes=K (K >= 2; exact while "
         "u < (K+1)θ, always at K=65536)")


def decay(dt: float, tau, shape=None) -> np.ndarray:
    """exp(-dt/τ) as Rockpool computes it (float32 torch; tau_syn has shape (N, 1))."""
    t = torch.as_tensor(np.asarray(_arr(tau), dtype=np.float32))
    t = t.reshape(shape) if shape is not None else t
    return torch.exp(-dt / t).reshape(-1).numpy()


# --- read: a graph as the Rockpool network it describes ------------------------------

def read(ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float | None]:
    meta = {k: _plain(v) for k, v in (ng.metadata or {}).items()}
    ours = meta.get("cf2neuro.for") == NAME  # decays stated for Rockpool's importer's dt
    file_dt = float(meta["dt"]) if isinstance(meta.get("dt"), (int, float)) else None
    graph_dt = dt if dt is not None else file_dt
    ctx = {"dt": dt if dt is not None or ours else file_dt, "graph_dt": graph_dt, "ours": ours}
    _read_nodes(ng, ctx)
    return ng, ctx["graph_dt"]


def _read_nodes(g: nir.NIRGraph, ctx: dict) -> None:
    for name, node in list(g.nodes.items()):
        if isinstance(node, nir.NIRGraph):
            _read_nodes(node, ctx)
        elif cf_params(node) is not None:
            continue  # a cf2neuro CF neuron already
        elif isinstance(node, (nir.LIF, nir.CubaLIF)):
            cuba = isinstance(node, nir.CubaLIF)
            tau = _arr(node.tau_mem if cuba else node.tau)
            d = _dt(name, tau, node.r, ctx)
            theta = _arr(node.v_threshold).astype(np.float32)
            g.nodes[name] = nir.LIF(
                tau=tau, r=np.ones(tau.shape), v_leak=np.zeros(tau.shape),
                v_threshold=theta, metadata=cf_metadata(
                    decay(d, tau).reshape(tau.shape), theta, K, False, "subtract"))
            if cuba:
                _synapse(g, name, decay(d, node.tau_syn, (-1, 1)).reshape(tau.shape), ctx)
            bias = _arr(node.v_leak).astype(np.float32)
            if np.any(bias != 0):  # Rockpool adds v_leak every step (its bias)
                flat = bias.reshape(-1)
                _insert(g, name, f"{name}.bias",
                        nir.Affine(weight=np.eye(flat.size, dtype=np.float32), bias=flat))
        elif isinstance(node, nir.LI):  # ExpSynTorch: i = β·(i + x), its output
            tau = _arr(node.tau)
            beta = decay(_dt(name, tau, node.r, ctx), tau).reshape(tau.shape)
            _synapse(g, name, beta, ctx, replace=True)


def _synapse(g, name: str, beta: np.ndarray, ctx: dict, replace: bool = False) -> None:
    """i = β·(i + x) in front of `name` (or in its place): an Euler LI, or a Scale."""
    beta = beta.astype(np.float64)
    if np.all(beta < TINY):
        node = nir.Scale(scale=beta.astype(np.float32))
    else:
        # Euler's dt/τ = 1-β, r·dt/τ = β: i + (1-β)·(0 - i) + β·x; a decay below 2^-24
        # is kept at 2^-24 (the same to float32 resolution) so that dt/τ stays below 1
        a = 1.0 - np.maximum(beta, TINY)
        node = nir.LI(tau=ctx["graph_dt"] / a, r=beta / a, v_leak=np.zeros(beta.shape))
    if replace:
        g.nodes[name] = node
    else:
        _insert(g, name, f"{name}.syn", node)


def _insert(g, name: str, new: str, node) -> None:
    """`new` between `name` and everything that feeds it."""
    if new in g.nodes:
        raise BadInputError(f"cannot read {name!r} as Rockpool runs it: the graph already "
                            f"has a node {new!r}")
    g.edges = [(a, new if b == name else b) for a, b in g.edges] + [(new, name)]
    g.nodes[new] = node


def _dt(name: str, tau, r, ctx: dict) -> float:
    """The step Rockpool ran node `name` with (the user's, the file's, else from r)."""
    if ctx["dt"] is not None:
        d = ctx["dt"]
    elif ctx["ours"]:  # written for Rockpool's importer: its rule (nir.py:91/121/133)
        q = np.asarray(_arr(tau), np.float32) / (np.float32(1) + np.asarray(_arr(r), np.float32))
        d = float(np.min(q))
    else:
        d = decode_dt(tau, r, name)
    if ctx["graph_dt"] is None:
        ctx["graph_dt"] = d
    return d


def decode_dt(tau, r, name: str = "?") -> float:
    """The dt of Rockpool's exporter's r = τ·exp(-dt/τ)/dt (nir.py:249/267/288).

    With s = dt/τ: log s + s + log r = 0, concave in s; Newton from s = 1/(1+r)
    (Rockpool's importer's guess, left of the root) converges from below.
    """
    tau = np.asarray(_arr(tau), np.float64).reshape(-1)
    r = np.broadcast_to(np.asarray(_arr(r), np.float64).reshape(-1), tau.shape)
    if not tau.size or np.any(~np.isfinite(tau)) or np.any(tau <= 0) or np.any(r <= 0):
        raise BadInputError(f"node {name!r}: Rockpool writes r = tau·exp(-dt/tau)/dt > 0 "
                            f"with tau > 0; this node does not: pass --dt")
    s = 1.0 / (1.0 + r)
    for _ in range(50):
        s = s - (np.log(s) + s + np.log(r)) / (1.0 / s + 1.0)
    d = s * tau
    mid = float(np.median(d))
    if np.any(np.abs(d - mid) > 1e-5 * mid):
        raise BadInputError(f"node {name!r}: its r does not state one dt the way Rockpool "
                            f"writes it (r = tau·exp(-dt/tau)/dt gives {d.min():.6g} .. "
                            f"{d.max():.6g} s): pass --dt")
    snapped = float(f"{mid:.6g}")  # r is float32: the dt Rockpool had is the round one
    return snapped if abs(snapped - mid) <= 1e-6 * mid else mid


# --- write: a CF network Rockpool's from_nir runs as cf2neuro does --------------------

def write(ng: nir.NIRGraph) -> nir.NIRGraph:
    cf = cf_nodes(ng)
    problems = _problems(ng, cf)
    refuse(NAME, problems + ([TRAIN] if any("CF layer" in p for p in problems) else []))
    for name in [n for n, v in ng.nodes.items() if isinstance(v, nir.Flatten)]:
        _drop(ng, name)  # a Flatten of a vector: Rockpool has no Flatten (nir.py:153)
    d = rockpool_dt(float(_plain(ng.metadata.get("dt"))))
    for name, p in cf.items():
        theta = np.asarray(_arr(ng.nodes[name].v_threshold), np.float32)
        beta = np.broadcast_to(p["beta"], theta.shape)
        tau_mem, r, d_run = membrane(beta, d)
        tau_syn = np.full(theta.shape, d / SYN_STEPS, np.float32)
        gain = 1.0 / decay(d_run, tau_syn, (-1, 1)).astype(np.float64)
        scale_inputs(ng, name, gain.reshape(theta.shape), NAME)
        ng.nodes[name] = nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=r,
                                     v_leak=np.zeros(theta.shape, np.float32),
                                     v_threshold=theta, w_in=np.ones(theta.shape, np.float32))
    return ng


def _problems(ng: nir.NIRGraph, cf: dict) -> list[str]:
    problems = []
    for name, node in ng.nodes.items():
        if name in cf:
            p, why = cf[name], []
            if p["K"] < 2:
                why.append("K=1: Rockpool's LIFTorch fires floor(v/θ) spikes, up to 2^16, "
                           "per step, so a binary layer differs wherever v >= 2θ")
            elif p["K"] != K:  # as for Sinabs: usable, exact while the cap is not reached
                log.warning("export --for rockpool: CF layer %r caps at K=%d spikes per step; "
                            "Rockpool caps at 2^16, so they agree while u < (K+1)θ",
                            name, p["K"])
            if p["signed"]:
                why.append("negative spikes (signed): LIFTorch fires none")
            if p["reset"] != "subtract":
                why.append("reset to zero: LIFTorch subtracts n·θ")
            srcs = predecessors(ng, name)
            if not srcs or any(not isinstance(ng.nodes[s], (nir.Affine, nir.Linear))
                               or successors(ng, s) != [name] for s in srcs):
                why.append("its input does not come only from Linear/Affine layers feeding "
                           "only it (the synaptic filter's gain is folded into them)")
            if why:
                problems.append(f"CF layer {name!r}: " + ", ".join(why))
        elif isinstance(node, nir.Flatten):
            shape = np.asarray(_arr(node.input_type.get("input", [])) if node.input_type
                               else []).reshape(-1)
            if np.count_nonzero(shape != 1) > 1:
                problems.append(f"{name!r} flattens a {list(shape)} tensor: Rockpool's "
                                f"from_nir has no Flatten (nor Conv2d or pooling): it runs "
                                f"vector (MLP) networks")
        elif isinstance(node, (nir.LIF, nir.IF, nir.LI, nir.CubaLIF)):
            problems.append(f"{name!r} is a plain NIR {type(node).__name__} (Euler-stepped, "
                            f"binary spikes in cf2neuro), not what Rockpool's LIFTorch "
                            f"computes (exp(-dt/τ) decays, floor(v/θ) spikes)")
        elif not isinstance(node, (nir.Input, nir.Output, nir.Affine, nir.Linear)):
            problems.append(f"{name!r} ({type(node).__name__}): Rockpool's from_nir reads "
                            f"only Linear, Affine and CubaLIF (and cf2neuro's CF layers)")
    if has_cycle(ng):
        problems.append("a recurrent loop: Rockpool's from_nir runs a flat cycle with the "
                        "previous call's output (nirtorch's GraphExecutor; its modules "
                        "evolve whole sequences), not the previous step's")
    return problems


def rockpool_dt(dt: float) -> float:
    """Rockpool's step for the file: a power of two near dt (any dt works: only the
    decays exp(-dt/τ) matter), so that τ/(1+r) = τ/(τ/dt) is exactly dt."""
    return float(2.0 ** np.round(np.log2(dt)))


def membrane(beta, d: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(τ_mem, r, dt') for Rockpool's from_nir: it computes dt' = min(τ/(1+r)) (float32,
    nir.py:132) and α = exp(-dt'/τ), which is β in float32 (τ searched by float32 steps).

    y = τ/d is exact (d a power of two); r = y - 1 is exact for 1/2 <= y < 2^24, so such
    a neuron gives τ/(1+r) = d exactly, and r is rounded down elsewhere (τ/(1+r) >= d).
    β = 1: y = 2^26 (α = 1 in float32), r = 2^26 (1 + r rounds to y).
    """
    b32 = np.asarray(beta, np.float32)
    with np.errstate(divide="ignore"):
        y = np.where(b32 < 1, -1.0 / np.log(b32.astype(np.float64)), 2.0 ** 26)
    tau = _search(b32, d, (y * d).astype(np.float32))
    y = tau.astype(np.float64) / d
    r = (y - 1.0).astype(np.float32)
    r = np.where(r.astype(np.float64) > y - 1.0, np.nextafter(r, np.float32(-np.inf)), r)
    r = np.where(b32 == 1, np.float32(2.0 ** 26), r)
    d_run = float(np.min(tau / (np.float32(1) + r)))
    if d_run != d:  # no neuron hits d exactly (every β < e^-2): search again at Rockpool's dt
        tau = _search(b32, d_run, tau)
        d_run = float(np.min(tau / (np.float32(1) + r)))
    return tau, r, d_run


def _search(b32: np.ndarray, d: float, tau: np.ndarray) -> np.ndarray:
    for _ in range(64):
        a = decay(d, tau).reshape(tau.shape)
        if np.array_equal(a, b32):
            break
        tau = np.where(a < b32, np.nextafter(tau, np.float32(np.inf)),
                       np.where(a > b32, np.nextafter(tau, np.float32(0)), tau))
    return tau


def _drop(ng: nir.NIRGraph, name: str) -> None:
    srcs, dsts = predecessors(ng, name), successors(ng, name)
    ng.edges = [e for e in ng.edges if name not in e] + [(a, b) for a in srcs for b in dsts]
    del ng.nodes[name]
    order = _plain(ng.metadata.get(KEY_ORDER))
    if isinstance(order, str):
        ng.metadata[KEY_ORDER] = json.dumps([n for n in json.loads(order) if n != name])
