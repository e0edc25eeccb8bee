"""Residual adds on Loihi 2: balanced paths run bit-exact on the emulator and on REAL Lava.

`cf2neuro.backends.loihi2.balance` gives an identity shortcut of spikes an
identity synapse and delays every shallower path after its spike source, so
``cf(conv(cf(conv(x))) + x)`` meets Lava's rules (input through synapses,
one step per Dense/Conv). Here: hand-built residual networks (images and
vectors), a resnet-small trained briefly on digits (emulator == Lava bit
for bit, argmax agreement with the float reference), the cost report, the
refusals that remain, and resnet19 on the emulator.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fixed_point_checks import assert_emulator_equals_lava

from cf2neuro.backends.loihi2.balance import is_delay
from cf2neuro.backends.loihi2.lower import pipeline_depths
from cf2neuro.backends.loihi2.runner import integer_inputs
from cf2neuro.errors import UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.quant import quantize
from cf2neuro.runners.emulator import Emulator


def _f32(a):
    return np.asarray(a, np.float32)


def _cf(g, name, src, k=1, signed=True, beta=0.75):
    g.add_node(name, "CFNeuron", [src], attrs={"threshold": 1.0, "beta": beta,
                                               "max_spikes": k, "signed": signed})


def _conv(g, rng, name, src, cin, cout, k=3, stride=1, std=None, bias=True):
    std = std if std is not None else 1.6 / np.sqrt(cin * k * k)
    params = {"weight": _f32(rng.normal(0, std, (cout, cin, k, k)))}
    if bias:
        params["bias"] = _f32(rng.normal(0.05, 0.05, cout))
    g.add_node(name, "Conv2d", [src], params, {"stride": [stride, stride],
                                               "padding": [k // 2, k // 2]})


def residual_cnn(seed: int = 0) -> Graph:
    """stem conv-CF; block A: conv-CF-conv + identity; block B (stride 2): conv-CF-conv-CF-conv
    + 1x1 conv shortcut (2 steps shorter: a chain of 2 delays); pool, flatten, readout."""
    rng = np.random.default_rng(seed)
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [2, 6, 6]})
    _conv(g, rng, "c0", "x", 2, 8, std=0.8)
    _cf(g, "n0", "c0", k=2)                               # graded signed spikes
    _conv(g, rng, "a.c1", "n0", 8, 8)
    _cf(g, "a.n1", "a.c1")
    _conv(g, rng, "a.c2", "a.n1", 8, 8)
    g.add_node("a.add", "Add", ["a.c2", "n0"])            # identity shortcut
    _cf(g, "a.n2", "a.add", k=2)
    _conv(g, rng, "b.c1", "a.n2", 8, 12, stride=2)
    _cf(g, "b.n1", "b.c1")
    _conv(g, rng, "b.c2", "b.n1", 12, 12)
    _cf(g, "b.n2", "b.c2", signed=False)                  # binary spikes on the way
    _conv(g, rng, "b.c3", "b.n2", 12, 12)
    _conv(g, rng, "b.sc", "a.n2", 8, 12, k=1, stride=2, std=0.4)
    g.add_node("b.add", "Add", ["b.c3", "b.sc"])          # conv shortcut
    _cf(g, "b.n3", "b.add")
    g.add_node("pool", "AvgPool2d", ["b.n3"], attrs={"kernel": [3, 3], "stride": [3, 3]})
    g.add_node("flat", "Flatten", ["pool"])
    g.add_node("fc", "Linear", ["flat"], {"weight": _f32(rng.normal(0, 0.8, (5, 12))),
                                          "bias": _f32(rng.normal(0, 0.1, 5))})
    g.add_node("y", "Output", ["fc"])
    return g.validate()


def binary_residual_cnn() -> Graph:
    """`residual_cnn` with binary spikes (K=1, unsigned) and no pooling: for target loihi."""
    g = residual_cnn()
    for n in g.nodes.values():
        if n.op == "CFNeuron":
            n.attrs.update(max_spikes=1, signed=False)
    g["pool"].op, g["pool"].attrs = "Flatten", {"start_dim": 0, "end_dim": -1}
    g["fc"].params["weight"] = _f32(np.random.default_rng(0).normal(0, 0.3, (5, 108)))
    return g.validate()


def residual_mlp(seed: int = 1) -> Graph:
    """Vectors: Linear-CF, then CF(fc2(CF(fc1(h))) + h): an identity Linear and a Dense delay."""
    rng = np.random.default_rng(seed)
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [10]})
    g.add_node("fc0", "Linear", ["x"], {"weight": _f32(rng.normal(0, 0.6, (16, 10))),
                                        "bias": _f32(rng.normal(0.1, 0.1, 16))})
    _cf(g, "h", "fc0", k=2)
    g.add_node("fc1", "Linear", ["h"], {"weight": _f32(rng.normal(0, 0.4, (16, 16)))})
    _cf(g, "h1", "fc1")
    g.add_node("fc2", "Linear", ["h1"], {"weight": _f32(rng.normal(0, 0.4, (16, 16))),
                                         "bias": _f32(rng.normal(0, 0.1, 16))})
    g.add_node("add", "Add", ["fc2", "h"])
    _cf(g, "h2", "add")
    g.add_node("fc3", "Linear", ["h2"], {"weight": _f32(rng.normal(0, 0.5, (4, 16)))})
    g.add_node("y", "Output", ["fc3"])
    return g.validate()


def _argmax_agreement(g: Graph, q: Graph, x: np.ndarray, emu_out=None) -> float:
    ref = np.asarray(Engine(g).run(x)["output"]).sum(0).argmax(-1)
    if emu_out is None:
        emu_out = Emulator(q).run(integer_inputs(q, x))["output"]
    return float((np.asarray(emu_out).sum(0).argmax(-1) == ref).mean())


def _inserted(q: Graph) -> dict:
    return {n.name: n.meta["balance"]["kind"] for n in q.nodes.values()
            if isinstance(n.meta.get("balance"), dict)}


# --- hand-built residual networks -----------------------------------------------------

def test_residual_cnn_is_balanced_and_reported_and_the_float_graph_untouched():
    g = residual_cnn()
    before = g.copy()
    q = quantize(g, "loihi2", calibration=np.random.default_rng(0).normal(0, 1, (6, 8, 2, 6, 6)))
    assert g.equals(before)  # the caller's float graph: no node, weight or meta changed
    assert _inserted(q) == {"a.add.identity": "identity synapse", "a.add.identity.delay": "delay",
                            "a.n2.delay1": "delay", "a.n2.delay2": "delay"}
    # identity shortcut: n0 -> its own delay -> identity synapse -> a.add; conv shortcut: a
    # chain of 2 delays after a.n2
    assert q["a.add.identity"].inputs == ["a.add.identity.delay"]
    assert q["a.add.identity.delay"].inputs == ["n0"]
    assert q["a.add"].inputs == ["a.c2", "a.add.identity"]
    assert q["b.sc"].inputs == ["a.n2.delay2"] and q["a.n2.delay2"].inputs == ["a.n2.delay1"]
    depth = pipeline_depths(q)
    assert depth["a.c2"] == depth["a.add.identity"] and depth["b.c3"] == depth["b.sc"]
    # the identity path is exact: delay gain a times synapse mantissa b is the neuron's
    # integer scale S (above 255: the delay carries the rest)
    ident, own, neuron = q["a.add.identity"], q["a.add.identity.delay"], q["a.n2"]
    a, b = int(own.params["weight_mant"].max()), int(ident.params["weight_mant"].max())
    for node, gain in ((own, a), (ident, b)):  # each output channel reads its own channel
        w = node.params["weight_mant"]
        per = w.shape[1]  # input channels per group (grouped identities: 1)
        eye = np.zeros((8, per, 1, 1), np.int64)
        eye[np.arange(8), np.arange(8) % per] = 1
        assert node.attrs["groups"] * per == 8
        assert np.array_equal(w, eye * gain)
    assert ident.meta["quant"]["exact"] is True and ident.meta["quant"]["for"] == "a.add"
    assert own.meta["quant"]["gain"] == a and b <= 255
    assert a * b == neuron.meta["quant"]["scale"] == neuron.attrs["fixed_point"]["vth"] > 255
    # a shared delay: an identity of its input's scale and payload bits (K=2 signed: 3 bits)
    d = q["a.n2.delay1"]
    assert d.op == "SumPool2d" and d.meta["quant"]["kind"] == "delay"
    assert d.attrs["fixed_point"]["num_message_bits"] == 3
    assert d.meta["quant"]["for"] == ["b.add"] and d.meta["quant"]["scale"] == 1.0
    rep = json.loads(q.meta["fixed_point"]["balance"])
    assert (rep["identity_synapses"], rep["delays"], rep["extra_latency"]) == (1, 3, 0)
    assert rep["latency"] == q.meta["fixed_point"]["latency"] == rep["longest_path"]
    assert rep["extra_synops_per_step"] == 4 * 8 * 6 * 6
    assert {x["node"] for x in rep["inserted"]} == set(_inserted(q))
    # quantizing the quantized graph again inserts nothing more
    assert _inserted(quantize(q, "loihi2")) == _inserted(q)


@pytest.mark.parametrize("make,shape", [(residual_cnn, (2, 6, 6)), (residual_mlp, (10,))])
def test_residual_networks_are_bit_exact_on_lava(make, shape, lava_python):
    rng = np.random.default_rng(3)
    g = make()
    x = _f32(rng.normal(0.2, 1, (6, 24, *shape)))
    q = quantize(g, "loihi2", calibration=x)
    xi = integer_inputs(q, x)
    emu = assert_emulator_equals_lava(q, xi)
    neurons = [n for n in q.nodes.values() if n.op == "CFNeuron"]
    assert all(emu[n.name].any() for n in neurons), "every layer spikes"
    agree = _argmax_agreement(g, q, x, emu["output"])
    print(f"{make.__name__}: argmax agreement with float {agree:.1%} on {x.shape[1]} samples")
    assert agree >= 0.75


def test_binary_target_keeps_the_identity_path_binary(lava_python):
    """loihi carries 0/1 spikes only: the identity's own delay keeps gain 1, S stays <= 255."""
    rng = np.random.default_rng(4)
    x = (rng.random((5, 6, 2, 6, 6)) > 0.6).astype(np.float32)
    q = quantize(binary_residual_cnn(), "loihi", calibration=x)
    own, ident = q["a.add.identity.delay"], q["a.add.identity"]
    assert own.meta["quant"]["gain"] == 1 and int(ident.params["weight_mant"].max()) <= 255
    assert all(q[n].attrs["fixed_point"]["num_message_bits"] == 0 for n in _inserted(q))
    assert_emulator_equals_lava(q, integer_inputs(q, x))


