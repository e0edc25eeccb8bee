"""Xylo quantization: a float CF graph to Xylo's integers (numerics.py has the mapping).

    qgraph = cf2neuro.quant.quantize(graph, "xylo", calibration=x)   # the generic driver
    quantize_graph(g, target, options, input_format)                 # this back end's part

Per network (`limits.layout` finds its parts):

1. Inputs become spike counts 0..15 a step: ``round(x · input_scale)``
   (binary data: 0/1). Xylo has no negative input: a signed input format is
   turned into an unsigned one over the same range (negative values clip to
   0; the report says so).
2. The hidden scale S (integer current ≈ S · CF potential): the input
   weights use the full int8 range at the smallest input shift that puts
   θ·S into [V, 2V) (``theta_units`` V = 1024: 16 to 32 thresholds of int16
   headroom); shift 7 at most (then θ·S is lower; reported).
3. dash_syn = round(-log2(1 - beta)) in 1..15 (beta = 1 - 2^-dash; beta 1
   becomes 15, with its one unit a step of leak; beta < 0.5 becomes 1);
   dash_mem = 0; v_th = θ' = beta·θ·S as ``m << shift_rec`` with m <= 128
   (the self-reset weight -m must be an int8), S nudged down so θ' is exact
   when θ and beta are one per layer; the recurrent shift also fits the
   layer's own recurrent weights.
4. Weights: int8 = round(w · S / (input_scale · 2^shift_in)) (input) or
   round(w · S / 2^shift_rec) (recurrent), clipped at the 99.9th percentile
   of |w| (so ±127); the hidden bias b as the int8 weight of the bias
   channel (15 spikes a step): round(b · S / (15 · 2^shift_in)).
5. The readout: int8 = round(w · S_out), S_out = 127 / (99.9th percentile of
   |w|), shift 0, its bias ``bias_int = round(b · S_out)`` added by the host;
   ``output_scale`` = S_out. A readout that one spike on every hidden neuron
   could saturate is reported.

Every node's record (clip, clipped fraction, rounding errors relative to the
clip value, shifts, v_th, dash, notes) is in ``node.meta["quant"]``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph, Node
from ...runners import runner_names
from ...targets import Target
from .limits import layout
from .numerics import (
    DASH_MAX,
    INPUT_MAX_SPIKES,
    READOUT_DASH_SYN,
    SHIFT_MAX,
    STATE_MAX,
    WEIGHT_MAX,
    WEIGHT_MIN,
    BIAS_SPIKES,
    HIDDEN_MAX_SPIKES,
)

log = logging.getLogger(__name__)
XYLO_RUNNERS = ("xylosim", "emulator")  # every other runner refuses the graph up front


@dataclass
class XyloOptions:
    """Knobs of the Xylo quantizer."""

    clip_percentile: float = 99.9   # clip weights at this percentile of |w|, per matrix
    theta_units: int = 1024         # θ·S in [theta_units, 2·theta_units)
    min_vth: int = 64               # a smaller v_th is reported (coarse thresholds)


def _clip_value(w: np.ndarray, pct: float) -> float:
    a = np.abs(np.asarray(w, np.float64)).reshape(-1)
    return float(np.percentile(a, pct)) if a.size else 0.0


def int8_weights(w: np.ndarray, scale: float, clip: float):
    """(int16 array of int8 values, report) for float weights w times `scale`, clipped at ±clip."""
    w = np.asarray(w, np.float64)
    wc = np.clip(w, -clip, clip) if clip > 0 else w
    m = np.clip(np.round(wc * scale), WEIGHT_MIN, WEIGHT_MAX)
    denom = clip if clip > 0 else 1.0
    err = np.abs(wc - m / scale) / denom if scale > 0 and w.size else np.zeros(1)
    rep = {"clip": float(clip), "mantissa_scale": float(scale),
           "clipped_fraction": float(np.mean(np.abs(np.round(w * scale)) > WEIGHT_MAX))
           if w.size else 0.0,
           "round_err_max": float(err.max()), "round_err_mean": float(err.mean())}
    return m.astype(np.int16), rep


def _per_layer(values: np.ndarray):
    """A scalar when every neuron has the same value (JSON attrs stay short), else a list."""
    v = np.asarray(values).reshape(-1)
    return int(v[0]) if np.all(v == v[0]) else [int(x) for x in v]


def _neuron_params(cf: Node, h: int):
    a = cf.attrs
    theta = np.broadcast_to(np.asarray(cf.params.get("threshold", a["threshold"]), np.float64),
                            (h,)).copy()
    beta = np.broadcast_to(np.asarray(cf.params.get("beta", a["beta"]), np.float64), (h,))
    if np.any(theta <= 0):
        raise UnsupportedError(f"{cf.where()}: thresholds must be > 0")
    with np.errstate(divide="ignore"):
        d = np.where(beta >= 1, DASH_MAX, np.round(-np.log2(np.maximum(1 - beta, 1e-300))))
    dash = np.clip(d, 1, DASH_MAX).astype(np.int64)
    beta_eff = 1.0 - 2.0 ** -dash.astype(np.float64)
    notes = []
    if np.any(np.abs(beta_eff - beta) > 1e-12):
        notes.append(f"beta {np.unique(beta)[:4].round(6).tolist()} -> "
                     f"{np.unique(beta_eff)[:4].round(6).tolist()} (dash_syn "
                     f"{np.unique(dash)[:4].tolist()}; Xylo's decays are 1 - 2^-dash, and "
                     f"every state also moves one unit a step toward 0)")
    k = int(a["max_spikes"])
    if k != HIDDEN_MAX_SPIKES:
        notes.append(f"K = {k}: Xylo's hidden neurons send up to {HIDDEN_MAX_SPIKES} spikes a "
                     f"step, so counts differ where the potential passes {k + 1}·θ (train "
                     f"with --neuron max_spikes={HIDDEN_MAX_SPIKES} for the same neuron)")
    return theta, dash, beta_eff, notes


def _input_format(inp: dict, notes: list) -> dict:
    """The generic input format as Xylo's unsigned spike counts (0..15, or 0/1)."""
    bits, scale = int(inp["bits"]), float(inp["scale"])
    if bits == 0:
        return {"scale": 1.0, "bits": 0, "signed": False}
    hi = (1 << (bits - int(inp["signed"]))) - 1
    if inp["signed"]:
        notes.append("Xylo's inputs are spike counts 0..15: negative input values clip to 0")
    if inp["signed"] or hi != INPUT_MAX_SPIKES:
        scale = scale * INPUT_MAX_SPIKES / hi  # the same range, on 0..15
    return {"scale": scale, "bits": 4, "signed": False}


