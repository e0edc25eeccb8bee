"""How float layers map to Loihi 2 integers: mantissas, biases, thresholds, decays.

Helpers of `quantize.py` (the per-layer algorithm is described there):
`quantize_mantissas` (8-bit weights, nearest even in mixed sign mode),
`quantize_bias` (13-bit mantissa + exponent), and one `NeuronMap` per neuron
op: how its float equation becomes cf2neuro's CF process or Lava's LIF
(threshold in float units, per-neuron gain folded into the weights, per-step
constants, integer decays).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Node
from ...targets import NumericFormat
from .numerics import DECAY_UNITY, LIF_SHIFT, sign_mode


@dataclass
class QuantOptions:
    """Knobs of `quantize` (defaults measured on digits, see the module docstring)."""

    clip_percentile: float = 99.9   # clip weights at this percentile of |w|, per layer
    cf_vth: int = 2048              # CF layers with Dense inputs: vth in [cf_vth, 2·cf_vth)
    lif_vth: int = 1024             # the same for Lava-LIF layers
    lif_vth_max: int = 4096         # Lava LIF: v saturates at 2^23 = 64·vth·(headroom)
    min_vth: int = 75               # below this the report warns (accuracy starts to drop)


def where(node: Node) -> str:
    return node.where()


def uniform(a, what: str, node: Node) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.allclose(a, a[0], rtol=1e-6, atol=0):
        raise UnsupportedError(f"{where(node)}: {what} differs between neurons; Lava's "
                               f"LIF/CF process takes one value per layer")
    return float(a[0])


def round_even_mantissa(x: np.ndarray) -> np.ndarray:
    """Nearest even integer (ties of x/2 to even): mixed-sign Loihi mantissas."""
    return 2.0 * np.round(x / 2.0)


def quantize_mantissas(w: np.ndarray, clip: float, scale: float, fmt: NumericFormat):
    """8-bit mantissas of `w` clipped at ±clip, times `scale`; (mantissas, report).

    Mixed sign: nearest even value in [-2^bits, 2^bits - 2]; one sign: nearest
    value in [0, 2^bits - 1] (or its negative). The report gives the clipped
    fraction and the max/mean rounding error relative to the clip value.
    """
    w = np.asarray(w, dtype=np.float64)
    mode = sign_mode(w)
    top = fmt.weight_mant_max                      # 255
    wc = np.clip(w, -clip, clip)
    x = wc * scale
    if mode == "mixed":
        m = np.clip(round_even_mantissa(x), -(top + 1), top - 1)
    elif mode == "excitatory":
        m = np.clip(np.round(x), 0, top)
    else:
        m = np.clip(np.round(x), -top, 0)
    m = m.astype(np.int16)
    denom = clip if clip > 0 else 1.0
    err = np.abs(wc - m / scale) / denom if scale > 0 else np.zeros_like(w)
    rep = {"sign_mode": mode, "clip": float(clip), "mantissa_scale": float(scale),
           "clipped_fraction": float(np.mean(np.abs(w) > clip)) if w.size else 0.0,
           "round_err_max": float(err.max()) if w.size else 0.0,
           "round_err_mean": float(err.mean()) if w.size else 0.0,
           "mantissa_max": int(np.abs(m).max()) if w.size else 0}
    return m, rep


def mant_full(mode: str, fmt: NumericFormat) -> int:
    """Largest mantissa magnitude of a sign mode: 254 mixed (LSB dropped), 255 one sign."""
    return fmt.weight_mant_max - 1 if mode == "mixed" else fmt.weight_mant_max


def clip_value(w: np.ndarray, pct: float) -> float:
    a = np.abs(np.asarray(w, dtype=np.float64)).reshape(-1)
    return float(np.percentile(a, pct)) if a.size else 0.0


def quantize_bias(bias_v: np.ndarray, fmt: NumericFormat):
    """(mantissa int32, exponent, report) for a bias in state units."""
    lo, hi = fmt.bias_mant_range
    b = np.asarray(bias_v, dtype=np.float64)
    big = float(np.abs(b).max()) if b.size else 0.0
    exp = fmt.bias_exp_min
    while exp < fmt.bias_exp_max and big / 2.0 ** exp > hi + 0.5:
        exp += 1
    mant = np.clip(np.round(b / 2.0 ** exp), lo, hi).astype(np.int32)
    rep = {"bias_exp": int(exp),
           "bias_clipped_fraction": float(np.mean(np.abs(np.round(b / 2.0 ** exp)) > hi))
           if b.size else 0.0,
           "bias_err_max_units": float(np.abs(b - mant * 2.0 ** exp).max()) if b.size else 0.0}
    return mant, exp, rep


# --- neuron models: how the float neuron maps to the integer one ----------------

@dataclass
class NeuronMap:
    kind: str               # "cf" or "lava_lif"
    theta: float            # threshold in the (gain-normalized) float units
    gain: np.ndarray        # per-neuron gain on the input, folded into the weights
    bias_factor: float      # multiplies the producers' biases (CubaLIF steady state)
    const: np.ndarray       # per-step constant into v (float units, before S)
    state_units: int        # 1 (CF) or 64 (Lava LIF: v is a << 6)
    attrs: dict             # integer attrs besides vth / bias_exp
    notes: list


def _map_cf(n: Node, dt) -> NeuronMap:
    a = n.attrs
    beta = uniform(n.params["beta"], "beta", n) if "beta" in n.params else float(a["beta"])
    if "threshold" in n.params:
        theta_arr = np.broadcast_to(np.asarray(n.params["threshold"], np.float64), n.shape)
        if np.any(theta_arr <= 0):
            raise UnsupportedError(f"{where(n)}: thresholds must be > 0")
        gain, theta = 1.0 / theta_arr, 1.0
    else:
        gain, theta = np.ones(n.shape), float(a["threshold"])
    dv = int(round((1.0 - beta) * DECAY_UNITY))
    notes = []
    if abs((1 - dv / DECAY_UNITY) - beta) > 1e-12:
        notes.append(f"beta {beta:g} -> {1 - dv / DECAY_UNITY:.6g} (dv = {dv})")
    return NeuronMap("cf", theta, np.asarray(gain, np.float64), 1.0, np.zeros(n.shape), 1,
                      {"dv": dv, "max_spikes": int(a["max_spikes"]), "signed": bool(a["signed"]),
                       "reset": str(a.get("reset", "subtract"))},
                      notes)


def _decay(alpha: float, what: str, offset: int, notes: list) -> int:
    d = int(round(alpha * DECAY_UNITY)) - offset
    if not 0 <= d <= DECAY_UNITY - 1:
        notes.append(f"{what} = {d} outside 0..4095 (dt/tau = {alpha:g}); clipped")
        d = min(max(d, 0), DECAY_UNITY - 1)
    return d


def _map_lif(n: Node, dt) -> NeuronMap:
    p, notes = n.params, []
    if n.attrs.get("reset", "zero") != "zero":
        raise UnsupportedError(f"{where(n)}: reset by subtraction; Lava's LIF resets to zero "
                               f"(a CF neuron with K=1, signed=False subtracts)")
    if "v_reset" in p and np.any(np.asarray(p["v_reset"]) != 0):
        raise UnsupportedError(f"{where(n)}: v_reset != 0; Lava's LIF resets v to 0")
    thr = np.broadcast_to(np.asarray(p["v_threshold"], np.float64), n.shape)
    if np.any(thr <= 0):
        raise UnsupportedError(f"{where(n)}: v_threshold must be > 0 for Lava's LIF")
    uniform_thr = np.allclose(thr, thr.reshape(-1)[0], rtol=1e-6, atol=0)
    theta = float(thr.reshape(-1)[0]) if uniform_thr else 1.0
    norm = np.ones(n.shape) if uniform_thr else 1.0 / thr
    r = np.broadcast_to(np.asarray(p["r"], np.float64), n.shape)
    bias_factor, const = 1.0, np.zeros(n.shape)
    if n.op == "IF":
        gain, du, dv = r, DECAY_UNITY - 1, 0
    else:
        if dt is None:
            raise UnsupportedError(f"{where(n)} needs the graph's dt (meta['dt'])")
        leak = np.broadcast_to(np.asarray(p["v_leak"], np.float64), n.shape)
        if n.op == "LIF":
            alpha = dt / uniform(p["tau"], "tau", n)
            gain, const = alpha * r, alpha * leak
            du, dv = DECAY_UNITY - 1, _decay(alpha, "dv", 0, notes)
        else:  # CubaLIF
            a_syn = dt / uniform(p["tau_syn"], "tau_syn", n)
            a_mem = dt / uniform(p["tau_mem"], "tau_mem", n)
            w_in = np.broadcast_to(np.asarray(p.get("w_in", 1.0), np.float64), n.shape)
            gain, const = a_mem * r * a_syn * w_in, a_mem * leak
            bias_factor = 1.0 / a_syn
            du = _decay(a_syn, "du", 1, notes)
            dv = _decay(a_mem, "dv", 0, notes)
    return NeuronMap("lava_lif", theta, gain * norm, bias_factor, const * norm, 1 << LIF_SHIFT,
                      {"du": int(du), "dv": int(dv)}, notes)


NEURON_MAPS = {"CFNeuron": _map_cf, "LIF": _map_lif, "IF": _map_lif, "CubaLIF": _map_lif}
