"""What Loihi 2 cannot hold, refused before any work, and the graph steps before quantizing.

    check(graph, target)     the back end's checker: unsupported ops, neurons, sizes,
                             unbalanceable paths, then Lava's parameter limits
    steps = prepare(g, target)   in place: refusals, pooling, fan-in splits, residual
                             balancing and pipeline depths (what `quantize_graph` builds on)

Measured in lava-nc 0.10.0 (`lava/proc/conv/models.py`): the Conv process
keeps kernel size, stride, padding, dilation and `groups` as int8. A value
over 127 wraps and the convolution computes garbage without an error, so a
graph that would need one is refused here, naming the layer. Sum pooling is
not limited by its channel count: the runtime splits its groups (see
`cf2neuro_lava.layers.pooling_weights`).
"""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph
from ...ir.passes import run_passes
from ...targets import Target
from .attention import LAVA_LESS, lava_refusal
from .balance import balance_paths
from .lower import SYNAPTIC, avgpool_to_sumpool, pipeline_depths
from .numerics import LAVA_LIF_OPS
from .split import split_fan_in

INT8_MAX = 127

NEURONS = frozenset({"CFNeuron"}) | LAVA_LIF_OPS
SUPPORTED = NEURONS | SYNAPTIC | {"Input", "Output", "Flatten", "Add", "AvgPool2d", *LAVA_LESS}
#: Ops without any integer form here (Attention, Permute, Mean have one: attention.py).
NO_FIXED_POINT = {
    "MaxPool2d": "max pooling has no Lava fixed-point process; use average (sum) pooling",
    "BatchNorm": "batch norm must be folded into the preceding Conv2d/Linear first "
                 "(cf2neuro.ir.passes.fold_batchnorm)",
    "Scale": "an element-wise gain has no Lava process; fold it into a neighbouring weight",
    "LI": "a leaky integrator reads out a membrane potential; Lava's LIF sends spikes only",
    "Threshold": "a stateless threshold (NIR's Threshold) has no Lava process; import it "
                 "as a neuron or run the float reference",
    "Identity": "internal: identities are removed before quantization",
    "Delay": "a delay line has no fixed-point form here (Lava's synaptic delays are not "
             "modelled); run it on a float target (reference, onnx)",
}


def where(n) -> str:
    return n.where()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def check_lava_limits(g: Graph) -> None:
    """UnsupportedError for the first Conv2d/pooling whose parameters Lava cannot hold."""
    for n in g:
        if n.op == "Conv2d":
            values = {"groups": [n.attrs.get("groups", 1)],
                      "kernel": list(n.params["weight"].shape[2:]),
                      **{k: list(_pair(n.attrs.get(k, 1))) for k in ("stride", "padding",
                                                                        "dilation")}}
        elif n.op in ("AvgPool2d", "SumPool2d"):
            values = {k: list(_pair(n.attrs[k])) for k in ("kernel", "stride", "padding")}
        else:
            continue
        for key, vals in values.items():
            if max(vals) > INT8_MAX:
                raise UnsupportedError(
                    f"{n.where()}: its {key} {vals} exceeds {INT8_MAX}; Lava's Conv stores "
                    f"{key} as int8 and would compute garbage silently. Use a smaller "
                    f"{key}{' (split the layer into groups of <= 127)' if key == 'groups' else ''}"
                    f", or run the emulator or onnxruntime runner")


def check(g: Graph, target: Target) -> None:
    """The loihi2 back end's up-front check (on a copy of `g`): everything `prepare` refuses,
    then Lava's parameter limits for graphs Lava will run."""
    g = run_passes(g)
    if prepare(g, target)["lava"] is None:
        check_lava_limits(g)


def prepare(g: Graph, target: Target) -> dict:
    """The graph steps before quantization, in place; {"lava": why Lava cannot run it or None,
    "split": layers split, "balance": balance_paths' report, "depths": pipeline depths}.

    A graph Lava cannot run (`attention.lava_refusal`) keeps every layer in the
    same step: no balancing, no pipeline depths, pools that feed Adds keep sums.
    """
    refuse_ops(g, target)
    if not target.numeric.graded_spikes:  # Loihi 1: its own neuron, not the CF process
        binary_cf_as_lif(g)
    lava = lava_refusal(g)
    avgpool_to_sumpool(g, keep_sums=lava is not None)
    split = split_fan_in(g, target.limit("fan_in"))  # wide layers: several synapse groups
    g.validate()
    if lava is not None:
        return {"lava": lava, "split": split, "balance": {"inserted": 0}, "depths": None}
    balance = balance_paths(g)  # residual paths: identity synapses and delays (balance.py)
    g.validate()
    return {"lava": None, "split": split, "balance": balance, "depths": pipeline_depths(g)}


