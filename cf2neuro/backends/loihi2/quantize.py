"""Loihi 2 quantization: a float IR graph to Lava's integer form (DESIGN §4, docs/fixed_point.md).

    qgraph = cf2neuro.quant.quantize(graph, "loihi2", calibration=x)   # the generic driver
    quantize_graph(g, target, options, input_format)   # this back end's part (in place)

The algorithm, per neuron layer N (CF, or an imported IF/LIF/CubaLIF run as
Lava's LIF) and the synaptic ops P feeding it (Linear = Lava Dense, Conv2d,
SumPool2d; several through an Add):

0. Residual paths (`balance.py`, first): an Add of spikes into N gets an
   identity synapse (a producer whose mantissas stay exact), a shallower
   path delays after its spike source (identities one step later, their
   input's scale and payload); the cost in their ``meta["quant"]`` and in
   ``graph.meta["fixed_point"]["balance"]`` (JSON).

1. Integer scales. Every value carries a scale σ (integer ≈ σ·float):
   spikes have σ = 1 (exact integers), the input ``input_scale``; sum
   pooling keeps its input's σ. N gets one scale S: its integer input is
   a ≈ S·(float input), its threshold ``vth = round(S·θ)``. The float CF
   equation is invariant to S, so S only trades resolution for headroom.
2. Choosing S. Weights are first clipped at the 99.9th percentile c of
   |w| (per layer, after folding per-neuron gains). With only Dense inputs,
   the first Dense's mantissas use the full 8-bit range
   (s = 254/c for mixed-sign weights, 255/c for one sign) and its
   ``weight_exp`` e puts ``vth = S·θ`` into [V, 2V) with S = σ·s·2^e
   (V = 2048 for CF, 1024 for Lava LIF: far above the ~75 units below which
   accuracy drops, far below the 24-bit state). A Conv has no exponent in
   Lava (``weight_exp`` is ignored), so with Conv inputs S = 254·σ/c of the
   tightest Conv: the conv's scale lands in the next layer's vth and bias.
   vth is capped at 2^17 - 1 for CF (64 θ of 24-bit headroom) and at 4096 for
   Lava LIF (its state counts 64 units per vth unit: 32 θ of headroom).
3. Mantissas. Every other Dense input gets its own e so its mantissas fit;
   mantissas are rounded to the nearest **even** value in mixed sign mode
   (Lava drops the LSB: round-then-floor would bias every weight down) and
   clipped to the sign mode's range; the result is a fixed point of Lava's
   own weight legalization.
4. Bias and decay. The layer bias (the producers' biases, per-step leak
   constants) is ``bias_v = S·b`` in the state's units (×64 for Lava LIF,
   whose input is ``a << 6``), stored as a 13-bit mantissa and the smallest
   exponent in 0..7 that fits it (the input layer, with its large σ, needs
   one). CF: ``dv = round((1-β)·4096)``. LIF: ``du = 4095`` (no current
   memory), ``dv = round(4096·dt/τ)``; CubaLIF: ``du = round(4096·dt/τ_syn)
   - 1``, ``dv = round(4096·dt/τ_mem)``, the synaptic gains folded into
   the weights. A CubaLIF's input bias enters the current in the float
   model but Lava's bias enters v: its steady-state value is used (the
   first ~τ_syn/dt steps differ; reported).
5. Payloads. Each synaptic op's ``num_message_bits`` comes from what it
   reads: 0 for binary spikes (Lava casts the input to bool), the bits of
   [-K, K] for CF spikes, of the pooled sum for sum pooling, ``input_bits``
   for the analog input (x_int = round(x·input_scale)).
6. The readout (a Linear read by an Output) gets full-range mantissas,
   e = 0, its own scale (``output_scale``) and an integer ``bias_int`` the
   runner adds to its output each step.
7. AvgPool2d becomes SumPool2d with 1/k² folded into its consumer's weights.
8. Spikformer's ops (Attention, Permute, Mean, Linear over tokens, adds of
   values) have exact integer forms that the emulator and onnxruntime run
   and Lava does not (`attention.py`); such a graph says so in
   ``meta["fixed_point"]["runner_refusals"]`` and the Lava runner refuses it.

Refusals (`UnsupportedError`, with the reason; `limits.py`): ops without a
fixed-point form (MaxPool2d, unfolded BatchNorm, Scale, LI), reset by
subtraction or non-zero v_reset for LIF/IF, per-neuron time constants, paths
of unequal synaptic depth that cannot be balanced (on a recurrent loop, or
with no spike source to delay: the Add named), a layer over the target's
fan-in, more neurons than the chip holds, and on binary targets (``loihi``): signed or graded
(K > 1) spikes, graded inputs, sum pooling.

The report of every node (clipped fraction, rounding errors relative to the
clip value, chosen exponents, vth, dv, warnings) is in
``node.meta["quant"]`` and travels with the graph (and its NIR file).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph, Node
from ...targets import Target
from .attention import lava_less_source, quantize_attention
from .balance import (
    IDENTITY,
    add_latency,
    balance_role,
    exact_identities,
    gain_delay,
    identity_report,
    inserted_fan_in,
    is_delay,
    quantize_delay,
)
from .limits import NEURONS, prepare
from .lower import SYNAPTIC, graph_latency
from .mapping import (
    NEURON_MAPS,
    QuantOptions,
    clip_value,
    mant_full,
    quantize_bias,
    quantize_mantissas,
    where,
)
from .numerics import (
    LAVA_LIF_OPS,
    STATE_MAX,
    lava_dense_weights,
    payload_bits,
    sign_mode,
)
from .split import fan_in

log = logging.getLogger(__name__)

# --- the quantizer ----------------------------------------------------------------

@dataclass
class _Source:
    sigma: float     # integer ≈ sigma · float
    maxabs: int      # largest |integer| it sends
    signed: bool
    binary: bool     # 0/1 spikes: the consumer may take num_message_bits = 0


class _Quantizer:
    def __init__(self, g: Graph, target: Target, opts: QuantOptions, inp: dict,
                 lava: bool = True):
        self.g, self.t, self.fmt, self.opts, self.inp = g, target, target.numeric, opts, inp
        self.lava = lava  # False: a graph only the emulator/onnxruntime run (attention.py)
        self.back = g.back_edges()
        self.scale_out: dict[str, float] = {}   # synaptic op -> scale of its integer output
        self.gain: dict[str, int] = {}          # private delay -> its integer gain (else 1)
        self.done: set[str] = set()

    # where values come from ------------------------------------------------
    def source(self, name: str) -> _Source:
        n = self.g[name]
        if is_delay(n):  # an identity one step later: its input's payload (times a gain)
            s, a = self.source(n.inputs[0]), self.gain.get(name, 1)
            return s if a == 1 else _Source(s.sigma * a, s.maxabs * a, s.signed, False)
        if n.op == "Input":
            i = self.inp
            hi = 1 if i["bits"] == 0 else (1 << (i["bits"] - int(i["signed"]))) - 1
            return _Source(i["scale"], hi, i["signed"], i["bits"] == 0)
        if n.op == "CFNeuron":
            k, s = int(n.attrs["max_spikes"]), bool(n.attrs["signed"])
            return _Source(1.0, k, s, k == 1 and not s)
        if n.op in LAVA_LIF_OPS:
            return _Source(1.0, 1, False, True)
        if n.op in ("Flatten", "Permute"):
            return self.source(n.inputs[0])
        if n.op == "SumPool2d":
            s = self.source(n.inputs[0])
            k = n.attrs["kernel"]
            k = k[0] * k[1] if isinstance(k, list) else k * k
            return _Source(s.sigma * n.meta.get("sum_scale", 1), s.maxabs * k, s.signed, False)
        if n.op in ("Linear", "Conv2d"):
            self.synaptic_chain(n)
            return _Source(self.scale_out[name], STATE_MAX, True, False)
        if not self.lava and n.op in ("Add", "Mean", "Attention"):
            return _Source(*lava_less_source(self, n), False)
        raise UnsupportedError(f"{where(n)} feeds a synaptic op, but Lava has no way to send "
                               f"its {n.op} output as spikes")

    def message_bits(self, node: Node) -> int:
        s = self.source(node.inputs[0])
        if s.binary:
            return 0
        bits = payload_bits(s.maxabs, s.signed)
        if not self.fmt.graded_spikes:
            raise UnsupportedError(
                f"{where(node)} reads graded{' signed' if s.signed else ''} values (up to "
                f"{s.maxabs}) from {node.inputs[0]!r}; target {self.t.name} carries binary "
                f"spikes only. Use a target with graded spikes (loihi2)")
        if bits > self.fmt.spike_payload_bits:
            raise UnsupportedError(f"{where(node)} needs {bits}-bit spike payloads; target "
                                   f"{self.t.name} carries {self.fmt.spike_payload_bits}")
        return bits

    # the layers ----------------------------------------------------------------
    def producers(self, n: Node) -> list[Node]:
        """The synaptic ops that alone feed neuron n (directly or through Adds)."""
        out, todo = [], [n.inputs[0]]
        while todo:
            p = self.g[todo.pop(0)]
            readers = self.g.consumers(p.name)
            if p.op == "Add":
                todo.extend(p.inputs)
            elif p.op in SYNAPTIC or (p.op == "Attention" and not self.lava):
                out.append(p)
            else:
                raise UnsupportedError(
                    f"{where(n)} reads {p.name!r} ({p.op}) without a synapse between: Lava "
                    f"neurons take input only through Dense/Conv connections (a residual "
                    f"shortcut of spikes needs an identity connection)")
            if len(readers) != 1:
                raise UnsupportedError(f"{where(p)} is read by {readers}; in Lava a "
                                       f"connection feeds one neuron layer")
        return out

    def neuron(self, n: Node) -> None:
        fmt, opts = self.fmt, self.opts
        nm = NEURON_MAPS[n.op](n, self.g.meta.get("dt"))
        prods = self.producers(n)
        notes = list(nm.notes)
        # Effective weights (per-neuron gains folded in) and clip values.
        eff = {p.name: self._effective(p, n, nm.gain) for p in prods}
        fixed = [p for p in prods if p.op == "SumPool2d"]
        convs = [p for p in prods if p.op == "Conv2d"]
        dense = [p for p in prods if p.op == "Linear"]
        # CF: vth < 2^17 keeps 64 θ of 24-bit state; Lava LIF's state is 64·vth per θ, so
        # its cap is lower (4096: 32 θ of headroom for negative excursions).
        vth_cap = fmt.vth_max if nm.kind == "cf" else min(fmt.vth_max, opts.lif_vth_max)
        attn = [p for p in prods if p.op == "Attention"]
        if attn:
            if len(prods) != 1:
                raise UnsupportedError(f"{where(n)}: attention feeds it together with {prods}; "
                                       f"an attention output must feed a neuron alone")
            target = opts.cf_vth if nm.kind == "cf" else opts.lif_vth
            scale = quantize_attention(self, attn[0], n, nm, target, vth_cap)
        elif fixed:
            gains = np.unique(np.round(nm.gain, 12))
            if gains.size != 1 or gains[0] <= 0:
                raise UnsupportedError(f"{where(n)}: sum pooling feeds it directly, so its "
                                       f"input gain must be one positive number")
            sigmas = {self.source(p.inputs[0]).sigma for p in fixed}
            if len(sigmas) != 1:
                raise UnsupportedError(f"{where(n)}: sum pools of different scales feed it")
            scale = sigmas.pop() / float(gains[0])
        elif convs:
            caps = []
            for p in convs:
                w, c = eff[p.name]
                cap = mant_full(sign_mode(w), fmt) * self.source(p.inputs[0]).sigma / c \
                    if c > 0 else math.inf
                if fmt.graded_spikes and gain_delay(self.g, p):  # its delay multiplies more
                    cap *= fmt.weight_mant_max
                caps.append(cap)
            scale = min(caps)
            if not math.isfinite(scale):
                scale = opts.cf_vth / nm.theta
            scale = min(scale, vth_cap / nm.theta)
        else:
            p = dense[0]
            w, c = eff[p.name]
            s_full = (mant_full(sign_mode(w), fmt) / c if c > 0 else 1.0) \
                * self.source(p.inputs[0]).sigma
            target = opts.cf_vth if nm.kind == "cf" else opts.lif_vth
            e = math.ceil(math.log2(target / (s_full * nm.theta)) - 1e-9)
            e = min(max(e, fmt.weight_exp_min), fmt.weight_exp_max)
            scale = min(s_full * 2.0 ** e, vth_cap / nm.theta)
        # A bias too large for its mantissa and exponent at this scale: halve the scale
        # (one weight exponent less) while vth stays well above min_vth.
        bias_f = nm.gain * nm.bias_factor * self._bias(prods, n) + nm.const
        lo, hi = fmt.bias_mant_range
        fits = hi * 2.0 ** fmt.bias_exp_max
        big = float(np.abs(bias_f).max(initial=0.0)) * nm.state_units
        while not (fixed or attn) and big * scale > fits \
                and round(scale * nm.theta / 2) >= 4 * opts.min_vth:
            scale /= 2
        scale = exact_identities(self, prods, eff, scale)  # identity synapses stay exact
        vth = int(round(scale * nm.theta))
        if vth < 1:
            raise UnsupportedError(f"{where(n)}: its threshold rounds to {vth} units at scale "
                                   f"{scale:g}; the layer cannot be represented")
        if vth < opts.min_vth:
            notes.append(f"vth = {vth} < {opts.min_vth}: threshold resolution costs accuracy")
        # Producers' mantissas at that scale.
        for p in (p for p in prods if p.op != "Attention"):  # attention: self.attention
            self.synaptic(p, scale, eff.get(p.name))
        if nm.bias_factor != 1.0 and np.any(self._bias(prods, n) != 0):
            notes.append("CubaLIF input bias: Lava adds bias to v, not to the current; its "
                         "steady-state value is used (the first ~tau_syn/dt steps differ)")
        bias_v = bias_f * scale * nm.state_units
        mant, bexp, brep = quantize_bias(np.broadcast_to(bias_v, n.shape), fmt)
        if brep["bias_clipped_fraction"] > 0:
            notes.append(f"{brep['bias_clipped_fraction']:.1%} of biases clipped at the "
                         f"{fmt.bias_mant_bits}-bit mantissa with exponent {bexp}")
        n.params["bias_mant"] = mant
        if "v_min" in n.params:  # a membrane floor (Sinabs's min_v_mem) in state units
            v_min = np.asarray(n.params["v_min"], np.float64) * nm.gain * scale
            n.params["v_min_int"] = np.round(np.broadcast_to(v_min, n.shape)).astype(np.int64)
        fp = {"vth": vth, **nm.attrs, "bias_exp": int(bexp)}
        n.attrs["fixed_point"] = fp
        worst = self._worst_case(prods, eff, scale) * nm.state_units + \
            float(np.abs(bias_v).max(initial=0.0))
        if worst > STATE_MAX:
            notes.append(f"a worst-case step input ({worst:.3g} units) exceeds the 24-bit state; "
                         f"saturates only under extreme inputs")
        berr = brep.pop("bias_err_max_units") / (vth * nm.state_units)
        n.meta["quant"] = {"kind": "neuron", "model": nm.kind, "scale": float(scale),
                           "vth": vth, "vth_rel_err": abs(vth - scale * nm.theta) / vth,
                           "dv": int(nm.attrs["dv"]), **brep, "bias_err_max_thresholds": berr,
                           "worst_case_step_over_state": worst / STATE_MAX, "notes": notes}
        self.done.add(n.name)

    @staticmethod
    def _bias(prods: list[Node], n: Node) -> np.ndarray:
        """The producers' float biases summed, per neuron of n."""
        bias = np.zeros(n.shape)
        for p in prods:
            if "bias" in p.params:
                b = np.asarray(p.params["bias"], np.float64)
                bias = bias + (b.reshape(-1, 1, 1) if p.op == "Conv2d" else b)
        return bias

    def _effective(self, p: Node, n: Node, gain: np.ndarray):
        """(float weights with the neuron's per-neuron gain folded in, clip value)."""
        if p.op in ("SumPool2d", "Attention"):
            return None
        w = np.asarray(p.params["weight"], np.float64)
        g = np.broadcast_to(gain, n.shape)
        if p.op == "Linear":
            gt = g.reshape(-1, w.shape[0])  # tokens x features: one gain per feature
            if not np.allclose(gt, gt[:1], rtol=1e-9, atol=0):
                raise UnsupportedError(f"{where(n)}: its per-neuron gain varies across tokens; "
                                       f"a token-wise Linear folds one gain per feature")
            w = w * gt[0].reshape(-1, 1)
        else:
            gc = g.reshape(g.shape[0], -1)
            if not np.allclose(gc, gc[:, :1], rtol=1e-9, atol=0):
                raise UnsupportedError(f"{where(n)}: its per-neuron gain (r/θ, time constants) "
                                       f"varies within a channel; a Conv can fold only one "
                                       f"gain per output channel")
            w = w * gc[:, 0].reshape(-1, 1, 1, 1)
        return w, clip_value(w, self.opts.clip_percentile)

    def _worst_case(self, prods, eff, scale) -> float:
        total = 0.0
        for p in prods:
            src = self.source(p.inputs[0])
            if p.op == "SumPool2d":
                total += src.maxabs / src.sigma * scale
                continue
            if p.op == "Attention":
                total += p.meta["quant"]["max_abs"]
                continue
            w, _ = eff[p.name]
            rows = np.abs(w).reshape(w.shape[0], -1).sum(axis=1)
            total += float(rows.max(initial=0.0)) * src.maxabs / src.sigma * scale
        return total

    def synaptic(self, p: Node, scale: float, eff) -> None:
        """Integer form of a Linear/Conv2d/SumPool2d whose output has integer scale `scale`."""
        fmt = self.fmt
        self._check_fan_in(p)
        nmb = self.message_bits(p)
        if p.op == "SumPool2d":
            p.attrs["fixed_point"] = {"num_message_bits": nmb}
            p.meta["quant"] = {"kind": "sumpool", "num_message_bits": nmb}
            self.scale_out[p.name] = scale
            return
        w, c = eff if eff is not None else (np.asarray(p.params["weight"], np.float64),
                                            clip_value(p.params["weight"],
                                                        self.opts.clip_percentile))
        sigma = self.source(p.inputs[0]).sigma
        full = mant_full(sign_mode(w), fmt)
        fp: dict = {}
        if p.op == "Linear":
            if len(self.g[p.inputs[0]].shape) != 1 and self.lava:
                raise UnsupportedError(f"{where(p)} acts on {list(self.g[p.inputs[0]].shape)} "
                                       f"(tokens); Lava's Dense maps one vector")
            e = math.ceil(math.log2(scale * c / (sigma * full)) - 1e-9) if c > 0 else 0
            clamped = min(max(e, fmt.weight_exp_min), fmt.weight_exp_max)
            s = scale / (sigma * 2.0 ** clamped)
            fp["weight_exp"] = int(clamped)
        else:
            e = clamped = 0
            s = scale / sigma
        m, rep = quantize_mantissas(w, c, s, fmt)
        if p.op == "Linear":
            assert np.array_equal(lava_dense_weights(m), m), "mantissas not Lava-legal"
        notes = []
        if clamped != e:
            notes.append(f"weight_exp {e} outside {fmt.weight_exp_min}..{fmt.weight_exp_max}: "
                         f"{'mantissas clip' if clamped < e else 'mantissas lose resolution'}")
        p.params["weight_mant"] = m
        fp["num_message_bits"] = nmb
        p.attrs["fixed_point"] = fp
        p.meta["quant"] = {"kind": p.op.lower(), "scale": float(scale), "input_scale":
                           float(sigma), **fp, **rep, "notes": notes}
        if balance_role(p) == IDENTITY:  # inserted by balance.py: say what and how exact
            identity_report(p, m, w * s)
        self.scale_out[p.name] = scale

    def synaptic_chain(self, p: Node) -> None:
        """A Linear/Conv2d that feeds another synaptic op or the Output (no neuron)."""
        if p.name in self.scale_out:
            return
        if np.any(np.asarray(p.params.get("bias", 0.0)) != 0):
            readout = all(self.g[c].op == "Output" for c in self.g.consumers(p.name))
            if not readout:
                raise UnsupportedError(f"{where(p)} has a bias but feeds no neuron; Lava's "
                                       f"Dense/Conv have no bias (it lives in the neuron)")
        w = np.asarray(p.params["weight"], np.float64)
        c = clip_value(w, self.opts.clip_percentile)
        sigma = self.source(p.inputs[0]).sigma
        scale = (mant_full(sign_mode(w), self.fmt) / c if c > 0 else 1.0) * sigma
        self.synaptic(p, scale, (w, c))
        if "bias" in p.params:  # the readout: the runner adds it to a each step
            p.params["bias_int"] = np.round(np.asarray(p.params["bias"], np.float64)
                                            * scale).astype(np.int64)

    def _check_fan_in(self, p: Node) -> None:
        limit = self.t.limit("fan_in")
        if limit is None:
            return
        if balance_role(p) is not None:  # an inserted identity: one synapse per neuron
            fan = inserted_fan_in(p)
        elif p.op in ("Linear", "Conv2d"):
            fan = fan_in(p)  # a split part counts only its own slice of the input
        else:
            k = p.attrs["kernel"]
            fan = k[0] * k[1] if isinstance(k, list) else k * k
        if fan > limit:
            raise UnsupportedError(f"{where(p)} has fan-in {fan}, over target {self.t.name}'s "
                                   f"limit of {limit} ({self.t.resources['fan_in'].source})")

    def run(self) -> None:
        for n in self.g:  # topological order
            if n.op in NEURONS:
                self.neuron(n)
        for n in self.g:
            if is_delay(n):
                if n.name not in self.scale_out:
                    quantize_delay(self, n)
            elif n.op in ("Linear", "Conv2d") and n.name not in self.scale_out:
                self.synaptic_chain(n)
            elif n.op == "SumPool2d" and n.name not in self.scale_out:
                self.synaptic(n, self.source(n.inputs[0]).sigma, None)
            elif n.op in ("Add", "Mean", "Attention") and not self.lava:
                self.source(n.name)  # value adds' gains, token sums, attention read by no neuron


