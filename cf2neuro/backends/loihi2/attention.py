"""Spikformer's ops in Loihi 2 integers: run by the emulator and onnxruntime, refused on Lava.

    why = lava_refusal(graph)      # None when Lava can run the graph, else the reason
    e = attention_shift(...)       # the exponent that puts the attention's scale in range

A Spikformer needs four things Lava's processes do not have: the attention
product Q·Kᵀ·V (two activations multiplied; Lava holds fixed weights only),
a Linear applied to every token ([N, D] -> [N, D'], Lava's Dense maps one
vector), adds of spike values that feed synapses (residual streams), and a
mean over tokens. On the integers of this back end they are exact:

- Attention: Q, K, V are CF spikes (integers), so P = Q·(Kᵀ·V) per head is
  an exact integer; the op sends ``P << shift``. Its float value is
  ``s·P/(σq·σk·σv)``, so its integer scale is ``2^shift·σq·σk·σv/s`` and
  `attention_shift` picks the shift that puts the consuming neuron's vth in
  [V, 2V) (as a Dense's ``weight_exp`` does). No rounding anywhere: the
  only error is the neuron's vth and decay, as for any CF layer.
- A Linear on tokens is the same Dense arithmetic on the last axis.
- An Add of values (not into a neuron) scales its inputs to one integer
  scale by integer gains (``fixed_point["gains"]``): exact.
- Mean over tokens sends the integer **sum**; its scale is the input's
  times the count, so the 1/N lands in the readout's mantissas.
- Average pooling that feeds an Add keeps its sum (scale times k²).

Time: Lava cannot run these graphs, so nothing aligns them to its
one-step-per-synapse pipeline; the quantized graph runs every layer in the
same step (latency 0), the float reference's timing. The Lava runner
refuses the graph before any work, naming the op
(``meta["fixed_point"]["runner_refusals"]``).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph

#: Ops with an exact integer form here but no Lava process: the reason for each.
LAVA_LESS = {
    "Attention": "spiking self-attention multiplies two activations (Q·Kᵀ·V); Lava's "
                 "processes hold fixed weights only",
    "Permute": "no Lava process permutes a tensor between layers",
    "Mean": "no Lava process averages over tokens",
}
TOKENS = "a Linear over tokens ({shape}); Lava's Dense maps one vector"
WAY_OUT = "run it with the emulator or onnxruntime runner (bit-exact with each other)"


def lava_refusal(g: Graph) -> str | None:
    """Why Lava cannot run `g` (the first op it lacks, and the way out), or None."""
    for n in sorted(g, key=lambda n: n.op != "Attention"):  # the headline reason first
        if n.op in LAVA_LESS:
            why = LAVA_LESS[n.op]
        elif n.op == "Linear" and len(g[n.inputs[0]].shape) != 1:
            why = TOKENS.format(shape=list(g[n.inputs[0]].shape))
        else:
            continue
        return f"{n.where()}: {why}; {WAY_OUT}"
    return None


def attention_product_max(g: Graph, node, maxabs: list[int]) -> int:
    """The largest |Q·Kᵀ·V| per head: tokens · head dim · |q|·|k|·|v|."""
    tokens = int(math.prod(g[node.inputs[0]].shape[:-1]))
    d = int(node.shape[-1]) // int(node.attrs["heads"])  # per head
    return tokens * d * maxabs[0] * maxabs[1] * maxabs[2]


def attention_shift(sigma_qkv: float, scale: float, theta: float, vth_target: float,
                    shift_max: int = 24) -> int:
    """The left shift e whose scale 2^e·σ/s puts vth = scale·θ into [vth_target, 2·vth_target)."""
    base = sigma_qkv / scale
    e = math.ceil(math.log2(vth_target / (base * theta)) - 1e-9) if base * theta > 0 else 0
    return min(max(e, 0), shift_max)


def value_gains(sigmas: list[float], where: str) -> list[int]:
    """Integer gains that bring values of scales `sigmas` to the largest one, exactly."""
    top = max(sigmas)
    gains = [top / s for s in sigmas]
    if any(abs(g - round(g)) > 1e-9 for g in gains):
        raise UnsupportedError(f"{where} adds values of integer scales {sigmas} that are not "
                               f"integer multiples of each other; no exact integer sum exists")
    return [int(round(g)) for g in gains]


# --- the quantizer's part (called from quantize._Quantizer) ------------------------------

def quantize_attention(q, p, n=None, nm=None, target: float = 0.0,
                       vth_cap: float = math.inf) -> float:
    """Integer form of an Attention: the exact product P = Q·Kᵀ·V, sent as P << shift.

    Feeding neuron n, the shift puts n's vth near `target` (its input scale is
    returned); read by anything else, the shift is 0.
    """
    srcs = [q.source(i) for i in p.inputs]
    sigma, s = srcs[0].sigma * srcs[1].sigma * srcs[2].sigma, float(p.attrs["scale"])
    if s <= 0:
        raise UnsupportedError(f"{p.where()}: its scale {s} must be positive")
    gain = 1.0
    if n is not None:
        gains = np.unique(np.round(nm.gain, 12))
        if gains.size != 1 or gains[0] <= 0:
            raise UnsupportedError(f"{n.where()}: attention feeds it directly, so its input "
                                   f"gain (1/θ) must be one positive number")
        gain = float(gains[0])
    e = attention_shift(sigma / gain, s, nm.theta, target) if n is not None else 0
    while e > 0 and 2.0 ** e * sigma / (s * gain) * nm.theta > vth_cap:
        e -= 1
    top = attention_product_max(q.g, p, [x.maxabs for x in srcs]) << e
    p.attrs["fixed_point"] = {"shift": int(e)}
    q.scale_out[p.name] = 2.0 ** e * sigma / s
    p.meta["quant"] = {"kind": "attention", "scale": q.scale_out[p.name],
                       "shift": int(e), "max_abs": int(top), "notes": [
                           "exact integer product (no rounding); Lava has no process "
                           "for it: the emulator and onnxruntime run it"]}
    return q.scale_out[p.name] / gain


def lava_less_source(q, n) -> tuple[float, int, bool]:
    """(scale, max |integer|, signed) of what an attention output, a value Add or a token
    sum (Mean) sends, exactly; `q` is the quantizer (`quantize._Quantizer`)."""
    if n.op == "Attention":
        if n.name not in q.scale_out:
            quantize_attention(q, n)
        return q.scale_out[n.name], n.meta["quant"]["max_abs"], True
    srcs = [q.source(i) for i in n.inputs]
    if n.op == "Mean":  # sends the sum: the scale grows by the count, 1/count folds later
        shape = q.g[n.inputs[0]].shape
        count = math.prod(shape[d % len(shape)] for d in n.attrs["dims"])
        n.attrs["fixed_point"] = {"sum_of": int(count)}
        s = srcs[0]
        return s.sigma * count, s.maxabs * count, s.signed
    gains = value_gains([x.sigma for x in srcs], n.where())
    n.attrs["fixed_point"] = {"gains": gains}
    return (max(x.sigma for x in srcs), sum(x.maxabs * a for x, a in zip(srcs, gains)),
            any(x.signed for x in srcs))