def quantize_graph(g: Graph, tgt: Target, options: XyloOptions | None, inp: dict) -> Graph:
    """Give the folded float graph `g` its Xylo integer form (in place); returns `g`."""
    opts = options or XyloOptions()
    lay = layout(g, tgt)
    notes: list[str] = []
    inp = _input_format(inp, notes)
    sigma = inp["scale"]
    w_in, cf, w_out = g[lay.w_in], g[lay.hidden], g[lay.w_out]
    w_rec = g[lay.w_rec] if lay.w_rec else None
    h = lay.n_hidden
    theta, dash, beta_eff, cf_notes = _neuron_params(cf, h)
    win = np.asarray(w_in.params["weight"], np.float64)
    bias = np.zeros(h) + sum(np.asarray(p.params.get("bias", 0.0), np.float64)
                             for p in (w_in, w_rec) if p is not None)

    # 2. the hidden scale and input shift
    c_in = _clip_value(win, opts.clip_percentile)
    target = opts.theta_units / float(theta.max())
    per_count = c_in / sigma  # a weight's float value per input spike
    if per_count > 0:
        s_in = int(min(max(math.ceil(math.log2(target * per_count / WEIGHT_MAX) - 1e-9), 0),
                       SHIFT_MAX))
        scale = min(WEIGHT_MAX * 2.0 ** s_in / per_count, 2 * target)
    else:
        s_in, scale = 0, target
    if theta.max() * scale < opts.theta_units:
        cf_notes.append(f"input weights too large for shift {SHIFT_MAX}: θ·S = "
                        f"{theta.max() * scale:.0f} units (threshold resolution drops)")

    # 3. thresholds on the recurrent shift's grid, and the recurrent shift
    c_rec = _clip_value(w_rec.params["weight"], opts.clip_percentile) if w_rec else 0.0
    thp = beta_eff * theta * scale
    need = [thp.max() / (WEIGHT_MAX + 1)] + ([c_rec * scale / WEIGHT_MAX] if c_rec else [])
    s_rec = int(min(max(math.ceil(math.log2(max(need)) - 1e-9), 0), SHIFT_MAX))
    unit = 2 ** s_rec
    if np.all(thp == thp[0]):  # one θ' per layer: nudge S so that θ' is exact
        m = np.full(h, max(int(math.floor(thp[0] / unit + 1e-9)), 1))
        scale = float(m[0] * unit / (beta_eff[0] * theta[0]))
    else:
        m = np.clip(np.round(thp / unit), 1, WEIGHT_MAX + 1).astype(np.int64)
        err = np.abs(m * unit - thp) / thp
        cf_notes.append(f"per-neuron thresholds on a grid of {unit}: up to {err.max():.2%} off")
    m = np.minimum(m, WEIGHT_MAX + 1).astype(np.int64)
    vth = m * unit
    if vth.min() < opts.min_vth:
        cf_notes.append(f"v_th = {vth.min()} < {opts.min_vth}: threshold resolution costs "
                        f"accuracy")

    # 4. weights
    q_in, rep_in = int8_weights(win, scale / (sigma * 2.0 ** s_in), c_in)
    w_in.params["weight_mant"] = q_in
    in_notes = []
    if lay.hidden_bias:
        step = scale / (BIAS_SPIKES * 2.0 ** s_in)
        b_int = np.round(bias * step)
        if np.any(np.abs(b_int) > WEIGHT_MAX):
            in_notes.append(f"{np.mean(np.abs(b_int) > WEIGHT_MAX):.1%} of hidden biases clip "
                            f"at the bias channel's int8 weight")
        w_in.params["bias_int"] = np.clip(b_int, WEIGHT_MIN, WEIGHT_MAX).astype(np.int16)
        rep_in["bias_err_max"] = float(np.abs(w_in.params["bias_int"] / step - bias).max())
    w_in.attrs["fixed_point"] = {"role": "input", "weight_shift": s_in}
    w_in.meta["quant"] = {"kind": "xylo_input", "scale": float(scale / sigma),
                          "input_scale": float(sigma), "weight_exp": s_in, **rep_in,
                          "notes": in_notes}
    if w_rec is not None:
        q_rec, rep_rec = int8_weights(w_rec.params["weight"], scale / unit, c_rec)
        diag = q_rec[np.arange(h), np.arange(h)].astype(np.int64)
        low = diag - m < WEIGHT_MIN
        rec_notes = []
        if np.any(low):  # the self-reset shares the diagonal synapse
            q_rec[np.arange(h), np.arange(h)] = np.maximum(diag, m + WEIGHT_MIN)
            rec_notes.append(f"{int(low.sum())} self-weights clipped to fit the reset weight")
        w_rec.params["weight_mant"] = q_rec
        w_rec.attrs["fixed_point"] = {"role": "recurrent"}  # its shift: the hidden layer's
        w_rec.meta["quant"] = {"kind": "xylo_recurrent", "scale": float(scale),
                               "weight_exp": s_rec, **rep_rec, "notes": rec_notes}
    cf.attrs["fixed_point"] = {"role": "hidden", "vth": _per_layer(vth),
                               "dash_syn": _per_layer(dash), "dash_mem": 0,
                               "reset_weight": _per_layer(m), "weight_shift_rec": s_rec,
                               "max_spikes": HIDDEN_MAX_SPIKES}
    cf.meta["quant"] = {"kind": "xylo_hidden", "scale": float(scale), "vth": _per_layer(vth),
                        "dv": _per_layer(dash), "weight_exp": s_rec, "notes": cf_notes}

    # 5. the readout
    wout = np.asarray(w_out.params["weight"], np.float64)
    c_out = _clip_value(wout, opts.clip_percentile)
    s_out = WEIGHT_MAX / c_out if c_out > 0 else 1.0
    q_out, rep_out = int8_weights(wout, s_out, c_out)
    w_out.params["weight_mant"] = q_out
    w_out.params["bias_int"] = np.round(np.asarray(w_out.params.get("bias", np.zeros(
        lay.n_out)), np.float64) * s_out).astype(np.int64)
    worst = int(np.abs(q_out.astype(np.int64)).sum(1).max())
    out_notes = []
    if worst > STATE_MAX // 2:  # i = ceil((i + a)/2) holds |a| <= 16383 without saturating
        out_notes.append(f"one spike on every hidden neuron adds up to {worst} to a readout "
                         f"current; more than {STATE_MAX // 2} a step saturates its int16")
    w_out.attrs["fixed_point"] = {"role": "readout", "weight_shift": 0,
                                  "dash_syn": READOUT_DASH_SYN, "dash_mem": 0, "vth": STATE_MAX}
    w_out.meta["quant"] = {"kind": "xylo_readout", "scale": float(s_out), "weight_exp": 0,
                           **rep_out, "notes": out_notes}
    g.meta["fixed_point"] = {"target": tgt.name, "input_scale": float(sigma),
                             "input_bits": int(inp["bits"]), "input_signed": False,
                             "latency": 1, "output_scale": float(s_out),
                             "hidden_scale": float(scale)}
    others = [r for r in runner_names() if r not in XYLO_RUNNERS]
    g.meta["fixed_point"]["runner_refusals"] = json.dumps({r: (
        "the graph is quantized for target xylo (Xylo's arithmetic, numerics.py); this runner "
        "computes another target's. Run it with xylosim or the emulator, or quantize the "
        "float graph for this runner's target") for r in others})
    if notes:
        g.meta["fixed_point"]["notes"] = "; ".join(notes)
        cf.meta["quant"]["notes"] = notes + cf_notes
    log.info("quantized for %s: S %g, shifts in/rec %d/%d, v_th %s, dash %s", tgt.name, scale,
             s_in, s_rec, _per_layer(vth), _per_layer(dash))
    return g
