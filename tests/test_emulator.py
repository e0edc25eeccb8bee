"""The fixed-point emulator: hand-computed integer traces, and Lava's process models
transcribed step by step in numpy (delays, resets and all) on random networks."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import require_corpus
import torch
from scipy import signal

from cf2neuro import api
from cf2neuro.errors import BadInputError, ConfigError, UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.backends.loihi2.lower import pipeline_depths
from cf2neuro.backends.loihi2.numerics import FixedPointNumerics
from cf2neuro.nir import from_nir
from cf2neuro.quant import quantize
from cf2neuro.runners.emulator import Emulator, emulate

M23 = (1 << 23) - 1
CORPUS = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "nir-graphs"


# --- hand-built quantized graphs ------------------------------------------------------

def qgraph(n_in, nodes, meta=None):
    """Input [n_in] -> nodes (name, op, params, fixed_point attrs, attrs) in a chain -> Output."""
    g = Graph({"fixed_point": {"input_scale": 1.0, "input_bits": 16, "input_signed": True,
                               **(meta or {})}})
    g.add_node("x", "Input", attrs={"shape": list(n_in) if isinstance(n_in, (list, tuple))
                                    else [n_in]})
    prev = "x"
    for name, op, params, fp, attrs in nodes:
        g.add_node(name, op, [prev], params, {**attrs, "fixed_point": fp})
        prev = name
    g.add_node("out", "Output", [prev])
    return g


def dense(name, w, exp=0, nmb=8, bias_int=None):
    w = np.asarray(w)
    params = {"weight": w.astype(np.float32), "weight_mant": w.astype(np.int16)}
    if bias_int is not None:
        params["bias_int"] = np.asarray(bias_int, np.int64)
    return (name, "Linear", params, {"weight_exp": exp, "num_message_bits": nmb}, {})


def cf(name, n, vth, dv=0, k=1, signed=True, bias=0, bias_exp=0):
    return (name, "CFNeuron", {"bias_mant": np.full(n, bias, np.int32)},
            {"vth": vth, "dv": dv, "max_spikes": k, "signed": signed, "bias_exp": bias_exp},
            {"max_spikes": k, "signed": signed})


def lif(name, n, vth, du=4095, dv=0, bias=0, bias_exp=0):
    return (name, "IF", {"r": np.ones(n), "v_threshold": np.ones(n),
                         "bias_mant": np.full(n, bias, np.int32)},
            {"du": du, "dv": dv, "vth": vth, "bias_exp": bias_exp}, {})


def run(g, x, probes=()):
    x = np.asarray(x, dtype=np.int64)
    return Emulator(g).run(x.reshape(x.shape[0], 1, *x.shape[1:]), probes)


def seq(res, key):
    return res[key][:, 0].tolist()


# --- hand-computed traces ---------------------------------------------------------------

def test_cf_trace_soft_reset_signed_and_decay():
    # a = x (identity Dense, exp 0). vth 3, K 1 signed, dv 2048 (β = 1/2, trunc toward 0).
    g = qgraph(1, [dense("d", [[2]]), cf("n", 1, vth=3, dv=2048)])
    res = run(g, [[4], [0], [-3], [-3], [0]], ["v:n"])
    # v: 8 -> n=1, v=5 | trunc0(5*2048)=2 -> n=0 | 1 - 6 = -5 -> n=-1, v=-2 |
    #    -1 - 6 = -7 -> n=-2 clipped to -1, v=-4 | trunc0(-4*2048) = -2 -> n=0
    assert seq(res, "output") == [[1], [0], [-1], [-1], [0]]
    assert seq(res, "v:n") == [[5], [2], [-2], [-4], [-2]]
    assert res["latency"] == 1


def test_cf_graded_and_bias_with_exponent():
    g = qgraph(1, [dense("d", [[2]]), cf("n", 1, vth=4, k=3, signed=False, bias=3,
                                         bias_exp=2)])
    res = run(g, [[0], [5], [-9]], ["v:n"])
    # bias 3 << 2 = 12: v = 12 -> n = 3, v = 0 | 10 + 12 = 22 -> n = 3 (K), v = 10 |
    # 10 - 18 + 12 = 4 -> n = 1, v = 0
    assert seq(res, "output") == [[3], [3], [1]]
    assert seq(res, "v:n") == [[0], [10], [0]]


def test_cf_state_saturates_at_24_bits():
    big = 1 << 22
    g = qgraph(1, [dense("d", [[2]], exp=3), cf("n", 1, vth=big, k=1, signed=True)])
    res = run(g, [[1 << 21], [1 << 21], [-(1 << 22)], [-(1 << 22)]], ["v:n"])
    # a = 2^21·2·8 = 2^25: v clips at 2^23-1, fires 1, keeps 2^23-1-2^22; the second step
    # clips again. Negative: a = -2^26: v = -(2^23-1) -> n = -1, v = -(2^23-1) + 2^22.
    assert seq(res, "output") == [[1], [1], [-1], [-1]]
    assert seq(res, "v:n") == [[M23 - big], [M23 - big], [-M23 + big], [-M23 + big]]


def test_dense_drops_the_lsb_of_mixed_sign_weights_only():
    # mixed: 3 -> 2, -3 -> -4; 300 clips to 255 then 254; one-sign matrices keep odd weights
    g = qgraph(3, [dense("d", [[3, -3, 300]])])
    assert seq(run(g, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]), "output") == [[2], [-4], [254]]
    g = qgraph(2, [dense("d", [[3, 5]])])
    assert seq(run(g, [[1, 1]]), "output") == [[8]]
    g = qgraph(2, [dense("d", [[-3, -300]])])
    assert seq(run(g, [[1, 1]]), "output") == [[-3 - 255]]


def test_dense_weight_exponent_shifts_arithmetically():
    g = qgraph(2, [dense("d", [[2, -4]], exp=-2)])
    # 2 - 8 = -6 >> 2 = -2 (floor, not -1); 6 >> 2 = 1; exp +3: 2·8 = 16
    assert seq(run(g, [[1, 2], [3, 0]]), "output") == [[-2], [1]]
    g = qgraph(2, [dense("d", [[2, -4]], exp=3)])
    assert seq(run(g, [[1, 0], [1, 1]]), "output") == [[16], [-16]]


def test_binary_dense_casts_graded_input_to_bool():
    # num_message_bits = 0: Lava reads any non-zero payload as 1, signs included
    g = qgraph(2, [dense("d", [[10, 100]], nmb=0)])
    assert seq(run(g, [[2, 0], [-1, 3], [0, 0]]), "output") == [[10], [110], [0]]
    g = qgraph(2, [dense("d", [[10, 100]], nmb=8)])
    assert seq(run(g, [[2, 0], [-1, 3]]), "output") == [[20], [290]]


def test_conv_output_wraps_to_24_bits():
    w = np.full((1, 1, 1, 1), 255)
    g = qgraph([1, 1, 2], [("c", "Conv2d", {"weight": w.astype(np.float32),
                                             "weight_mant": w.astype(np.int16)},
                            {"num_message_bits": 24}, {})])
    res = run(g, [[[[1 << 16, 1 << 15]]]])
    # 255·2^16 = 16711680 > 2^23 - 1 wraps to 16711680 - 2^24 = -65536; 255·2^15 fits
    assert res["output"][0, 0, 0, 0].tolist() == [-65536, 255 << 15]


def test_sumpool_is_a_grouped_conv_of_ones():
    g = qgraph([2, 4, 4], [("p", "SumPool2d", {}, {"num_message_bits": 2},
                            {"kernel": [2, 2], "stride": [2, 2]})])
    x = np.random.default_rng(0).integers(-1, 2, (3, 2, 4, 4))
    got = run(g, x)["output"][:, 0]
    ones = torch.ones(2, 1, 2, 2, dtype=torch.float64)
    want = torch.nn.functional.conv2d(torch.from_numpy(x).double(), ones, stride=2, groups=2)
    assert np.array_equal(got, want.long().numpy())


def test_lava_lif_strict_threshold_reset_and_current():
    # du 4095: u = a << 6 only; vth 1 -> 64. v = 64 is not > 64; 128 fires, v -> 0.
    g = qgraph(1, [dense("d", [[1]], nmb=8), lif("n", 1, vth=1)])
    res = run(g, [[1], [1], [1], [0]], ["v:n"])
    assert seq(res, "output") == [[0], [1], [0], [0]]
    assert seq(res, "v:n") == [[64], [0], [64], [64]]
    # du = 2047: u keeps half its value (4096 - 2048 = 2048): u = 64, 96, 48; dv 0
    g = qgraph(1, [dense("d", [[1]]), lif("n", 1, vth=1000, du=2047)])
    res = run(g, [[1], [1], [0], [0]], ["v:n"])
    assert seq(res, "v:n") == [[64], [160], [208], [232]]
    # bias (not shifted by 6) and dv = 2048: v = trunc0(v/2) + u + bias
    g = qgraph(1, [dense("d", [[1]]), lif("n", 1, vth=1000, dv=2048, bias=5, bias_exp=1)])
    res = run(g, [[0], [0], [1]], ["v:n"])
    assert seq(res, "v:n") == [[10], [15], [7 + 64 + 10]]


def test_lava_lif_current_wraps_like_lava():
    # u = a << 6 with a = 2^17 gives 2^23: Lava's wrap leaves exactly 2^23 alone (it only
    # wraps > 2^23), so v saturates at 2^23 - 1 > vth << 6 = 8388544 and fires (a true
    # 24-bit wrap would give -2^23 and no spike). One more unit of a wraps u to
    # -2^23 + 64: v = -8388544, no spike.
    g = qgraph(1, [dense("d", [[1]]), lif("n", 1, vth=131071)])
    res = run(g, [[1 << 17], [0], [(1 << 17) + 1]], ["v:n"])
    assert seq(res, "output") == [[1], [0], [0]]
    assert seq(res, "v:n") == [[0], [0], [-(1 << 23) + 64]]


def test_one_step_latency_per_synaptic_layer():
    g = qgraph(1, [dense("d1", [[2]]), cf("n1", 1, vth=1, k=8), dense("d2", [[2]]),
                   cf("n2", 1, vth=1, k=8), dense("d3", [[2]])])
    res = run(g, [[1], [0], [0]])
    assert res["latency"] == 3
    assert pipeline_depths(g) == {"x": 0, "d1": 1, "n1": 1, "d2": 2, "n2": 2, "d3": 3,
                                  "out": 3}
    # outputs are aligned with the input steps: the impulse comes back at t = 0
    assert seq(res, "output") == [[8], [0], [0]]


def test_unaligned_paths_are_refused():
    g = Graph({"fixed_point": {}})
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("a", "Linear", ["x"], {"weight": np.eye(2, dtype=np.float32)})
    g.add_node("n", "CFNeuron", ["a"])
    g.add_node("b", "Linear", ["n"], {"weight": np.eye(2, dtype=np.float32)})
    g.add_node("c", "Linear", ["x"], {"weight": np.eye(2, dtype=np.float32)})
    g.add_node("s", "Add", ["b", "c"])
    g.add_node("o", "Output", ["s"])
    with pytest.raises(UnsupportedError, match="different numbers of Lava synaptic steps"):
        pipeline_depths(g)


def test_float_graph_and_bad_inputs_are_refused():
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("a", "Linear", ["x"], {"weight": np.eye(2, dtype=np.float32)})
    g.add_node("o", "Output", ["a"])
    with pytest.raises(BadInputError, match="quantize"):
        Emulator(g)
    with pytest.raises(UnsupportedError, match="not quantized"):
        Engine(g, FixedPointNumerics())
    q = qgraph(1, [dense("d", [[2]])])
    with pytest.raises(BadInputError, match="NaN"):
        Emulator(q).run(np.full((2, 1, 1), np.nan))


def test_float_inputs_are_quantized_with_the_input_scale():
    g = qgraph(2, [dense("d", [[1, 0], [0, 1]])],
               meta={"input_scale": 10.0, "input_bits": 4, "input_signed": True})
    res = Emulator(g).run(np.array([[[0.25, -0.375]], [[0.36, -0.25]], [[5.0, -5.0]]],
                                   np.float32))
    # round half to even: 2.5 -> 2, -3.75 -> -4, 3.6 -> 4, -2.5 -> -2; clipped to the 4-bit [-8, 7]
    assert res["output"][:, 0].tolist() == [[2, -4], [4, -2], [7, -8]]


# --- Lava's process models, transcribed step by step -----------------------------------

def lava_dense_legal(w):
    """lava.utils.weightutils: determine_sign_mode, clip_weights(8), truncate_weights(8)."""
    w = np.asarray(w).astype(np.int32)
    if np.min(w) >= 0:
        return np.clip(w, 0, 255)
    if np.max(w) <= 0:
        return -np.clip(-w, 0, 255)
    return (np.clip(w, -256, 255) >> 1) << 1


def lava_conv_scipy(x_xyc, weight, stride, padding, groups):
    """lava.proc.conv.utils.conv_scipy (dilation 1), output cast like utils.conv."""
    kx, ky = weight.shape[1:3]
    xo = (x_xyc.shape[0] + 2 * padding[0] - kx) // stride[0] + 1
    yo = (x_xyc.shape[1] + 2 * padding[1] - ky) // stride[1] + 1
    out = np.zeros((xo, yo, weight.shape[0]))
    xp = np.pad(x_xyc, ((padding[0],) * 2, (padding[1],) * 2, (0, 0)))
    k_grp, c_grp = weight.shape[0] // groups, x_xyc.shape[2] // groups
    for g in range(groups):
        for k in range(k_grp):
            for c in range(c_grp):
                t = signal.convolve2d(xp[:, :, c + g * c_grp],
                                      weight[k + g * k_grp, :, :, c].astype(float), mode="valid")
                out[:, :, k + g * k_grp] += t[::stride[0], ::stride[1]]
    return out.astype(np.int32)


def signed_clamp(x, bits):
    base = 1 << bits
    return (x + base // 2) % base - base // 2


def trunc0(x):
    return np.sign(x) * np.right_shift(np.abs(x), 12)


class LavaTranscript:
    """What the Lava runner builds for a quantized graph, one Lava time step at a time.

    Samples stream through one run: sample b is input steps [b·T, (b+1)·T), L zero
    steps follow. Every process sends at step τ what it computed at τ-1 (Dense, Conv,
    sum pooling) or now (neurons). The runner resets each neuron at b·T + depth and
    zeroes the buffer of a Dense on a back edge at the same step (docs/fixed_point.md).
    """

    def __init__(self, g: Graph):
        self.g = g
        self.order = g.topological_order()
        self.back = g.back_edges()
        self.depth = {n: g[n].attrs["fixed_point"]["depth"] for n in self.order
                      if g[n].op not in ("Add", "Identity")}
        self.syn = [n for n in self.order if g[n].op in ("Linear", "Conv2d", "SumPool2d")]

    def run(self, x_int):
        g, T, B = self.g, x_int.shape[0], x_int.shape[1]
        L = g.meta["fixed_point"]["latency"]
        steps = B * T + L
        inp = np.concatenate([x_int.transpose(1, 0, *range(2, x_int.ndim)).reshape(
            B * T, *x_int.shape[2:]), np.zeros((L, *x_int.shape[2:]), np.int64)])
        buf = {n: np.zeros(g[n].shape, np.int64) for n in self.syn}
        state = {n: None for n in self.order}
        rec = {n: [] for n in self.order}
        for tau in range(steps):
            for n in self.order:
                d = self.depth.get(n)
                if d is not None and tau >= d and (tau - d) % T == 0:
                    state[n] = None
                    if n in buf and any((s, n) in self.back for s in g[n].inputs):
                        buf[n][...] = 0
            # a Dense/Conv sends what it computed last step (the readout plus its bias_int,
            # which the runner adds to the probed a_out)
            val = {n: buf[n] + g[n].params.get("bias_int", 0) for n in self.syn}
            for n in self.order:
                node = g[n]
                if node.op == "Input":
                    val[n] = inp[tau]
                elif node.op in ("Linear", "Conv2d", "SumPool2d"):
                    continue
                elif node.op == "Flatten":
                    val[n] = val[node.inputs[0]].reshape(-1)
                elif node.op == "Add":
                    val[n] = sum(val[s] for s in node.inputs)
                elif node.op == "Output":
                    val[n] = val[node.inputs[0]]
                elif node.op == "CFNeuron":
                    val[n], state[n] = self.cf(node, state[n], val[node.inputs[0]])
                else:
                    val[n], state[n] = self.lif(node, state[n], val[node.inputs[0]])
            for n in self.syn:
                buf[n] = self.synapse(g[n], val[g[n].inputs[0]])
            for n in self.order:
                rec[n].append(val[n])
        out = {}
        for n, d in self.depth.items():
            r = np.stack(rec[n])
            out[n] = np.stack([r[b * T + d: b * T + d + T] for b in range(B)], axis=1)
        return out

    def synapse(self, node, s_in):
        fp = node.attrs["fixed_point"]
        nmb = fp["num_message_bits"]
        if node.op == "Linear":  # PyDenseModelBitAcc.run_spk
            w = lava_dense_legal(node.params["weight_mant"])
            if nmb > 0:
                a = w.dot(s_in.astype(np.int32))
            else:
                a = w[:, s_in.astype(bool)].sum(axis=1)
            e = fp["weight_exp"]
            a = np.left_shift(a, e) if e > 0 else np.right_shift(a, -e)
            return a.astype(np.int32).astype(np.int64)
        s = s_in if nmb > 0 else s_in.astype(bool).astype(np.int32)
        if node.op == "Conv2d":  # the runner's layout: (X, Y, C), kernel flipped
            wt = node.params["weight_mant"]
            w = wt[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)
            a = node.attrs
            groups = a["groups"]
            stride, padding = a["stride"][::-1], a["padding"][::-1]
        else:  # sum pooling: grouped Conv of ones
            c = s.shape[0]
            k = node.attrs["kernel"]
            w = np.ones((c, k[1], k[0], 1), np.int32)
            groups, stride, padding = c, node.attrs["stride"][::-1], node.attrs["padding"][::-1]
        out = lava_conv_scipy(s.transpose(2, 1, 0), w, stride, padding, groups)
        return signed_clamp(out, 24).transpose(2, 1, 0).astype(np.int64)

    @staticmethod
    def bias(node):
        fp = node.attrs["fixed_point"]
        m = node.params["bias_mant"].astype(np.int32)
        e = fp["bias_exp"]
        return np.left_shift(m, e) if e >= 0 else np.right_shift(m, -e)

    def cf(self, node, v, a):  # docs/fixed_point.md, CFNeuron row
        fp = node.attrs["fixed_point"]
        v = np.zeros(node.shape, np.int64) if v is None else v
        v = np.clip(trunc0(v * (4096 - fp["dv"])) + a + self.bias(node), -M23, M23)
        n = np.clip(np.fix(v / fp["vth"]).astype(np.int64), -fp["max_spikes"] * fp["signed"],
                    fp["max_spikes"])
        return n, v - n * fp["vth"]

    def lif(self, node, st, a):  # PyLifModelBitAcc.subthr_dynamics / spiking / reset
        fp = node.attrs["fixed_point"]
        u, v = (np.zeros(node.shape, np.int32), np.zeros(node.shape, np.int32)) \
            if st is None else st
        decayed_curr = np.int64(u) * (4096 - (fp["du"] + 1))
        decayed_curr = np.int32(np.sign(decayed_curr) * np.right_shift(np.abs(decayed_curr), 12))
        decayed_curr += np.left_shift(a.astype(np.int32), 6)
        mx = 2 ** 23
        wrapped = np.where(decayed_curr > mx, decayed_curr - 2 * mx, decayed_curr)
        wrapped = np.where(wrapped <= -mx, decayed_curr + 2 * mx, wrapped)
        u = wrapped.astype(np.int32)
        decayed_volt = np.int64(v) * (4096 - fp["dv"])
        decayed_volt = np.int32(np.sign(decayed_volt) * np.right_shift(np.abs(decayed_volt), 12))
        v = np.clip(decayed_volt + u + self.bias(node), -mx + 1, mx - 1).astype(np.int32)
        s = v > (fp["vth"] << 6)
        v = np.where(s, 0, v).astype(np.int32)
        return s.astype(np.int64), (u, v)


def mlp_graph(rng):
    g = Graph({"timesteps": 5})
    g.add_node("x", "Input", attrs={"shape": [6]})
    g.add_node("fc1", "Linear", ["x"], {"weight": rng.normal(0, 0.6, (8, 6)).astype(np.float32),
                                        "bias": rng.normal(0, 0.3, 8).astype(np.float32)})
    g.add_node("cf1", "CFNeuron", ["fc1"], attrs={"threshold": 0.8, "beta": 0.7,
                                                  "max_spikes": 2, "signed": True})
    g.add_node("fc2", "Linear", ["cf1"], {"weight": rng.normal(0, 0.5, (5, 8)).astype(np.float32),
                                          "bias": rng.normal(0, 0.2, 5).astype(np.float32)})
    g.add_node("cf2", "CFNeuron", ["fc2"], attrs={"threshold": 0.5, "beta": 1.0,
                                                  "max_spikes": 1, "signed": False})
    g.add_node("fc3", "Linear", ["cf2"], {"weight": rng.normal(0, 1, (3, 5)).astype(np.float32),
                                          "bias": rng.normal(0, 0.5, 3).astype(np.float32)})
    g.add_node("out", "Output", ["fc3"])
    return g, rng.normal(0, 1, (5, 7, 6)).astype(np.float32)


def cnn_graph(rng):
    g = Graph({"timesteps": 4})
    g.add_node("x", "Input", attrs={"shape": [2, 8, 8]})
    g.add_node("c1", "Conv2d", ["x"], {"weight": rng.normal(0, 0.4, (4, 2, 3, 3)).astype(
        np.float32), "bias": rng.normal(0, 0.1, 4).astype(np.float32)}, {"padding": [1, 1]})
    g.add_node("n1", "CFNeuron", ["c1"], attrs={"beta": 0.5, "max_spikes": 2, "signed": True})
    g.add_node("p1", "AvgPool2d", ["n1"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("c2", "Conv2d", ["p1"], {"weight": rng.normal(0, 0.5, (4, 2, 3, 2)).astype(
        np.float32)}, {"padding": [1, 0], "stride": [1, 2], "groups": 2})
    g.add_node("n2", "CFNeuron", ["c2"], attrs={"beta": 1.0, "max_spikes": 1, "signed": False})
    g.add_node("p2", "SumPool2d", ["n2"], attrs={"kernel": [2, 1], "stride": [2, 1]})
    g.add_node("fl", "Flatten", ["p2"])
    g.add_node("fc", "Linear", ["fl"], {"weight": rng.normal(0, 0.4, (6, 16)).astype(
        np.float32), "bias": rng.normal(0, 0.1, 6).astype(np.float32)})
    g.add_node("n3", "CFNeuron", ["fc"], attrs={"beta": 0.5, "max_spikes": 1, "signed": True})
    g.add_node("ro", "Linear", ["n3"], {"weight": rng.normal(0, 1, (3, 6)).astype(np.float32)})
    g.add_node("out", "Output", ["ro"])
    return g, rng.uniform(0, 1, (4, 5, 2, 8, 8)).astype(np.float32)


def imported_graph(rng):
    """IF, LIF (per-neuron thresholds) and a recurrent CubaLIF, as NIR importers give them."""
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [5]})
    g.add_node("fc1", "Linear", ["x"], {"weight": rng.normal(0.5, 1, (7, 5)).astype(np.float32),
                                        "bias": rng.normal(0, 0.1, 7).astype(np.float32)})
    g.add_node("if1", "IF", ["fc1"], {"r": np.full(7, 1.5), "v_threshold": np.full(7, 1.2)})
    g.add_node("fc2", "Linear", ["if1"], {"weight": rng.normal(0.3, 1, (6, 7)).astype(
        np.float32)})
    g.add_node("lif", "LIF", ["fc2"], {"tau": np.full(6, 4e-3), "r": np.full(6, 4.0),
                                       "v_leak": np.full(6, 0.1),
                                       "v_threshold": rng.uniform(0.5, 1.5, 6)})
    g.add_node("fc3", "Linear", ["lif"], {"weight": rng.normal(0.4, 1, (4, 6)).astype(
        np.float32)})
    g.add_node("sum", "Add", ["fc3", "rec"])
    g.add_node("cuba", "CubaLIF", ["sum"], {"tau_syn": np.full(4, 2e-3),
                                            "tau_mem": np.full(4, 5e-3), "r": np.full(4, 5.0),
                                            "v_leak": np.zeros(4), "v_threshold": np.ones(4),
                                            "w_in": np.full(4, 2.0)})
    g.add_node("rec", "Linear", ["cuba"], {"weight": rng.normal(0, 1, (4, 4)).astype(
        np.float32)})
    g.add_node("out", "Output", ["cuba"])
    return g, (rng.random((12, 6, 5)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("build", [mlp_graph, cnn_graph, imported_graph])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emulator_equals_lava_transcription_spike_for_spike(build, seed):
    g, x = build(np.random.default_rng(seed))
    q = quantize(g, "loihi2", calibration=x)
    em = Emulator(q)
    probes = [n.name for n in q.nodes.values() if n.op not in ("Input", "Output", "Add")]
    res = em.run(x, probes)
    ref = LavaTranscript(q).run(em.numerics.prepare_input(x).numpy())
    for name in probes:
        assert np.array_equal(res[name], ref[name]), name
    assert np.array_equal(res["output"], ref["out"])
    spikes = [res[n.name] for n in q.nodes.values() if n.op in ("CFNeuron", "IF", "LIF",
                                                                 "CubaLIF")]
    assert all(np.abs(s).sum() > 0 for s in spikes), "every layer should spike"
    assert res["latency"] == q.meta["fixed_point"]["latency"]


# --- the runner ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits(digits_run):
    ckpt, x, _ = digits_run
    return ckpt, x


def test_whole_digits_test_set_in_one_call_equals_small_batches(digits):
    # batched over samples: one call over the test set (speed: benchmarks/fixed_point.py)
    ckpt, x = digits
    q = quantize(api.checkpoint_graph(ckpt), "loihi2", calibration=x)
    em = Emulator(q)
    out = em.run(x)["output"]
    assert out.shape == (4, x.shape[1], 10) and x.shape[1] > 350 and out.dtype == np.int64
    parts = [em.run(x[:, i:i + 7])["output"] for i in range(0, x.shape[1], 7)]
    assert np.array_equal(out, np.concatenate(parts, axis=1))


def test_run_device_option(digits, tmp_path):
    ckpt, x = digits
    np.savez(tmp_path / "in.npz", x=x[:, :10])
    for runner in ("reference", "emulator"):
        plain = api.run(ckpt, runner=runner, inputs=tmp_path / "in.npz")
        on_cpu = api.run(ckpt, runner=runner, inputs=tmp_path / "in.npz", device="cpu")
        assert np.array_equal(plain["output"], on_cpu["output"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            api.run(ckpt, runner="emulator", inputs=tmp_path / "in.npz", device="cuda")


def test_run_api_on_checkpoint_and_its_quantized_nir_file(digits, tmp_path):
    from cf2neuro.nir import write_nir

    ckpt, x = digits
    np.savez(tmp_path / "in.npz", x=x[:, :20])
    res = api.run(ckpt, runner="emulator", target="loihi2", inputs=tmp_path / "in.npz",
                  probes=["layers.2", "v:layers.4"], out=tmp_path / "out.npz")
    assert res["output"].shape == (4, 20, 10) and int(res["latency"]) == 3
    assert res["v:layers.4"].shape == (4, 20, 256)
    assert set(np.unique(res["layers.2"])) <= {-1, 0, 1}
    with np.load(tmp_path / "out.npz") as f:
        assert sorted(f.files) == ["latency", "layers.2", "output", "v:layers.4"]
    # the same graph quantized, written to NIR with its integer form, runs identically
    q = quantize(api.checkpoint_graph(ckpt), "loihi2", calibration=x[:, :20])
    write_nir(q, tmp_path / "q.nir")
    again = api.run(tmp_path / "q.nir", runner="emulator", inputs=tmp_path / "in.npz")
    assert np.array_equal(again["output"], res["output"])
    with pytest.raises(BadInputError, match="quantized for target 'loihi2'"):
        api.run(tmp_path / "q.nir", runner="emulator", target="loihi",
                inputs=tmp_path / "in.npz")
    with pytest.raises(UnsupportedError, match="binary spikes only"):
        api.run(ckpt, runner="emulator", target="loihi", inputs=tmp_path / "in.npz")


def test_cli_runs_the_sinabs_corpus_graph(tmp_path):
    path = require_corpus("cnn_sinabs.nir")
    rng = np.random.default_rng(0)
    x = ((rng.random((6, 3, 2, 34, 34)) < 0.1) * rng.integers(1, 3, (6, 3, 2, 34, 34)))
    np.savez(tmp_path / "in.npz", x=x.astype(np.float32))
    cmd = ("import sys, cf2neuro.runners; from cf2neuro.cli import main; "
           "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", cmd, "run", str(path), "--runner", "emulator",
                        "--target", "loihi2", "--inputs", str(tmp_path / "in.npz"),
                        "--out", str(tmp_path / "out.npz"), "--probe", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as f:
        assert f["output"].shape == (6, 3, 10) and int(f["latency"]) == 7
        assert f["1"].shape == (6, 3, 16, 16, 16) and f["1"].sum() > 0
    # the float graph on the same inputs: the first IF layer spikes almost identically
    ref = Engine(from_nir(path)).run(x.astype(np.float32), probes=["1"])["1"].numpy()
    with np.load(tmp_path / "out.npz") as f:
        assert (f["1"] == ref).mean() > 0.98


def test_braille_graphs_run_and_track_the_float_model():
    for name in ("braille_noDelay_bias_zero", "braille_noDelay_noBias_subtract"):
        path = require_corpus(f"{name}.nir")
        g = from_nir(path, dt=1e-4)
        x = (np.random.default_rng(0).random((60, 4, 12)) < 0.1).astype(np.float32)
        q = quantize(g, "loihi2", calibration=x)
        assert q["lif1.lif"].attrs["fixed_point"]["du"] >= 0
        res = emulate(q, x, ["lif1.lif"])
        ref = Engine(g).run(x, probes=["lif1.lif"])
        # the recurrent CubaLIF layer: spike for spike but for rounding
        assert (res["lif1.lif"] == ref["lif1.lif"].numpy()).mean() > 0.97
        assert res["latency"] == 2
