"""Reading NIR neurons: LIF, IF, LI, CubaLIF, and cf2neuro's CF neurons written as LIF/IF.

A LIF/IF whose metadata says it is a cf2neuro CF neuron comes back as the
exact ``CFNeuron`` (θ, β, K, signed, reset); any other neuron as the IR op of
its NIR type, resetting to zero unless cf2neuro marked a subtraction.
"""

from __future__ import annotations

import nir
import numpy as np

from ..errors import BadInputError
from .discretize import lif_to_beta
from .values import CF_NEURON, KEY_NEURON, Imported, _arr, _plain, _uniform


def _reset(node, ctx) -> dict:
    """cf2neuro marks reset by subtraction in metadata; NIR itself resets to v_reset."""
    sub = ctx.read_cf_metadata and _plain(node.metadata.get("reset")) == "subtract"
    return {"reset": "subtract" if sub else "zero"}


def _fields(node, names) -> dict:
    return {k: _arr(getattr(node, k)) for k in names if getattr(node, k, None) is not None}


def _is_cf(node, ctx) -> bool:
    return ctx.read_cf_metadata and _plain(node.metadata.get(KEY_NEURON)) == CF_NEURON


def _cf(name, node, ctx) -> Imported:
    """A cf2neuro CF neuron written as LIF/IF: exact values from its metadata."""
    m = {k: _plain(v) for k, v in node.metadata.items()}
    params = {}
    for key in ("threshold", "beta"):
        if f"{key}_array" in m:
            params[key] = np.asarray(m[f"{key}_array"])
    if "v_min" in m:  # a membrane floor: Sinabs's min_v_mem
        params["v_min"] = np.asarray(m["v_min"], np.float64)
    theta = m.get("threshold")
    if theta is None:  # metadata as DESIGN §3 minimally states it: derive θ and β
        theta = _uniform(_arr(node.v_threshold))
        if theta is None:
            params["threshold"], theta = _arr(node.v_threshold), 1.0
    beta = m.get("beta")
    if beta is None:
        if isinstance(node, nir.IF):
            beta = 1.0
        else:
            if ctx.dt is None:
                raise BadInputError(f"{ctx.where}: CF node {name!r} gives no beta and the "
                                    f"graph no dt: pass --dt")
            b = lif_to_beta(node.tau, ctx.dt)
            beta = _uniform(b)
            if beta is None:
                params["beta"], beta = b, 0.5
    reset = _plain(m.get("reset", "subtract"))
    if reset not in ("subtract", "zero"):
        raise BadInputError(f"{ctx.where}: CF node {name!r} says reset {reset!r}; cf2neuro "
                            f"writes 'subtract' or 'zero'")
    attrs = {"threshold": float(theta), "beta": float(beta), "max_spikes": int(m.get("K", 1)),
             "signed": bool(m.get("signed", False)), "reset": reset}
    return "CFNeuron", params, attrs


def _lif(name, node: nir.LIF, ctx) -> Imported:
    if _is_cf(node, ctx):
        return _cf(name, node, ctx)
    return "LIF", _fields(node, ("tau", "r", "v_leak", "v_threshold", "v_reset")), _reset(node, ctx)


def _if(name, node: nir.IF, ctx) -> Imported:
    if _is_cf(node, ctx):
        return _cf(name, node, ctx)
    return "IF", _fields(node, ("r", "v_threshold", "v_reset")), _reset(node, ctx)


def _li(name, node: nir.LI, ctx) -> Imported:
    return "LI", _fields(node, ("tau", "r", "v_leak")), {}


def _cubalif(name, node: nir.CubaLIF, ctx) -> Imported:
    return "CubaLIF", _fields(node, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                     "v_reset", "w_in")), _reset(node, ctx)


def _needs_dt(node, ctx) -> bool:
    """Neurons whose time constants Euler-steps with dt (CF metadata carries β itself)."""
    if isinstance(node, (nir.LI, nir.CubaLIF, nir.Delay)):  # a Delay is in seconds
        return True
    if isinstance(node, nir.LIF):
        return not (_is_cf(node, ctx) and "beta" in node.metadata)
    return False