def test_unbalanceable_paths_are_refused_up_front_naming_the_node():
    rng = np.random.default_rng(0)
    # a loop whose latency differs from the forward path: cfA -> fcB is the back edge, so
    # fcB arrives one step late at 'add', and a loop's delay cannot be changed
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [4]})
    g.add_node("fc1", "Linear", ["x"], {"weight": _f32(rng.normal(0, 1, (4, 4)))})
    _cf(g, "cf1", "fc1")
    g.add_node("fc2", "Linear", ["cf1"], {"weight": _f32(rng.normal(0, 1, (4, 4)))})
    g.add_node("add", "Add", ["fc2"])
    _cf(g, "cf2", "add")
    g.add_node("fcA", "Linear", ["cf2"], {"weight": _f32(rng.normal(0, 1, (4, 4)))})
    _cf(g, "cfA", "fcA")
    g.add_node("fcB", "Linear", ["cfA"], {"weight": _f32(rng.normal(0, 1, (4, 4)))})
    g.add_edge("fcB", "add")
    g.add_node("y", "Output", ["cf2"])
    with pytest.raises(UnsupportedError, match="node '(add|fcB)'.*different numbers of Lava "
                                               "synaptic steps.*recurrent loop"):
        quantize(g.validate(), "loihi2")
    # the shallower path shares its first Conv with another neuron: nothing to delay
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [2, 4, 4]})
    _conv(g, rng, "c0", "x", 2, 4)
    _cf(g, "n0", "c0")
    _conv(g, rng, "c1", "n0", 4, 4)
    _cf(g, "n1", "c1")
    _conv(g, rng, "c2", "n1", 4, 4)
    _conv(g, rng, "cs", "n0", 4, 4, k=1, bias=False)
    g.add_node("add", "Add", ["c2", "cs"])
    _cf(g, "n2", "add")
    _cf(g, "n3", "cs")  # cs also feeds n3
    g.add_node("cat", "Add", ["n2", "n3"])
    g.add_node("y", "Output", ["cat"])
    with pytest.raises(UnsupportedError, match="node 'add' \\(Add\\).*'cs' arrives 1 Lava "
                                               "step.*cannot be delayed.*also read by "
                                               "\\['n3'\\]"):
        quantize(g.validate(), "loihi2")


