"""Peers' NIR conventions: read a graph as a peer ran it, write one a peer runs exactly.

Each peer framework reads and writes NIR in its own way (and some wrongly);
one module per peer states its conventions as two rewrites of a
`nir.NIRGraph`, so the rest of cf2neuro never special-cases a framework:

- ``read(ng, dt) -> (ng, dt)``: a graph this peer wrote (or a graph as this
  peer's own importer runs it) restated so that cf2neuro's importer computes
  what the peer computed. Peer neurons that are CF neurons (Sinabs's
  multi-spike IAF, snnTorch's Leaky) are marked with cf2neuro's CF metadata
  (`cf_metadata`), which the importer reads exactly. `dt` is the user's
  ``--dt`` (None: the peer's own default when the file states none).
- ``write(ng) -> ng``: a graph cf2neuro lowered (its CF neurons carry their
  metadata) restated so that this peer's own importer runs it exactly as
  cf2neuro does, compensating the peer's reading conventions; what the peer
  cannot run exactly raises `UnsupportedError` with the reason and what to
  train instead.

Each module also gives ``NAME``, ``VERSION`` (the release whose conventions
it encodes, the one the live tests run) and ``NIR_104`` (the peer pins
nir 1.0.4, so the file is written portably).
"""

from __future__ import annotations

import copy
from importlib import import_module
from types import ModuleType

import nir
import numpy as np

from ...errors import BadInputError, UnsupportedError
from ..values import CF_NEURON, KEY_NEURON, _arr, _plain

PEERS = ("snntorch", "norse", "sinabs", "rockpool", "spyx")
"""Frameworks `--from` reads and (all but spyx, which is not installed here) `--for` writes."""
WRITERS = ("snntorch", "norse", "sinabs", "rockpool")


def peer(name: str) -> ModuleType:
    if name not in PEERS:
        raise BadInputError(f"unknown peer {name!r}: cf2neuro knows {', '.join(PEERS)}")
    return import_module(f"{__name__}.{name}")


def read_as(name: str, ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float | None]:
    """`ng` restated as peer `name` ran it (a copy; `ng` is left alone)."""
    return peer(name).read(copy.deepcopy(ng), dt)


def write_for(name: str, ng: nir.NIRGraph) -> nir.NIRGraph:
    """`ng` (cf2neuro's lowering) restated so peer `name`'s importer runs it exactly."""
    if name not in WRITERS:
        raise UnsupportedError(f"cannot export for {name!r}: cf2neuro writes for "
                               f"{', '.join(WRITERS)} (and plain NIR: --for nir)")
    return peer(name).write(copy.deepcopy(ng))


# --- what the peer modules share ---------------------------------------------------

def cf_metadata(beta, threshold, max_spikes: int, signed: bool, reset: str,
                v_min=None) -> dict:
    """The node metadata that makes cf2neuro's importer read a neuron as this CF neuron.

    `beta` and `threshold` may be per-neuron arrays; a uniform one is a scalar.
    `v_min` floors the membrane after the reset (Sinabs's min_v_mem).
    """
    meta = {KEY_NEURON: CF_NEURON, "K": int(max_spikes), "signed": bool(signed),
            "reset": reset}
    if v_min is not None:  # h5py cannot write a 0-d array with compression: a float
        a = np.asarray(v_min, dtype=np.float64)
        meta["v_min"] = float(a) if a.ndim == 0 else a
    for key, value in (("beta", beta), ("threshold", threshold)):
        a = np.asarray(value, dtype=np.float64)
        flat = a.reshape(-1)
        if flat.size and np.all(flat == flat[0]):
            meta[key] = float(flat[0])
        else:
            meta[key], meta[f"{key}_array"] = 1.0, a
    return meta


def cf_params(node: nir.NIRNode) -> dict | None:
    """A cf2neuro CF neuron's (beta, threshold, K, signed, reset) from its metadata, or None."""
    m = {k: _plain(v) for k, v in (getattr(node, "metadata", None) or {}).items()}
    if m.get(KEY_NEURON) != CF_NEURON:
        return None
    return {"beta": np.asarray(m.get("beta_array", m.get("beta", 1.0)), dtype=np.float64),
            "threshold": np.asarray(m.get("threshold_array", m.get("threshold")),
                                    dtype=np.float64),
            "K": int(m.get("K", 1)), "signed": bool(m.get("signed", False)),
            "reset": str(m.get("reset", "subtract"))}


