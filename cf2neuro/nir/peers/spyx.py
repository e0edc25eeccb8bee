"""Spyx (read only: Spyx needs JAX, which cf2neuro does not install).

How Spyx computes (spyx/nir.py and spyx/nn.py, read from its source):

- Its LIF fires from the potential it *carries in*, then charges and
  subtracts: ``s_t = H(V_{t-1} - θ)``, ``V_t = β·V_{t-1} + x_t - θ·s_t``
  (IF: β = 1). That is a CF neuron (β, θ, K = 1, unsigned, reset by
  subtraction) whose own spikes feed back with weight ``-(1-β)·θ``, read one
  step later (``n'_t = s_{t+1}``): derivation in `read`. So each LIF/IF is
  read as that CF neuron, a self-connection (a `nir.Scale` on a recurrent
  edge) and a one-step `nir.Delay` on its output. Its potential before the
  reset is Spyx's ``V``. (H is strict, CF fires at u >= θ: only a potential
  exactly at θ differs.)
- Its importer ignores ``r`` and scales the weights in front of a LIF by
  dt/tau; its exporter writes ``r = β`` (the decay, not a gain) and ``tau =
  dt/(1-β)`` for a neuron that charged with unit gain. So a file whose
  ``r`` equals ``1 - dt/tau`` is read as Spyx wrote it (unit gain), any other
  as Spyx's importer runs it (gain dt/tau, lif_norse.nir in lif_spyx.csv).
- LI and CubaLIF keep NIR's own reading with that gain rule (Spyx's CubaLIF
  is not restated: a warning says so).
"""

from __future__ import annotations

import logging

import nir
import numpy as np

from ..values import _arr
from . import cf_metadata, scale_inputs, successors, uniform

log = logging.getLogger(__name__)

NAME = "spyx"
VERSION = "0.1.x"
NIR_104 = False


def read(ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float | None]:
    if dt is None and ng.metadata and "dt" in ng.metadata:
        dt = float(ng.metadata["dt"])
    if dt is None:
        return ng, dt  # the importer asks for --dt where neurons need one
    for name, node in list(ng.nodes.items()):
        if isinstance(node, (nir.LIF, nir.IF)):
            _neuron(ng, name, node, dt)
        elif isinstance(node, (nir.LI, nir.CubaLIF)):
            tau = _arr(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)
            node.r = _gain_r(_arr(node.r), tau.astype(np.float64), dt)
            if isinstance(node, nir.CubaLIF):
                log.warning("read as Spyx: CubaLIF %r keeps NIR's reading (Spyx's CuBaLIF is "
                            "not restated)", name)
    return ng, dt


def _gain_r(r: np.ndarray, tau: np.ndarray, dt: float) -> np.ndarray:
    """NIR's r for Spyx's gain: unit gain for its own export (r = β), else r = 1."""
    return tau / dt if np.allclose(r, 1 - dt / tau) else np.ones_like(r, dtype=np.float64)


def _neuron(ng: nir.NIRGraph, name: str, node, dt: float) -> None:
    """LIF/IF -> CF + self-connection -(1-β)·θ + one-step Delay (see the module doc).

    With v' the CF state after its reset, u'_t = β·v'_{t-1} + x_t - (1-β)·θ·n'_{t-1}
    equals Spyx's V_t whenever v'_{t-1} = V_{t-1} - θ·n'_{t-1}, and n'_t = H(V_t - θ)
    = s_{t+1}: by induction from zero state the CF neuron runs Spyx one step ahead.
    """
    theta = _arr(node.v_threshold).astype(np.float64)
    if isinstance(node, nir.IF):
        beta, gain = np.ones_like(theta), np.ones_like(theta)
    else:
        tau, r = _arr(node.tau).astype(np.float64), _arr(node.r).astype(np.float64)
        beta = 1.0 - dt / tau
        gain = np.ones_like(tau) if np.allclose(r, beta) else dt / tau
    if np.any(gain != 1.0):
        scale_inputs(ng, name, gain, "Spyx")
    node.metadata = {**(node.metadata or {}), **cf_metadata(
        beta, uniform(theta, "threshold", name, NAME) if theta.size else 1.0, 1, False,
        "subtract")}
    outs = successors(ng, name)
    delayed = f"{name}.spyx_delay"
    ng.nodes[delayed] = nir.Delay(delay=np.full(theta.shape, dt))
    edges = [(a, b) for a, b in ng.edges if a != name] + [(name, delayed)]
    edges += [(delayed, b) for b in outs]
    fed_back = -(1.0 - beta) * theta
    if np.any(fed_back != 0):
        back = f"{name}.spyx_reset"
        ng.nodes[back] = nir.Scale(scale=fed_back)
        edges += [(name, back), (back, name)]
    ng.edges = edges