# --- resnet-small on digits -------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet_small(tmp_path_factory):
    from cf2neuro.train import TrainConfig, train

    out = tmp_path_factory.mktemp("resnet-small")
    metrics = train(TrainConfig(model="resnet-small", epochs=3, lr=1e-3), out, progress=False)
    return out, metrics


def test_resnet_small_runs_on_lava_bit_exact(resnet_small, lava_python):
    from cf2neuro.api import checkpoint_graph
    from cf2neuro.verify import calibration_inputs, test_inputs

    ckpt, metrics = resnet_small
    g = checkpoint_graph(ckpt)
    q = quantize(g, "loihi2", calibration=np.asarray(calibration_inputs(ckpt)))
    assert _inserted(q) == {"layers.2.add.identity": "identity synapse",
                            "layers.2.add.identity.delay": "delay",
                            "layers.2.cf2.delay1": "delay"}
    rep = json.loads(q.meta["fixed_point"]["balance"])
    print("resnet-small balance:", {k: v for k, v in rep.items() if k != "inserted"})
    assert rep["extra_latency"] == 0
    x, _ = test_inputs(ckpt, limit=10)
    t0 = time.perf_counter()
    assert_emulator_equals_lava(q, integer_inputs(q, np.asarray(x)))
    print(f"resnet-small: emulator == Lava on 10 samples ({time.perf_counter() - t0:.1f} s)")
    xs, ys = test_inputs(ckpt)
    xs, ys = np.asarray(xs), np.asarray(ys)
    out = Emulator(q).run(integer_inputs(q, xs))["output"]
    agree = _argmax_agreement(g, q, xs, out)
    acc = (np.asarray(out).sum(0).argmax(-1) == ys).mean()
    print(f"resnet-small (3 epochs, float test accuracy {metrics['test_accuracy']:.3f}): "
          f"quantized accuracy {acc:.3f}, argmax agreement with float {agree:.3f} on "
          f"{len(ys)} test samples")
    assert agree >= 0.75