# --- the back end's step ------------------------------------------------------------

def quantize_graph(g: Graph, tgt: Target, options: QuantOptions | None, inp: dict) -> Graph:
    """Give every computing node of the folded float graph `g` its Loihi 2 integer form.

    `inp` is the input format the generic driver chose (`cf2neuro.quant.inputs`).
    Fills node attrs["fixed_point"], the integer params, node.meta["quant"] and
    g.meta["fixed_point"]; returns `g`.
    """
    opts = options or QuantOptions()
    steps = prepare(g, tgt)  # refusals, pooling, fan-in splits, balancing, depths (limits.py)
    split, balance, depths = steps["split"], steps["balance"], steps["depths"]
    latency = 0 if depths is None else graph_latency(g, depths)
    q = _Quantizer(g, tgt, opts, inp, lava=steps["lava"] is None)
    q.run()
    out_node = g[g.outputs[0]]
    src = g[out_node.inputs[0]]
    out_scale = q.scale_out.get(src.name, 1.0) if src.op in ("Linear", "Conv2d", "SumPool2d") \
        else 1.0
    for name, d in (depths or {}).items():
        n = g[name]
        if n.op in ("Add", "Identity"):
            continue
        n.attrs["fixed_point"] = {**n.attrs.get("fixed_point", {}), "depth": int(d)}
    g.meta["fixed_point"] = {"target": tgt.name, "input_scale": float(inp["scale"]),
                             "input_bits": int(inp["bits"]), "input_signed": bool(inp["signed"]),
                             "latency": int(latency), "output_scale": float(out_scale)}
    if split:
        g.meta["fixed_point"]["split_layers"] = int(split)
    if steps["lava"] is not None:  # the Lava runner refuses it before any work
        g.meta["fixed_point"]["runner_refusals"] = json.dumps({"lava": steps["lava"]})
    if balance["inserted"]:
        balance = add_latency(balance, latency)
        g.meta["fixed_point"]["balance"] = json.dumps(balance, sort_keys=True)
        log.info("balanced residual paths: %d identity synapses, %d delays",
                 balance["identity_synapses"], balance["delays"])
    log.info("quantized for %s: latency %d, input scale %g (%d bits)", tgt.name, latency,
             inp["scale"], inp["bits"])
    return g
