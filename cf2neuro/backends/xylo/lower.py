"""A quantized graph as the Xylo specification Rockpool's XyloSim takes.

    spec = xylo_spec(qgraph)      # {name: numpy array}, Rockpool's argument names
    x = input_raster(qgraph, x)   # [T, B, channels] spike counts, bias channel included

The spec's keys are the arguments of rockpool 3.1.0's
``XyloSim.from_specification`` (devices/xylo/syns61201/xylo_sim.py:169-190)
and, but for ``bias`` (there ``bias_hidden``), of
``config_from_specification`` (syns61201/xylo_samna.py:50-69), which builds
the hardware configuration where samna is installed: weights_in
``[channels, hidden]``, weights_rec ``[hidden (pre), hidden (post)]`` (the
self-reset weight on its diagonal), weights_out ``[hidden, outputs]``, int8;
per-neuron dashes, thresholds and biases; one left shift per matrix. Every
value is checked against Xylo's fields before it leaves (`check_spec`).
"""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph
from .numerics import (
    BIAS_SPIKES,
    DASH_MAX,
    SHIFT_MAX,
    STATE_MAX,
    STATE_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
    XyloNumerics,
    fixed_point_attrs,
    hidden_weights,
    readout_weights,
)


def roles(qgraph: Graph) -> dict[str, str]:
    """Role ("input", "recurrent", "hidden", "readout") -> node name."""
    out = {}
    for n in qgraph:
        fp = n.attrs.get("fixed_point")
        if isinstance(fp, dict) and "role" in fp:
            out[fp["role"]] = n.name
    if not {"input", "hidden", "readout"} <= set(out):
        raise UnsupportedError("the graph is not quantized for xylo (no hidden layer and "
                               "readout roles); quantize it with cf2neuro.quant.quantize("
                               "graph, 'xylo')")
    return out


def xylo_spec(qgraph: Graph) -> dict[str, np.ndarray]:
    """The XyloSim specification of a graph quantized for xylo (numpy arrays, checked)."""
    r = roles(qgraph)
    hid = hidden_weights(qgraph, qgraph[r["hidden"]])
    out = readout_weights(qgraph[r["readout"]])
    w_in = hid["w_in"].T
    if hid["bias_weight"] is not None:  # the bias channel: the last input channel
        w_in = np.concatenate([w_in, hid["bias_weight"][None, :]], 0)
    h, o = hid["w_rec"].shape[0], out["w_out"].shape[0]
    spec = {
        "weights_in": w_in, "weights_rec": hid["w_rec"].T, "weights_out": out["w_out"].T,
        "dash_mem": hid["dash_mem"], "dash_syn": hid["dash_syn"],
        "dash_syn_2": np.zeros(h, np.int64), "threshold": hid["vth"], "bias": hid["bias"],
        "dash_mem_out": out["dash_mem"], "dash_syn_out": out["dash_syn"],
        "threshold_out": out["vth"], "bias_out": np.zeros(o, np.int64),
        "weight_shift_in": np.int64(hid["shift_in"]), "weight_shift_rec": np.int64(
            hid["shift_rec"]), "weight_shift_out": np.int64(fixed_point_attrs(
                qgraph[r["readout"]])["weight_shift"]),
    }
    check_spec(spec)
    return {k: np.asarray(v, np.int64) for k, v in spec.items()}


def check_spec(spec: dict) -> None:
    """UnsupportedError naming the first value outside Xylo's fields."""
    ranges = {"weights_in": (WEIGHT_MIN, WEIGHT_MAX), "weights_rec": (WEIGHT_MIN, WEIGHT_MAX),
              "weights_out": (WEIGHT_MIN, WEIGHT_MAX), "dash_mem": (0, DASH_MAX),
              "dash_syn": (0, DASH_MAX), "dash_syn_2": (0, DASH_MAX),
              "dash_mem_out": (0, DASH_MAX), "dash_syn_out": (0, DASH_MAX),
              "threshold": (1, STATE_MAX), "threshold_out": (1, STATE_MAX),
              "bias": (STATE_MIN, STATE_MAX), "bias_out": (STATE_MIN, STATE_MAX),
              "weight_shift_in": (0, SHIFT_MAX), "weight_shift_rec": (0, SHIFT_MAX),
              "weight_shift_out": (0, SHIFT_MAX)}
    for key, (lo, hi) in ranges.items():
        a = np.asarray(spec[key])
        if a.size and (a.min() < lo or a.max() > hi):
            raise UnsupportedError(f"Xylo's {key} must lie in {lo}..{hi}; the quantized graph "
                                   f"has {int(a.min())}..{int(a.max())}. Re-quantize it for "
                                   f"xylo (a hand-edited graph?)")


def input_raster(qgraph: Graph, x) -> np.ndarray:
    """Spike counts [T, B, channels] as XyloSim takes them: the emulator's own input rule
    (numerics.prepare_input), flattened, with the bias channel (15 spikes) last."""
    num = XyloNumerics()
    num.graph_fp = qgraph.meta["fixed_point"]
    t = num.prepare_input(x).cpu().numpy()
    t = t.reshape(*t.shape[:2], -1)
    r = roles(qgraph)
    if "bias_int" in qgraph[r["input"]].params:
        t = np.concatenate([t, np.full((*t.shape[:2], 1), BIAS_SPIKES, t.dtype)], 2)
    return t