# --- resnet19 ----------------------------------------------------------------------------

def test_resnet19_quantizes_and_runs_on_the_emulator():
    """The full resnet19 on CIFAR-shaped input, untrained. One Loihi 2 chip holds 1,048,576
    neurons and resnet19 has 1,442,048 CF neurons, so it is quantized with the chip's core
    count lifted (its 3x3x512 convolutions, fan-in 4608 over loihi2's 4096, are split into
    synapse groups by the quantizer). Lava is not run here: its Conv costs one convolve2d
    call per (out, in) channel pair a step, 262,144 for one 512 -> 512 layer (a trained
    resnet19 on digits: about 6 s a Lava step)."""
    import dataclasses

    import torch

    from cf2neuro.ir.trace import trace_model
    from cf2neuro.nn.models import build_model
    from cf2neuro.targets import load_target

    torch.manual_seed(0)
    g = trace_model(build_model("resnet19", {"timesteps": 2}).eval())
    x = _f32(np.random.default_rng(0).random((2, 2, 3, 32, 32)))
    with pytest.raises(UnsupportedError, match="1442048 neurons; target loihi2 holds"):
        quantize(g, "loihi2", calibration=x)
    tgt = load_target("loihi2")
    chips = dataclasses.replace(tgt, resources={k: v for k, v in tgt.resources.items()
                                                if k != "cores"})
    q = quantize(g, chips, calibration=x)
    rep = json.loads(q.meta["fixed_point"]["balance"])
    print("resnet19 balance:", {k: v for k, v in rep.items() if k != "inserted"})
    # 8 blocks: 6 identity shortcuts (an identity synapse each), 2 conv shortcuts; 8 delays
    assert rep["identity_synapses"] == 6 and rep["delays"] == 8 and rep["extra_latency"] == 0
    assert all(is_delay(q[n["node"]]) for n in rep["inserted"] if n["kind"] == "delay")
    t0 = time.perf_counter()
    res = Emulator(q).run(integer_inputs(q, x))
    print(f"resnet19: emulator on 2 samples in {time.perf_counter() - t0:.1f} s")
    assert np.asarray(res["output"]).shape == (2, 2, 10)
