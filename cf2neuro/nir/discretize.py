"""Time steps at the NIR boundary: dt, and CF's β against NIR's τ and r.

NIR is continuous time; cf2neuro (like snnTorch) runs discrete steps. The
IR keeps NIR's own neuron parameters (tau, r, v_leak, ...) and the engine
discretizes them by **forward Euler** with the graph's ``meta["dt"]``
(`cf2neuro.ir.graph` has the equations). That is what the frameworks that
write NIR graphs do themselves:

============  ==========================================================
framework     what its NIR import/export computes per step (a = dt/tau)
============  ==========================================================
snnTorch      LIF: ``v = β·v + x`` with ``tau = dt/(1-β)``, ``r = tau/dt``
              (= Euler with unit gain); dt is hard-coded to 1e-4 s on both
              export and import and not written into the graph.
              CubaLIF: ``I = α·I + x``, ``v = β·v + I`` (tau_syn =
              dt/(1-α), w_in = tau_syn/dt). Reset to zero.
Norse         LIF (LIFBox): ``v = v + a·((v_leak - v) + x)``, spike when
              ``v > v_th``, then ``v = v_reset`` in the same step; the
              membrane it reports is the one after the reset (read off
              ``lif_norse.csv``: forward Euler reproduces its trace to
              2.4e-8 and every spike). Its importer ignores ``r`` (warns
              when r != 1); cf2neuro applies r as NIR says. IF (IAF):
              ``v = v + x``, no dt. dt defaults to 1e-3 in ``from_nir``.
Sinabs        IF (IAF): ``v = v + x``, no dt, no time constant.
Lava (NIR     ``ImportConfig.dt = 1e-4``. LIF: Lava's LIF with ``du = 1``
paper's       (no current memory), ``dv = dt/tau`` and an input weight
nir_to_lava)  ``dt/tau``: the Euler step with r taken as 1. IF (lava-dl):
              a CUBA neuron without decay, ``v = v + x``.
============  ==========================================================

So: LIF, LI and CubaLIF need dt; IF does not (an IF integrates its input as
a jump per step, as Norse, Sinabs and lava-dl do; cf2neuro applies NIR's
``r`` as that jump's gain). A graph that holds only IF and cf2neuro CF
neurons runs without any dt.

**dt resolution** (`resolve_dt`): the user's dt (``--dt``) wins over the
graph's ``metadata["dt"]`` (snnTorch writes none, and a user may know the
framework's dt better than the file); when they differ a warning says so.
Neither, in a graph whose neurons need one, is an error that says to pass
``--dt``.

**CF neurons as NIR LIF** (DESIGN §3): ``tau = dt/(1-β)``, ``r = tau/dt =
1/(1-β)`` (unit input gain), so Euler gives back the CF charge
``u = β·v + x`` (exactly in real arithmetic, to float rounding in float32);
β = 1 is written as ``nir.IF`` with ``r = 1``.
`DEFAULT_DT` is 1e-4 s because snnTorch's importer assumes it: any other
dt makes snnTorch read a wrong β from our τ.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import BadInputError, UnsupportedError

log = logging.getLogger(__name__)

DEFAULT_DT = 1e-4
"""Seconds per step written into exported graphs (snnTorch's hard-coded dt)."""


def check_dt(dt, what: str = "dt") -> float:
    """A finite dt > 0 as a float, or a BadInputError naming `what`."""
    try:
        value = float(np.asarray(dt).item())
    except (TypeError, ValueError):
        raise BadInputError(f"{what} must be a number of seconds, got {dt!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise BadInputError(f"{what} must be a finite number of seconds > 0, got {dt!r}")
    return value


def resolve_dt(user_dt, graph_dt, needed: bool, where: str) -> float | None:
    """The dt to simulate `where` with: the user's, else the graph's.

    `needed` says whether the graph has neurons with time constants; only
    then is a missing dt an error.
    """
    user = None if user_dt is None else check_dt(user_dt, "--dt")
    graph = None if graph_dt is None else check_dt(graph_dt, f"metadata dt of {where}")
    if user is not None and graph is not None and not math.isclose(user, graph, rel_tol=1e-9):
        log.warning("%s says dt = %g s, but dt = %g s was given: using %g s",
                    where, graph, user, user)
    dt = user if user is not None else graph
    if dt is None and needed:
        raise BadInputError(
            f"{where} has neurons with time constants (LIF, LI or CubaLIF) but states no "
            f"time step: pass the exporting framework's step with --dt SECONDS "
            f"(snnTorch and the NIR paper graphs use 1e-4)")
    return dt


def cf_to_lif(beta: np.ndarray, dt: float, where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(tau, r) of the NIR LIF that Euler-steps as ``u = β·v + x``; None for IF (β = 1).

    Per-neuron β mixing 1 and < 1 has no single NIR node (IF has no τ,
    LIF's τ would be infinite): refused.
    """
    beta = np.asarray(beta, dtype=np.float64)
    if np.all(beta == 1.0):
        return None
    if np.any(beta == 1.0):
        raise UnsupportedError(
            f"{where}: per-neuron beta mixes 1 (IF) and < 1 (LIF); one NIR node cannot "
            f"hold both. Use one kind per layer")
    tau = dt / (1.0 - beta)
    return tau, tau / dt


def lif_to_beta(tau: np.ndarray, dt: float) -> np.ndarray:
    """β of the Euler step ``v = (1 - dt/τ)·v + ...`` (the inverse of `cf_to_lif`)."""
    return 1.0 - dt / np.asarray(tau, dtype=np.float64)
