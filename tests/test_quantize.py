"""The quantizer: mantissa and scale rules, accuracy on digits, refusals, NIR round trip."""

import json

import numpy as np
import pytest
from conftest import require_corpus
import torch

from cf2neuro import api
from cf2neuro.errors import BadInputError, UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.backends.loihi2.numerics import lava_dense_weights
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nir import from_nir, write_nir
from cf2neuro.nn.models import build_model
from cf2neuro.backends.loihi2.mapping import quantize_bias, quantize_mantissas
from cf2neuro.quant import format_report, quantization_report, quantize
from cf2neuro.runners.emulator import Emulator
from cf2neuro.targets import load_target

LOIHI2 = load_target("loihi2")


@pytest.fixture(scope="module")
def digits(digits_run):
    ckpt, x, ys = digits_run
    return api.checkpoint_graph(ckpt), x, ys


# --- accuracy --------------------------------------------------------------------------

def test_quantized_digits_accuracy_matches_float(digits):
    g, x, ys = digits
    q = quantize(g, "loihi2", calibration=x)
    float_pred = Engine(g)(x).numpy().sum(0).argmax(-1)
    quant_pred = Emulator(q).run(x)["output"].sum(0).argmax(-1)
    float_acc, quant_acc = (float_pred == ys).mean(), (quant_pred == ys).mean()
    agreement = (float_pred == quant_pred).mean()
    print(f"float {float_acc:.4f} quantized {quant_acc:.4f} agreement {agreement:.4f}")
    assert float_acc > 0.85
    assert abs(float_acc - quant_acc) <= 0.01
    assert agreement >= 0.98


def test_digits_layers_get_the_documented_integer_form(digits):
    g, x, _ = digits
    q = quantize(g, "loihi2", calibration=x)
    fp = q.meta["fixed_point"]
    # pixels k/16 lie on a grid: scale 240 represents them exactly in 8 unsigned bits
    assert fp == {"target": "loihi2", "backend": "loihi2", "input_scale": 240.0, "input_bits": 8,
                  "input_signed": False, "latency": 3, "output_scale": fp["output_scale"]}
    for name in ("layers.2", "layers.4"):  # CF layers: vth in [2048, 4096), dv from β = 0.5
        f = q[name].attrs["fixed_point"]
        assert 2048 <= f["vth"] < 4096 and f["dv"] == 2048
        assert f["max_spikes"] == 1 and f["signed"] is True
        assert q[name].params["bias_mant"].dtype == np.int32
        assert np.abs(q[name].params["bias_mant"]).max() <= 4095
    l1, l3, l5 = (q[n] for n in ("layers.1", "layers.3", "layers.5"))
    assert l1.attrs["fixed_point"]["num_message_bits"] == 8      # graded input pixels
    assert l3.attrs["fixed_point"]["num_message_bits"] == 2      # ternary spikes
    assert l1.attrs["fixed_point"]["weight_exp"] < 0 < l3.attrs["fixed_point"]["weight_exp"]
    for n in (l1, l3, l5):  # 8-bit legal mantissas, full range used
        m = n.params["weight_mant"]
        assert m.dtype == np.int16 and np.array_equal(lava_dense_weights(m), m)
        assert np.abs(m).max() == 254 or m.max() == 255
    # readout: integer weights, its own scale, an integer bias the runner adds
    assert l5.params["bias_int"].dtype == np.int64
    np.testing.assert_allclose(l5.params["bias_int"] / fp["output_scale"],
                               g["layers.5"].params["bias"], atol=1 / fp["output_scale"])
    # float parameters stay for reports; the graph still runs in float
    assert np.array_equal(q["layers.1"].params["weight"], g["layers.1"].params["weight"])
    rep = {r["node"]: r for r in quantization_report(q)}
    assert 0 < rep["layers.1"]["clipped_fraction"] < 0.005
    assert rep["layers.1"]["round_err_max"] <= 1 / 254 + 1e-9
    assert rep["layers.2"]["vth"] == q["layers.2"].attrs["fixed_point"]["vth"]
    table = format_report(q)
    assert "layers.3" in table and "input_scale 240" in table and "latency 3" in table


