"""What Xylo Audio 2 holds, refused up front with the reason and the way out.

    check(graph, target)       the back end's checker (on a folded copy of `graph`)
    layout(graph, target)      -> Layout: which node is which part of the Xylo network

Xylo has 16 input channels, one population of up to 1000 hidden neurons with
input and recurrent weights, and up to 8 readout neurons fed by the hidden
ones (target file xylo.toml). cf2neuro maps onto it the network

    Input [-> Flatten] -> Linear -> CF (unsigned, reset "subtract")
                              ^--- Linear (recurrent, optional) <--'
                                   CF -> Linear (readout) -> Output

A hidden bias uses one more input channel (numerics.py), so the input then
has at most 15 features. Refused: signed or reset-to-zero CF neurons (Xylo
sends unsigned spike counts and resets by subtraction), more than one CF
layer (deeper networks would sit in the one hidden population with a step
of delay per layer: not mapped yet), convolutions and pooling (Xylo's
weights are dense matrices), imported LIF/IF/CubaLIF/LI neurons (not mapped
yet; a CubaLIF is close to Xylo's own neuron), membrane floors, and any
other op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph, Node
from ...ir.passes import run_passes
from ...targets import Target

MLP = "train an MLP (--model mlp --model-option hidden=[N]) on <= 16 input features"
WHY = {
    "Conv2d": "Xylo's weights are dense matrices (16 inputs x 1000 hidden x 8 outputs); "
              "there is no convolution. " + MLP,
    "AvgPool2d": "Xylo has no pooling. " + MLP,
    "SumPool2d": "Xylo has no pooling. " + MLP,
    "MaxPool2d": "Xylo has no pooling. " + MLP,
    "BatchNorm": "fold it into the preceding Linear first (cf2neuro.ir.passes.fold_batchnorm)",
    "LIF": "imported LIF neurons are not mapped to Xylo yet; use a CF network",
    "IF": "imported IF neurons are not mapped to Xylo yet; use a CF network",
    "CubaLIF": "imported CubaLIF neurons are not mapped to Xylo yet (Xylo's own neuron has a "
               "synaptic current too; the mapping is future work); use a CF network",
    "LI": "a leaky-integrator readout is not mapped to Xylo yet; end with a Linear readout",
    "Attention": "Xylo has no attention; use an MLP",
    "Scale": "an element-wise gain has no Xylo form; fold it into a neighbouring weight",
}
SUPPORTED = {"Input", "Output", "Flatten", "Linear", "Add", "CFNeuron"}


@dataclass
class Layout:
    """The Xylo network's parts, by node name."""

    input: str
    w_in: str                 # Linear: input channels -> hidden
    w_rec: str | None         # Linear: hidden -> hidden (a back edge), or None
    hidden: str               # CFNeuron
    w_out: str                # Linear: hidden -> readout
    output: str
    n_in: int
    n_hidden: int
    n_out: int
    hidden_bias: bool         # needs the bias channel


def _refuse(target: Target, n: Node, why: str) -> UnsupportedError:
    return UnsupportedError(f"target {target.name} cannot run {n.where()}: {why}")


def _limit(target: Target, key: str, default: int) -> int:
    v = target.limit(key)
    return default if v is None else int(v)


def _has_bias(n: Node) -> bool:
    return "bias" in n.params and bool(np.any(np.asarray(n.params["bias"]) != 0))


