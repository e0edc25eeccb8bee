"""Norse 1.1.0: how its NIR importer and exporter compute (`norse.torch.utils.import_nir`,
`export_nir`).

Read (`--from norse`), as Norse's ``from_nir`` runs a graph:
- LIF -> ``LIFBoxCell``: ``v += dt/tau·((v_leak - v) + x)``, spike when
  ``v > v_th``, then ``v = 0`` (its ``v_reset`` default; the file's is not
  read). ``r`` is ignored (it only warns): read as 1. IF -> ``IAFCell``:
  ``v += x``, reset to 0, ``r`` ignored. CubaLIF: ``w_in·x`` into an LI
  synapse (leaking toward the neuron's ``v_leak``), then ``r·I`` into the
  LIFBox: NIR's CubaLIF when ``v_leak = 0``, else refused.
- Norse's exporter writes ``tau = dt/tau_mem_inv = dt·tau`` (seconds
  squared): a tau shorter than one step cannot be a real time constant
  (cf2neuro refuses dt/tau >= 1), so such a tau is read as Norse's ``dt·tau``
  and divided by dt. That makes a Norse export run as the Norse model ran;
  Norse's own importer runs it with ``1/(dt·tau)`` (a Norse bug, pinned by
  the live tests).
- dt: the user's --dt, else the file's, else Norse's ``from_nir`` default
  1e-3 s (Norse writes none).

Write (`--for norse`): Norse ignores r and resets to zero, so a CF layer
runs exactly when K = 1, unsigned, reset zero: its input gain ``r =
1/(1-β)`` is folded into the weights in front (r = 1 in the file; the node
then is a plain LIF, so cf2neuro's CF metadata is dropped), tau is restated
for Norse's default dt (1e-3, also written as the graph's dt), β = 1 stays
nir.IF (Norse's IAF: ``v += x``). Norse imports SumPool2d but no AvgPool2d:
an AvgPool2d is refused (export --target, whose pools are sum pools, or a
network without pooling). Like snnTorch, Norse builds ``nn.Flatten`` from
NIR's per-sample dims as torch dims: feed an image network unbatched.
"""

from __future__ import annotations

import nir
import numpy as np

from ...errors import UnsupportedError
from ..values import KEY_NEURON, _arr
from . import binary_zero_problems, cf_nodes, refuse, scale_inputs, walk

NAME = "norse"
VERSION = "1.1.0"
NIR_104 = False
DT = 1e-3  # norse.torch.utils.import_nir.from_nir's default


def read(ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float]:
    if dt is None:
        dt = float(ng.metadata.get("dt", DT)) if ng.metadata else DT
    for graph, name, node in list(walk(ng)):
        if isinstance(node, (nir.LIF, nir.LI, nir.IF)):
            node.r = np.ones_like(_arr(node.r))
        if isinstance(node, (nir.LIF, nir.LI)):
            node.tau = _seconds(node.tau, dt)
        elif isinstance(node, nir.CubaLIF):
            if np.any(_arr(node.v_leak) != 0):
                raise UnsupportedError(f"node {name!r}: Norse's CubaLIF leaks its synaptic "
                                       f"current toward v_leak, which NIR does not; only "
                                       f"v_leak = 0 reads the same")
            node.tau_syn, node.tau_mem = _seconds(node.tau_syn, dt), _seconds(node.tau_mem, dt)
        if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)) and hasattr(node, "v_reset"):
            node.v_reset = np.zeros_like(_arr(node.v_threshold))
    return ng, dt


def _seconds(tau, dt: float) -> np.ndarray:
    """A tau in seconds: Norse's exporter writes dt·tau, which is shorter than a step."""
    tau = _arr(tau).astype(np.float64)
    return tau / dt if np.all(tau < dt) else tau


def write(ng: nir.NIRGraph) -> nir.NIRGraph:
    problems = []
    for name, p in cf_nodes(ng).items():
        why = binary_zero_problems(p, "Norse's LIFBox",
                                   "Norse's importer resets to v_reset = 0")
        if why:
            problems.append(f"CF layer {name!r}: " + ", ".join(why))
            continue
        node = ng.nodes[name]
        meta = {k: v for k, v in node.metadata.items() if k != KEY_NEURON}
        if isinstance(node, nir.IF):
            node.metadata = meta
            continue
        beta = np.broadcast_to(p["beta"], _arr(node.v_threshold).shape)
        scale_inputs(ng, name, 1.0 / (1.0 - beta), "Norse")
        tau = DT / (1.0 - beta)
        ng.nodes[name] = nir.LIF(tau=tau, r=np.ones(tau.shape), v_leak=np.zeros(tau.shape),
                                 v_threshold=_arr(node.v_threshold),
                                 v_reset=np.zeros(tau.shape), metadata=meta)
    for name, node in ng.nodes.items():
        if isinstance(node, nir.AvgPool2d):
            problems.append(f"{name!r} is an average pooling, which Norse {VERSION} does not "
                            f"import (it imports SumPool2d): export with --target, whose "
                            f"pools are sum pools")
    refuse(NAME, problems + (["train with --neuron reset=zero max_spikes=1 signed=false"]
                             if any("CF layer" in p for p in problems) else []))
    ng.metadata["dt"] = DT
    return ng
