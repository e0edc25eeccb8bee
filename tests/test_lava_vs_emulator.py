"""The emulator is bit-exact with Lava: spike for spike, step for step (DESIGN §4).

Randomized quantized networks (Dense, Conv with stride and padding, sum
pooling, flatten; signed graded CF neurons with K up to 4, leak and bias;
weight exponents of both signs; 24-bit saturation), imported LIF / IF /
CubaLIF layers (Lava's own LIF) and a trained digits model on 100 test
samples run on the emulator and on REAL Lava (one run each, all samples
streamed); the output, every neuron layer's spike train and its final
membranes must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixed_point_checks import assert_emulator_equals_lava

from cf2neuro.ir import Graph
from cf2neuro.quant import quantize
from cf2neuro.runners.emulator import Emulator
from cf2neuro.backends.loihi2.runner import integer_inputs, run_lava

V_MAX = 2 ** 23 - 1


def _f32(a):
    return np.asarray(a, np.float32)


def _mlp(rng) -> tuple[Graph, tuple]:
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [12]})
    g.add_node("fc1", "Linear", ["x"], params={"weight": _f32(rng.normal(0, .5, (16, 12))),
                                               "bias": _f32(rng.normal(0, .1, 16))})
    g.add_node("cf1", "CFNeuron", ["fc1"], attrs={"threshold": 1.0, "beta": 0.5,
                                                  "max_spikes": 2, "signed": True})
    g.add_node("fc2", "Linear", ["cf1"], params={"weight": _f32(rng.normal(0, .5, (10, 16)))})
    g.add_node("cf2", "CFNeuron", ["fc2"], attrs={"threshold": 1.0, "beta": 0.75,
                                                  "max_spikes": 1, "signed": False})
    g.add_node("fc3", "Linear", ["cf2"], params={"weight": _f32(rng.normal(0, .5, (4, 10))),
                                                 "bias": _f32(rng.normal(0, .1, 4))})
    g.add_node("y", "Output", ["fc3"])
    return g.validate(), (12,)


def _conv_pool(rng) -> tuple[Graph, tuple]:
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [2, 9, 8]})
    g.add_node("c1", "Conv2d", ["x"], params={"weight": _f32(rng.normal(0, .4, (4, 2, 3, 3))),
                                              "bias": _f32(rng.normal(0, .1, 4))},
               attrs={"stride": [2, 1], "padding": [1, 1]})
    g.add_node("n1", "CFNeuron", ["c1"], attrs={"threshold": 1.0, "beta": 0.75,
                                                "max_spikes": 3, "signed": True})
    g.add_node("p1", "SumPool2d", ["n1"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("fl", "Flatten", ["p1"])
    g.add_node("fc1", "Linear", ["fl"], params={"weight": _f32(rng.normal(0, .3, (10, 32))),
                                                "bias": _f32(rng.normal(0, .1, 10))})
    g.add_node("n2", "CFNeuron", ["fc1"], attrs={"threshold": 1.0, "beta": 0.5,
                                                 "max_spikes": 4, "signed": True})
    g.add_node("fc2", "Linear", ["n2"], params={"weight": _f32(rng.normal(0, .5, (3, 10)))})
    g.add_node("y", "Output", ["fc2"])
    return g.validate(), (2, 9, 8)


def _conv_conv(rng) -> tuple[Graph, tuple]:
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [1, 8, 8]})
    g.add_node("c1", "Conv2d", ["x"], params={"weight": _f32(rng.normal(0, .5, (3, 1, 3, 3)))})
    g.add_node("n1", "CFNeuron", ["c1"], attrs={"threshold": 1.0, "beta": 1.0,
                                                "max_spikes": 4, "signed": True})
    g.add_node("c2", "Conv2d", ["n1"], params={"weight": _f32(rng.normal(0, .4, (4, 3, 2, 2))),
                                               "bias": _f32(rng.normal(0, .1, 4))},
               attrs={"stride": [2, 2], "padding": [1, 1]})
    g.add_node("n2", "CFNeuron", ["c2"], attrs={"threshold": 1.0, "beta": 0.5,
                                                "max_spikes": 2, "signed": True})
    g.add_node("fl", "Flatten", ["n2"])
    g.add_node("fc", "Linear", ["fl"], params={"weight": _f32(rng.normal(0, .3, (5, 64)))})
    g.add_node("y", "Output", ["fc"])
    return g.validate(), (1, 8, 8)


def _randomize(q: Graph, rng, saturate: bool) -> Graph:
    """Random integer parameters in the quantized graph's structure (still Lava-legal)."""
    exps = iter([-2, 2, -1, 1])  # both signs, whatever the seed
    for n in q.nodes.values():
        fp = n.attrs.get("fixed_point")
        if n.op == "Linear":
            fp["weight_exp"] = next(exps)
        elif n.op == "CFNeuron":
            fp["vth"] = int(rng.integers(40, 600))
            fp["dv"] = int(rng.choice([0, 410, 1024, 2048, 3500]))
            fp["bias_exp"] = int(rng.integers(0, 4))
            n.params["bias_mant"] = rng.integers(-120, 120, n.shape).astype(np.int32)
    if saturate:  # the first layer drives the 24-bit state into its limits
        first = next(n for n in q.nodes.values() if n.op in ("Linear", "Conv2d"))
        if first.op == "Linear":
            first.attrs["fixed_point"]["weight_exp"] = 8
        else:
            first.params["weight_mant"] = (first.params["weight_mant"] * 128).astype(np.int16)
        neuron = q[q.consumers(first.name)[0]]
        neuron.attrs["fixed_point"]["vth"] = V_MAX  # fires only when v sits at a limit
        neuron.attrs["fixed_point"]["dv"] = 0
        neuron.meta["saturation_probe"] = True
    return q