def layout(g: Graph, target: Target) -> Layout:
    """The parts of a folded float graph, or UnsupportedError naming the node and the way out."""
    for n in g:
        if n.op not in SUPPORTED:
            raise _refuse(target, n, WHY.get(n.op, f"Xylo has no form for {n.op}. " + MLP))
    lim_in = _limit(target, "input_channels", 16)
    lim_hid, lim_out = _limit(target, "hidden_neurons", 1000), _limit(target, "output_neurons", 8)
    for names, lim, what, way in ((g.inputs, lim_in, "input channels", "Reduce the input to "
                                   f"<= {lim_in} features (e.g. pool the image, or stream it: "
                                   f"--data digits-rows)"),
                                  (g.outputs, lim_out, "readout neurons", f"Use <= {lim_out} "
                                   f"classes")):
        size = sum(int(np.prod(g[n].shape)) for n in names)
        if size > lim:
            raise _refuse(target, g[names[0]], f"it has {size} values a step; target "
                          f"{target.name} holds {lim} {what} (its limit). {way}")
    cfs = [n for n in g if n.op == "CFNeuron"]
    if len(cfs) != 1:
        where = ", ".join(repr(n.name) for n in cfs) or "none"
        raise UnsupportedError(
            f"target {target.name} maps exactly one hidden CF layer (Xylo's hidden population "
            f"with its recurrent weights); this graph has {len(cfs)} ({where}). Train with "
            f"one hidden layer (--model-option hidden=[N]); deeper networks are not mapped yet")
    cf = cfs[0]
    a = cf.attrs
    if a["signed"]:
        raise _refuse(target, cf, "it sends signed spikes; Xylo's spike counts are unsigned. "
                      "Train with --neuron signed=false")
    if a.get("reset", "subtract") != "subtract":
        raise _refuse(target, cf, "it resets to zero; Xylo subtracts the threshold. Train "
                      "with --neuron reset=subtract")
    if "v_min" in cf.params:
        raise _refuse(target, cf, "it has a membrane floor (v_min); Xylo has none")
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise UnsupportedError(f"target {target.name} takes one Input and one Output; the "
                               f"graph has {len(g.inputs)} and {len(g.outputs)}")
    back = g.back_edges()
    src = g[cf.inputs[0]]
    feeds = [g[s] for s in src.inputs] if src.op == "Add" else [src]
    rec = [p for p in feeds if p.op == "Linear" and (p.inputs[0], p.name) in back
           and p.inputs[0] == cf.name]
    fwd = [p for p in feeds if p not in rec]
    if len(fwd) != 1 or fwd[0].op != "Linear" or len(rec) > 1 or \
            any(f.op != "Linear" for f in feeds):
        raise _refuse(target, cf, "Xylo's hidden neurons read one input Linear (and one "
                      "recurrent Linear of their own spikes): nothing else may feed them")
    w_in, w_rec = fwd[0], (rec[0] if rec else None)
    chain = g[w_in.inputs[0]]
    while chain.op == "Flatten":
        chain = g[chain.inputs[0]]
    if chain.op != "Input":
        raise _refuse(target, w_in, f"it reads {chain.name!r} ({chain.op}); Xylo's input "
                      f"weights read the input channels")
    for p in [w_in] + ([w_rec] if w_rec else []):
        if len(g.consumers(p.name)) != 1 or len(g[p.inputs[0]].shape) != 1:
            raise _refuse(target, p, "Xylo's weights map one vector to one population")
    readers = [c for c in g.consumers(cf.name) if w_rec is None or c != w_rec.name]
    outs = [g[c] for c in readers]
    if len(outs) != 1 or outs[0].op != "Linear" or \
            [g[c].op for c in g.consumers(outs[0].name)] != ["Output"]:
        raise _refuse(target, cf, "its spikes must feed one Linear readout read by the Output "
                      "(Xylo's readout neurons)")
    w_out = outs[0]
    n_in, n_hid = int(g[w_in.inputs[0]].shape[0]), int(cf.shape[0])
    n_out = int(w_out.shape[0])
    hidden_bias = _has_bias(w_in) or (w_rec is not None and _has_bias(w_rec))
    if n_in + hidden_bias > lim_in:
        extra = (" plus one channel for the hidden bias (its bias enters as an input that "
                 "spikes every step)" if hidden_bias else "")
        raise _refuse(target, w_in, f"it reads {n_in} input features{extra}; target "
                      f"{target.name} holds {lim_in} input channels (its limit). Reduce the "
                      f"input to <= {lim_in - hidden_bias} features (e.g. pool the image)")
    if n_hid > lim_hid:
        raise _refuse(target, cf, f"it has {n_hid} neurons; target {target.name} holds "
                      f"{lim_hid} hidden neurons (its limit). Use --model-option "
                      f"hidden=[<= {lim_hid}]")
    if n_out > lim_out:
        raise _refuse(target, w_out, f"it has {n_out} outputs; target {target.name} holds "
                      f"{lim_out} readout neurons (its limit). Use <= {lim_out} classes")
    return Layout(g.inputs[0], w_in.name, w_rec.name if w_rec else None, cf.name, w_out.name,
                  g.outputs[0], n_in, n_hid, n_out, hidden_bias)


def check(g: Graph, target: Target) -> None:
    """The xylo back end's up-front check: `layout` on a folded copy."""
    layout(run_passes(g), target)