def test_quantized_scale_tracks_the_float_membrane():
    """v_int ≈ scale·v (CF) and 64·scale·v (Lava LIF) below threshold, for each neuron kind."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (12, 4, 5)).astype(np.float32)
    w = rng.normal(0, 0.5, (3, 5)).astype(np.float32)
    b = rng.normal(0, 0.2, 3).astype(np.float32)
    kinds = {
        "CFNeuron": ({}, {"threshold": 30.0, "beta": 0.75}),
        "IF": ({"r": np.full(3, 2.0), "v_threshold": np.full(3, 30.0)}, {}),
        "LIF": ({"tau": np.full(3, 4e-3), "r": np.full(3, 4.0), "v_leak": np.full(3, 0.3),
                 "v_threshold": np.full(3, 30.0)}, {}),
        "CubaLIF": ({"tau_syn": np.full(3, 2e-3), "tau_mem": np.full(3, 5e-3),
                     "r": np.full(3, 5.0), "v_leak": np.zeros(3), "v_threshold": np.full(3, 30.0),
                     "w_in": np.full(3, 2.0)}, {}),
    }
    for op, (params, attrs) in kinds.items():
        g = Graph({"dt": 1e-3})
        g.add_node("x", "Input", attrs={"shape": [5]})
        g.add_node("fc", "Linear", ["x"], {"weight": w, "bias": b if op != "CubaLIF" else
                                           np.zeros(3, np.float32)})
        g.add_node("n", op, ["fc"], params, attrs)
        g.add_node("o", "Output", ["n"])
        q = quantize(g, "loihi2", calibration=x)
        units = q["n"].meta["quant"]["scale"] * (1 if op == "CFNeuron" else 64)
        v_int = Emulator(q).run(x, ["v:n"])["v:n"] / units
        v_float = Engine(q).run(x, ["v:n"])["v:n"].numpy()  # q's float form: θ folded
        scale = np.abs(v_float).max()
        assert Emulator(q).run(x)["output"].sum() == 0  # below threshold throughout
        assert np.abs(v_int - v_float).max() < 0.03 * scale, op  # 8-bit weights


# --- mantissas, biases, inputs -----------------------------------------------------------

def test_mantissas_round_to_nearest_even_and_are_lava_legal():
    fmt = LOIHI2.numeric
    w = np.array([2.9, 3.1, 5.0, -2.9, -3.1, 254.0, 300.0, -300.0]) / 254
    m, rep = quantize_mantissas(w, clip=1.0, scale=254.0, fmt=fmt)
    # nearest even (round-then-floor would give 2 for 3.1, and -4 for -2.9 is right either way)
    assert m.tolist() == [2, 4, 4, -2, -4, 254, 254, -254]  # clipped at ±c first
    assert rep["sign_mode"] == "mixed" and rep["clipped_fraction"] == 0.25
    assert np.array_equal(lava_dense_weights(m), m)
    m, rep = quantize_mantissas(np.array([0.0, 3.0, 3.4, 300.0]), 255.0, 1.0, fmt)
    assert m.tolist() == [0, 3, 3, 255] and rep["sign_mode"] == "excitatory"
    rng = np.random.default_rng(0)
    w = rng.standard_t(3, 5000)
    c = np.percentile(np.abs(w), 99.9)
    m, rep = quantize_mantissas(w, c, 254 / c, fmt)
    assert np.all(m % 2 == 0) and m.min() >= -256 and m.max() <= 254
    assert rep["clipped_fraction"] == pytest.approx(0.001, abs=4e-4)
    assert rep["round_err_max"] <= 1 / 254 + 1e-12


def test_bias_gets_an_exponent_when_the_mantissa_is_too_small():
    fmt = LOIHI2.numeric
    mant, exp, rep = quantize_bias(np.array([100.0, -3000.5, 4095.0]), fmt)
    assert exp == 0 and mant.tolist() == [100, -3000, 4095]
    mant, exp, rep = quantize_bias(np.array([70000.0, -5.0]), fmt)
    assert exp == 5 and mant.tolist() == [2188, 0]  # 70000/32 = 2187.5 -> 2188 (half even)
    assert rep["bias_clipped_fraction"] == 0
    mant, exp, rep = quantize_bias(np.array([1e7]), fmt)  # beyond 4095·2^7: clipped
    assert exp == 7 and mant.tolist() == [4095] and rep["bias_clipped_fraction"] == 1.0


def test_the_input_layer_bias_uses_an_exponent():
    g = Graph({"timesteps": 2})
    g.add_node("x", "Input", attrs={"shape": [4]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.full((2, 4), 0.01, np.float32),
                                       "bias": np.array([3.0, -2.0], np.float32)})
    g.add_node("n", "CFNeuron", ["fc"], attrs={"beta": 0.5})
    g.add_node("o", "Output", ["n"])
    q = quantize(g, "loihi2")
    f = q["n"].attrs["fixed_point"]
    bias = q["n"].params["bias_mant"].astype(np.int64) << f["bias_exp"]
    assert f["bias_exp"] > 0 and np.abs(q["n"].params["bias_mant"]).max() <= 4095
    np.testing.assert_allclose(bias / f["vth"], [3.0, -2.0], rtol=2e-3)


def test_input_scale_from_calibration():
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.eye(3, dtype=np.float32)})
    g.add_node("n", "CFNeuron", ["fc"])
    g.add_node("o", "Output", ["n"])

    def fp(**kw):
        return quantize(g, "loihi2", **kw).meta["fixed_point"]
    assert (fp()["input_scale"], fp()["input_bits"], fp()["input_signed"]) == (127.0, 8, True)
    assert fp(input_range=2.0)["input_scale"] == 63.5
    binary = fp(calibration=np.array([0, 1, 1, 0.0]))
    assert (binary["input_scale"], binary["input_bits"]) == (1.0, 0)
    counts = fp(calibration=np.array([0, 3, 7, 2.0]))  # event counts: exact, scale 1
    assert (counts["input_scale"], counts["input_signed"]) == (1.0, False)
    analog = fp(calibration=np.array([-0.3, 0.71, 0.2]))
    assert analog["input_signed"] and analog["input_scale"] == pytest.approx(127 / 0.71)
    q = quantize(g, "loihi2", calibration=np.array([0, 1, 1, 0.0]))
    assert q["fc"].attrs["fixed_point"]["num_message_bits"] == 0


# --- pooling, corpus graphs, round trip -------------------------------------------------

def test_avgpool_becomes_sumpool_with_the_scale_folded_downstream():
    torch.manual_seed(0)
    model = build_model("vgg-small", {"timesteps": 4, "channels": [4, "A", 8, "A"],
                                      "fc_hidden": [8]})
    g = run_passes(trace_model(model))
    x = np.random.default_rng(0).uniform(0, 1, (4, 6, 1, 8, 8)).astype(np.float32)
    q = quantize(g, "loihi2", calibration=x)
    pools = [n for n in q.nodes.values() if n.meta.get("from") == "AvgPool2d"]
    assert len(pools) == 2 and all(p.op == "SumPool2d" for p in pools)
    # the float graph computes the same function: 1/k² went into the next weights
    a, b = Engine(g)(x), Engine(q)(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    conv_after_pool = q["layers.3.module.0"]
    assert conv_after_pool.meta["pool_folded"] == ["layers.2.module"]
    # sum of ≤ 4 ternary spikes: a 4-bit signed payload
    assert conv_after_pool.attrs["fixed_point"]["num_message_bits"] == 4
    out = Emulator(q).run(x)["output"]
    assert out.shape == (4, 6, 10) and np.abs(out).sum() > 0


def test_quantized_graph_round_trips_through_nir(digits, tmp_path):
    import nir

    g, x, _ = digits
    q = quantize(g, "loihi2", calibration=x)
    path = tmp_path / "q.nir"
    write_nir(q, path)
    back = from_nir(path)
    q.meta["dt"] = back.meta["dt"]
    assert back.equals(q)
    assert np.array_equal(Emulator(back).run(x)["output"], Emulator(q).run(x)["output"])
    # what the Lava runtime reads, without cf2neuro: flat dicts of ints and int arrays
    ng = nir.read(path)
    assert ng.metadata["cf2neuro.fixed_point"]["latency"] == 3
    dense = ng.nodes["layers.3"].metadata["cf2neuro.fixed_point"]
    assert dense["weight_mant"].dtype == np.int16 and int(dense["num_message_bits"]) == 2
    neuron = ng.nodes["layers.4"].metadata["cf2neuro.fixed_point"]
    assert {"vth", "dv", "bias_mant", "bias_exp", "max_spikes", "signed", "depth"} <= \
        set(neuron)
    # a float graph's file has none of it
    write_nir(g, tmp_path / "f.nir")
    assert "cf2neuro.fixed_point" not in nir.read(tmp_path / "f.nir").nodes["layers.4"].metadata


def test_cnn_corpus_graph_quantizes_with_the_conv_scale_in_the_next_layer():
    path = require_corpus("cnn_sinabs.nir")
    g = from_nir(path)
    x = (np.random.default_rng(0).random((3, 2, 2, 34, 34)) < 0.1).astype(np.float32)
    q = quantize(g, "loihi2", calibration=x)
    assert q.meta["fixed_point"]["latency"] == 7 and q.meta["fixed_point"]["input_bits"] == 0
    conv, neuron = q["0"], q["1"]
    assert "weight_exp" not in conv.attrs["fixed_point"]  # Lava's Conv ignores it
    # the conv's mantissa scale is the IF layer's scale: vth = scale·θ, θ = 1
    assert neuron.attrs["fixed_point"]["vth"] == round(conv.meta["quant"]["scale"])
    assert neuron.attrs["fixed_point"]["du"] == 4095 and neuron.attrs["fixed_point"]["dv"] == 0
    assert neuron.attrs["fixed_point"]["vth"] >= 75
    assert np.abs(conv.params["weight_mant"]).max() in (254, 255, 256)


# --- refusals -------------------------------------------------------------------------------

def small_mlp(signed=True, k=1):
    torch.manual_seed(0)
    model = build_model("mlp", {"timesteps": 4, "hidden": [16],
                                "neuron": {"signed": signed, "max_spikes": k}})
    return run_passes(trace_model(model))


def test_loihi_refuses_signed_and_graded_spikes_and_analog_inputs():
    with pytest.raises(UnsupportedError, match="signed .negative. spikes.*binary spikes only"):
        quantize(small_mlp(signed=True), "loihi")
    with pytest.raises(UnsupportedError, match="graded spikes up to K=3"):
        quantize(small_mlp(signed=False, k=3), "loihi")
    g = small_mlp(signed=False)
    with pytest.raises(UnsupportedError, match="binary input spikes only"):
        quantize(g, "loihi", calibration=np.array([0.0, 0.5, 1.0]))
    q = quantize(g, "loihi", calibration=np.array([0.0, 1.0]))
    assert q.meta["fixed_point"]["input_bits"] == 0
    assert all(n.attrs["fixed_point"]["num_message_bits"] == 0
               for n in q.nodes.values() if n.op == "Linear")
    # loihi2 takes the signed and the graded model
    assert quantize(small_mlp(signed=True, k=3), "loihi2")["layers.3"].attrs[
        "fixed_point"]["num_message_bits"] == 3


def test_loihi_refuses_sum_pooling():
    torch.manual_seed(0)
    model = build_model("vgg-small", {"timesteps": 4, "channels": [4, "A", 8], "fc_hidden": [8],
                                      "neuron": {"signed": False}})
    g = run_passes(trace_model(model))
    with pytest.raises(UnsupportedError, match="graded.*binary spikes only"):
        quantize(g, "loihi", calibration=np.array([0.0, 1.0]))


def target_file(tmp_path, **resources):
    text = (LOIHI2_PATH.read_text())
    for key, value in resources.items():
        text = text.replace(f"[resources.{key}]\nvalue = ", f"[resources.{key}]\nvalue = {value}"
                            f"  # was ")
    path = tmp_path / "small.toml"
    path.write_text(text.replace('name = "loihi2"', 'name = "small"'))
    return path


LOIHI2_PATH = __import__("pathlib").Path(LOIHI2.path)


def test_layers_over_the_fan_in_limit_and_too_many_neurons_are_refused(tmp_path):
    g = small_mlp()  # fan-in 64 into the first layer: split over two synapse groups
    q = quantize(g, target_file(tmp_path, fan_in=32))
    assert q.meta["fixed_point"]["split_layers"] == 1
    with pytest.raises(UnsupportedError, match="fan-in 16 over the limit.*readout"):
        quantize(g, target_file(tmp_path, fan_in=8))  # the readout (16 in) cannot split
    with pytest.raises(UnsupportedError, match="16 neurons; target small holds 1 cores x 8"):
        quantize(g, target_file(tmp_path, cores=1, neurons_per_core=8))


def test_ops_without_a_fixed_point_form_are_refused_with_the_reason():
    torch.manual_seed(0)
    spk = build_model("spikformer", {"timesteps": 4, "embed_dim": 16, "heads": 2, "depth": 1,
                                     "patch_channels": [8]})
    q = quantize(run_passes(trace_model(spk)), "loihi2")  # emulator/onnxruntime, not Lava
    assert "self-attention" in json.loads(q.meta["fixed_point"]["runner_refusals"])["lava"]
    res = build_model("resnet-small", {"timesteps": 4, "stem": 4, "channels": [4, 8]})
    q = quantize(run_passes(trace_model(res)), "loihi2")  # residual paths are balanced now
    assert "balance" in q.meta["fixed_point"]
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [1, 4, 4]})
    g.add_node("c", "Conv2d", ["x"], {"weight": np.ones((2, 1, 3, 3), np.float32)},
               {"padding": [1, 1]})
    g.add_node("n", "CFNeuron", ["c"])
    g.add_node("p", "MaxPool2d", ["n"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("o", "Output", ["p"])
    with pytest.raises(UnsupportedError, match="max pooling"):
        quantize(g, "loihi2")
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.eye(2, dtype=np.float32)})
    g.add_node("n", "LIF", ["fc"], {"tau": np.full(2, 2e-3), "r": np.ones(2),
                                    "v_leak": np.zeros(2), "v_threshold": np.ones(2)},
               {"reset": "subtract"})
    g.add_node("o", "Output", ["n"])
    with pytest.raises(UnsupportedError, match="resets to zero"):
        quantize(g, "loihi2")
    g["n"].attrs["reset"] = "zero"
    g["n"].params["tau"] = np.array([2e-3, 3e-3])
    with pytest.raises(UnsupportedError, match="tau differs between neurons"):
        quantize(g, "loihi2")


def test_a_target_without_a_number_format_is_not_quantized_for(tmp_path):
    path = tmp_path / "float.toml"
    path.write_text('name = "float"\nrunner = "reference"\n')
    with pytest.raises(BadInputError, match="no fixed-point format"):
        quantize(small_mlp(), path)