CASES = {  # name: (network, T, B, seed, saturate)
    "mlp": (_mlp, 6, 5, 0, False),
    "mlp-saturating": (_mlp, 5, 4, 1, True),
    "conv-stride-pad-pool-flatten": (_conv_pool, 4, 4, 2, False),
    "conv-conv-saturating": (_conv_conv, 5, 3, 3, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_randomized_networks_are_bit_exact(case, lava_python):  # noqa: F811
    make, T, B, seed, saturate = CASES[case]
    rng = np.random.default_rng(seed)
    g, shape = make(rng)
    x = _f32(rng.normal(0, 1, (T, B, *shape)))
    q = _randomize(quantize(g, "loihi2", calibration=x), rng, saturate)
    xi = integer_inputs(q, x)
    emu = assert_emulator_equals_lava(q, xi)
    # what the case is meant to cover really happened
    cfs = [n for n in q.nodes.values() if n.op == "CFNeuron"]
    seen = {"graded": max(int(np.abs(emu[c.name]).max()) for c in cfs),
            "negative": any(bool((emu[c.name] < 0).any()) for c in cfs),
            "leak": any(c.attrs["fixed_point"]["dv"] > 0 for c in cfs),
            "bias": any(np.any(c.params["bias_mant"] != 0) for c in cfs),
            "exp_signs": {int(np.sign(n.attrs["fixed_point"]["weight_exp"]))
                          for n in q.nodes.values() if n.op == "Linear"},
            # |v| <= 2^23 - 1 = vth: a spike means v was clipped at the limit
            "saturated": any(bool(emu[c.name].any()) for c in cfs
                             if c.meta.get("saturation_probe"))}
    assert seen["negative"] and seen["leak"] and seen["bias"], seen
    assert seen["saturated"] == saturate, seen
    if not saturate:
        assert seen["graded"] >= 2, seen
    if case == "conv-stride-pad-pool-flatten":
        assert seen["graded"] == 4, seen
    if case.startswith("mlp") and not saturate:
        assert {-1, 1} <= seen["exp_signs"], seen


def test_imported_lif_if_cubalif_run_on_lavas_lif_bit_exact(lava_python):  # noqa: F811
    """Reset-to-zero neurons of third-party graphs run on Lava's own LIF (LIFReset)."""
    rng = np.random.default_rng(5)
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [8]})
    g.add_node("fc1", "Linear", ["x"], params={"weight": _f32(rng.normal(0, .8, (10, 8))),
                                               "bias": _f32(rng.normal(0, .1, 10))})
    g.add_node("lif", "LIF", ["fc1"], params={
        "tau": _f32(np.full(10, 5e-3)), "r": _f32(np.full(10, 5.)),
        "v_leak": _f32(np.zeros(10)), "v_threshold": _f32(np.ones(10))})
    g.add_node("fc2", "Linear", ["lif"], params={"weight": _f32(rng.normal(0, .8, (6, 10)))})
    g.add_node("if", "IF", ["fc2"], params={"r": _f32(np.ones(6)),
                                            "v_threshold": _f32(np.ones(6))})
    g.add_node("fc3", "Linear", ["if"], params={"weight": _f32(rng.normal(0, .8, (5, 6)))})
    g.add_node("cuba", "CubaLIF", ["fc3"], params={
        "tau_syn": _f32(np.full(5, 4e-3)), "tau_mem": _f32(np.full(5, 8e-3)),
        "r": _f32(np.full(5, 8.)), "v_leak": _f32(np.zeros(5)),
        "v_threshold": _f32(np.full(5, .5)), "w_in": _f32(np.full(5, 4.))})
    g.add_node("fc4", "Linear", ["cuba"], params={"weight": _f32(rng.normal(0, .8, (3, 5)))})
    g.add_node("y", "Output", ["fc4"])
    x = _f32(rng.normal(0.5, 1, (8, 4, 8)))
    q = quantize(g.validate(), "loihi2", calibration=x)
    names = ["lif", "if", "cuba"]
    probes = names + [f"v:{n}" for n in names]
    xi = integer_inputs(q, x)
    emu = Emulator(q).run(xi, probes=probes)
    lava = run_lava(q, xi, probes=probes)
    np.testing.assert_array_equal(lava["output"], emu["output"])
    for n in names:
        assert emu[n].any(), n  # every layer spikes
        np.testing.assert_array_equal(lava[n], emu[n], err_msg=n)
        np.testing.assert_array_equal(lava[f"v:{n}"], emu[f"v:{n}"][-1], err_msg=f"v:{n}")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A CF-MLP trained briefly on digits (about 15 s on 2 cores)."""
    from cf2neuro.train import TrainConfig, train

    out = tmp_path_factory.mktemp("digits")
    metrics = train(TrainConfig(epochs=15, lr=2e-2), out, progress=False)
    return out, metrics


def test_trained_digits_model_is_bit_exact_on_100_test_samples(digits_model,  # noqa: F811
                                                               lava_python):
    import torch

    from cf2neuro.api import checkpoint_graph
    from cf2neuro.data import encode, load_dataset, method_for

    ckpt, metrics = digits_model
    assert metrics["test_accuracy"] > 0.85
    bundle = load_dataset("digits", seed=0)
    xs, ys = zip(*(bundle.test[i] for i in range(100)))
    x = encode(torch.stack(xs), 4, method_for(bundle.spec.kind, "direct"), None).numpy()
    y = np.array([int(v) for v in ys])
    q = quantize(checkpoint_graph(ckpt), "loihi2", calibration=x)
    xi = integer_inputs(q, x)
    emu = assert_emulator_equals_lava(q, xi)
    accuracy = (emu["output"].sum(0).argmax(-1) == y).mean()
    assert accuracy > 0.8