def cf_nodes(ng: nir.NIRGraph) -> dict[str, dict]:
    """Every cf2neuro CF neuron of the graph: name -> `cf_params`."""
    return {n: p for n, p in ((n, cf_params(v)) for n, v in ng.nodes.items()) if p}


def predecessors(ng: nir.NIRGraph, name: str) -> list[str]:
    return [a for a, b in ng.edges if b == name]


def successors(ng: nir.NIRGraph, name: str) -> list[str]:
    return [b for a, b in ng.edges if a == name]


def scale_inputs(ng: nir.NIRGraph, name: str, gain: np.ndarray, peer_name: str) -> None:
    """Fold a per-neuron input gain of neuron `name` into the weights feeding it.

    Every source must be an Affine, Linear or Conv2d that feeds only `name`
    (its rows, or output channels, scale); otherwise the peer cannot run it
    exactly and this says why.
    """
    gain = np.asarray(gain, dtype=np.float64)
    for src in predecessors(ng, name):
        node = ng.nodes[src]
        if not isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)) or \
                successors(ng, src) != [name]:
            raise UnsupportedError(
                f"node {name!r}: {peer_name} ignores NIR's input gain r, so cf2neuro folds "
                f"it into the weights in front; but {src!r} ({type(node).__name__}) is not a "
                f"weight layer that feeds only {name!r}")
        g = gain.reshape(-1) if isinstance(node, (nir.Affine, nir.Linear)) else gain
        if isinstance(node, nir.Conv2d):  # per output channel: uniform over each map
            flat = gain.reshape(gain.shape[0], -1) if gain.ndim > 1 else gain.reshape(-1, 1)
            if not np.all(flat == flat[:, :1]):
                raise UnsupportedError(f"node {name!r}: a per-pixel input gain cannot be "
                                       f"folded into the convolution {src!r}")
            g = flat[:, 0]
        w = _arr(node.weight)
        node.weight = (w * g.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        if getattr(node, "bias", None) is not None:
            b = _arr(node.bias)
            node.bias = (b * g.reshape(b.shape)).astype(b.dtype)


def neurons(ng: nir.NIRGraph, *types) -> dict[str, nir.NIRNode]:
    return {n: v for n, v in ng.nodes.items() if isinstance(v, types)}


def refuse(peer_name: str, problems: list[str]) -> None:
    """Raise one UnsupportedError listing every reason, if any."""
    if problems:
        raise UnsupportedError(f"{peer_name} cannot run this network exactly: "
                               + "; ".join(problems))


def walk(ng: nir.NIRGraph):
    """(graph, name, node) for every node, nested graphs' nodes included (snnTorch's RLeaky)."""
    for name, node in ng.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from walk(node)
        else:
            yield ng, name, node


def uniform(a, what: str, name: str, peer_name: str) -> float:
    """The one value of `a`; a peer that holds one per layer cannot run per-neuron values."""
    flat = np.asarray(_arr(a), dtype=np.float64).reshape(-1)
    if not flat.size or not np.all(flat == flat[0]):
        raise UnsupportedError(f"{peer_name} holds one {what} per layer; node {name!r} has "
                               f"per-neuron values")
    return float(flat[0])



def has_cycle(ng: nir.NIRGraph) -> bool:
    """Whether the top-level graph has a loop (a recurrent edge)."""
    succ: dict[str, list[str]] = {}
    for a, b in ng.edges:
        succ.setdefault(a, []).append(b)
    state: dict[str, int] = {}

    def visit(n: str) -> bool:  # 1: on the path, 2: done
        state[n] = 1
        for m in succ.get(n, []):
            if state.get(m) == 1 or (m not in state and visit(m)):
                return True
        state[n] = 2
        return False
    return any(n not in state and visit(n) for n in list(ng.nodes))


def binary_zero_problems(p: dict, neuron: str, reset: str) -> list[str]:
    """Why CF neuron `p` is not the binary, unsigned, reset-to-zero LIF a peer builds."""
    why = []
    if p["K"] != 1:
        why.append(f"graded spikes (K={p['K']}): {neuron} sends one spike")
    if p["signed"]:
        why.append(f"negative spikes (signed): {neuron} has none")
    if p["reset"] != "zero":
        why.append(f"reset by subtraction: {reset}")
    return why
