"""snnTorch 1.0.0: how its NIR importer and exporter compute (`snntorch.import_nir`, `export_nir`).

Read (`--from snntorch`):
- dt is 1e-4 s, hard-coded in both directions and never written into the
  graph; a user's --dt cannot change what snnTorch ran.
- LIF -> ``Leaky(beta = 1 - dt/tau, threshold = v_threshold / w)`` with
  ``w = r·dt/tau`` (its "hack_w_scale": the input gain moves into the
  threshold, ``np.unique(w)[0]`` for the whole layer), reset to zero at
  once (``reset_delay=False``), a binary spike when ``mem > threshold``:
  the CF neuron ``K = 1``, unsigned, reset zero, with that β and θ, so the
  membrane is snnTorch's ``mem`` (lif_snntorch.csv's voltage, 25x Norse's).
- CubaLIF -> ``Synaptic(alpha, beta, threshold / (w_in·dt/tau_syn))``:
  ``syn = α·syn + x``, ``mem = β·mem + syn``; restated as NIR CubaLIF with
  ``w_in = tau_syn/dt`` and that threshold (needs ``r = tau_mem/dt``, as
  snnTorch asserts). Recurrent subgraphs (RLeaky, RSynaptic) read alike.
- IF -> ``Leaky(beta=0.9)`` built with ``init_hidden=False``: its graph
  cannot run (a bug), so a file with nir.IF is refused.

Write (`--for snntorch`): snnTorch builds every LIF as that reset-to-zero
binary Leaky, so only CF layers with K = 1, unsigned, reset zero and one θ
per layer run exactly. Compensated: tau and r are restated for its dt
(1e-4); β = 1 becomes a LIF with ``tau = dt·2^60`` (β = 1 - 2^-60 rounds to
1.0, ``r·dt/tau`` is exactly 1) because its nir.IF is broken; its importer
builds ``nn.Flatten(start_dim, end_dim)`` with NIR's per-sample dims as
torch dims, so Flatten dims are written one higher. Refused: SumPool2d
(snnTorch has none: export the float graph, whose pools are AvgPool2d).
"""

from __future__ import annotations

import nir
import numpy as np

from ...errors import UnsupportedError
from ..values import _arr
from . import binary_zero_problems, cf_metadata, cf_nodes, refuse, uniform, walk

NAME = "snntorch"
VERSION = "1.0.0"
NIR_104 = False
DT = 1e-4  # snntorch.import_nir and export_nir


def read(ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float]:
    for graph, name, node in list(walk(ng)):
        if isinstance(node, nir.IF):
            raise UnsupportedError(
                f"node {name!r} is a nir.IF: snnTorch {VERSION} reads it as Leaky(beta=0.9) "
                f"with init_hidden=False and cannot run it, so there is no snnTorch run to "
                f"reproduce; read the file without --from (NIR's own IF)")
        if isinstance(node, nir.LIF):
            tau, r = _arr(node.tau).astype(np.float64), _arr(node.r).astype(np.float64)
            w = np.unique(r * DT / tau)[0]
            theta = uniform(node.v_threshold, "threshold", name, NAME) / w
            _zero_leak(node, name)
            node.metadata = {**(node.metadata or {}),
                             **cf_metadata(1.0 - DT / tau, theta, 1, False, "zero")}
        elif isinstance(node, nir.CubaLIF):
            tau_syn = _arr(node.tau_syn).astype(np.float64)
            w = _arr(node.w_in).astype(np.float64) * DT / tau_syn
            theta = uniform(_arr(node.v_threshold) / w, "threshold", name, NAME)
            _zero_leak(node, name)
            graph.nodes[name] = nir.CubaLIF(
                tau_syn=tau_syn, tau_mem=_arr(node.tau_mem), r=_arr(node.tau_mem) / DT,
                v_leak=_arr(node.v_leak), v_threshold=np.full(tau_syn.shape, theta),
                w_in=tau_syn / DT, v_reset=np.zeros(tau_syn.shape))
    return ng, DT


def _zero_leak(node, name: str) -> None:
    if np.any(_arr(node.v_leak) != 0):
        raise UnsupportedError(f"node {name!r} has v_leak != 0, which snnTorch {VERSION} "
                               f"does not support (its importer asserts v_leak == 0)")


def write(ng: nir.NIRGraph) -> nir.NIRGraph:
    problems = []
    for name, p in cf_nodes(ng).items():
        why = binary_zero_problems(p, "snnTorch's Leaky", "snnTorch's importer builds "
                                   "reset-to-zero Leaky layers (reset_mechanism='zero')")
        if np.unique(p["threshold"]).size != 1:
            why.append("per-neuron thresholds: snnTorch holds one per layer")
        if why:
            problems.append(f"CF layer {name!r}: " + ", ".join(why))
            continue
        beta = np.broadcast_to(p["beta"], _arr(ng.nodes[name].v_threshold).shape)
        tau = np.where(beta == 1.0, DT * 2.0 ** 60, DT / np.where(beta == 1.0, 0.5, 1 - beta))
        old = ng.nodes[name]
        ng.nodes[name] = nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(tau.shape),
                                 v_threshold=_arr(old.v_threshold), v_reset=np.zeros(tau.shape),
                                 metadata=old.metadata)
    for name, node in ng.nodes.items():
        if isinstance(node, nir.SumPool2d):
            problems.append(f"{name!r} is a sum pooling, which snnTorch {VERSION} does not "
                            f"import: export the float checkpoint (its pools are AvgPool2d)")
    refuse(NAME, problems + (["train with --neuron reset=zero max_spikes=1 signed=false"]
                             if problems else []))
    ng.metadata["dt"] = DT
    return ng
