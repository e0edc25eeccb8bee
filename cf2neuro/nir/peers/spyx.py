"""Spyx (read only: Spyx needs JAX, which cf2neuro does not install).

Spyx's exporter writes a LIF/LI/CubaLIF with ``r = β`` (its decay, not an
input gain) and ``tau = dt/(1-β)`` for a neuron that charged ``v = β·v + x``;
its importer ignores r and scales the weights in front by dt/tau (NIR's
Euler step with r = 1). So a file whose ``r`` equals ``1 - dt/tau`` is read
as Spyx wrote it (unit gain, ``r = tau/dt``), any other with r = 1, as
Spyx's importer runs it (lif_norse.nir in lif_spyx.csv).
Spyx's neurons fire from the potential of the step before and subtract θ
after the decay; cf2neuro's neurons fire in the same step, so spike times
can differ by one step (a warning says so).
"""

from __future__ import annotations

import logging

import nir
import numpy as np

from ..values import _arr
from . import walk

log = logging.getLogger(__name__)

NAME = "spyx"
VERSION = "0.1"
NIR_104 = False


def read(ng: nir.NIRGraph, dt: float | None) -> tuple[nir.NIRGraph, float | None]:
    if dt is None and ng.metadata and "dt" in ng.metadata:
        dt = float(ng.metadata["dt"])
    if dt is None:
        return ng, dt  # the importer asks for --dt where neurons need one
    spiking = False
    for _, name, node in walk(ng):
        if isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):
            tau = _arr(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)
            tau = tau.astype(np.float64)
            r = _arr(node.r).astype(np.float64)
            node.r = tau / dt if np.allclose(r, 1 - dt / tau) else np.ones_like(r)
            spiking |= not isinstance(node, nir.LI)
    if spiking:
        log.warning("read as Spyx: its neurons fire from the previous step's potential; "
                    "cf2neuro's fire in the same step, so spikes may come one step earlier")
    return ng, dt