def binary_cf_as_lif(g: Graph) -> list[str]:
    """Binary reset-to-zero CF layers as the LIF/IF they are, in place; their names.

    u = beta·v + x, spike when u >= theta, then v = 0, is an LIF with tau = dt/(1-beta)
    and r = 1/(1-beta) (an IF with r = 1 for beta = 1), up to the spike at u == theta
    exactly. As Lava's LIF (PyLifModelBitAcc) its state keeps Loihi's 6 bits below the
    weights (a << 6), so its leak rounds as Loihi 1 rounds it: nengo-loihi's emulator
    agrees bit for bit (tests/test_nengo_loihi.py); the CF process rounds the leak of v.
    """
    dt = float(g.meta.setdefault("dt", 1.0))  # any dt: only dt/tau enters
    done = []
    for n in [n for n in g.nodes.values() if n.op == "CFNeuron"]:
        a = n.attrs
        if (a["max_spikes"] != 1 or a["signed"] or a.get("reset") != "zero"
                or "v_min" in n.params or "beta" in n.params):
            continue
        thr = np.broadcast_to(np.asarray(n.params.get("threshold", a["threshold"]),
                                         np.float32), n.shape).copy()
        beta = float(a["beta"])
        full = lambda v: np.full(n.shape, v, np.float32)  # noqa: E731
        n.params = ({"tau": full(dt / (1 - beta)), "r": full(1 / (1 - beta)),
                     "v_leak": full(0.0), "v_threshold": thr} if beta < 1 else
                    {"r": full(1.0), "v_threshold": thr})
        n.op, n.attrs = ("LIF" if beta < 1 else "IF"), {"reset": "zero"}
        done.append(n.name)
    return done


def refuse_ops(g: Graph, target: Target) -> None:
    """UnsupportedError for the first op, neuron or size the target cannot hold."""
    bad = [n for n in g.nodes.values() if n.op not in SUPPORTED]
    if bad:
        bad.sort(key=lambda n: n.op != "Attention")  # the headline reason first
        n = bad[0]
        reason = NO_FIXED_POINT.get(n.op, "cf2neuro has no fixed-point form for it")
        more = (f" (and {len(bad) - 1} more: {sorted({b.op for b in bad[1:]})})"
                if len(bad) > 1 else "")
        raise UnsupportedError(f"target {target.name} cannot run {where(n)}: {reason}{more}")
    fmt = target.numeric
    if not fmt.graded_spikes or not fmt.signed_spikes:
        for n in g.nodes.values():
            if n.op != "CFNeuron":
                continue
            k, s = int(n.attrs["max_spikes"]), bool(n.attrs["signed"])
            if (s and not fmt.signed_spikes) or (k > 1 and not fmt.graded_spikes):
                what = " and ".join(x for x in ("signed (negative) spikes" if s else "",
                                                f"graded spikes up to K={k}" if k > 1 else "")
                                    if x)
                raise UnsupportedError(
                    f"target {target.name} cannot run {where(n)}: it sends {what}, and "
                    f"{target.name} carries binary spikes only. Train with "
                    f"--neuron max_spikes=1 --neuron signed=false, or use loihi2")
    limit, per_core = target.limit("cores"), target.limit("neurons_per_core")
    if limit and per_core:
        total = sum(int(np.prod(n.shape)) for n in g.nodes.values() if n.op in NEURONS)
        if total > limit * per_core:
            raise UnsupportedError(f"the graph has {total} neurons; target {target.name} holds "
                                   f"{limit} cores x {per_core} neurons = {limit * per_core} "
                                   f"(one chip). Use fewer channels or a smaller input "
                                   f"(--model-option), or use a target without chip limits "
                                   f"(onnx, cmos45)")


