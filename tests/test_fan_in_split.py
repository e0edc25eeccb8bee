"""Fan-in beyond one core: a layer over the target's limit is split into synapse groups.

The parts keep the full input with only their slice of input channels
weighted; their partial sums meet in the neuron (dendritic accumulation), on
the emulator as an Add and on REAL Lava as several Conv/Dense processes into
one InPort. Checked with a target whose fan-in limit is small (so Lava stays
fast), and on VGG-11's 3x3x512 convolutions (fan-in 4608 > 4096).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from fixed_point_checks import assert_emulator_equals_lava

from cf2neuro.backends.loihi2.runner import integer_inputs
from cf2neuro.backends.loihi2.split import fan_in, split_fan_in
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.quant import quantize
from cf2neuro.targets import load_target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture
def small_core(tmp_path, monkeypatch):
    """loihi2 with a fan-in limit of 64 synapses per neuron."""
    text = open(load_target("loihi2").path).read()
    a = text.index("[resources.fan_in]")
    b = text.index("\n[", a + 1)
    text = text[:a] + '[resources.fan_in]\nvalue = 64\nsource = "a test core"\n' + text[b:]
    (tmp_path / "small.toml").write_text(text.replace('name = "loihi2"', 'name = "small"'))
    monkeypatch.setenv("CF2NEURO_TARGETS", str(tmp_path))
    return "small"


def _conv_net(rng) -> Graph:
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [16, 6, 6]})
    g.add_node("c1", "Conv2d", ["x"], params={
        "weight": rng.normal(0, .3, (8, 16, 3, 3)).astype(np.float32),
        "bias": rng.normal(0, .1, 8).astype(np.float32)}, attrs={"padding": [1, 1]})
    g.add_node("n1", "CFNeuron", ["c1"], attrs={"max_spikes": 2, "signed": True})
    g.add_node("fl", "Flatten", ["n1"])
    g.add_node("fc", "Linear", ["fl"], params={"weight": rng.normal(0, .1, (5, 288))
                                               .astype(np.float32)})
    g.add_node("n2", "CFNeuron", ["fc"])
    g.add_node("fc2", "Linear", ["n2"], params={"weight": rng.normal(0, .5, (3, 5))
                                                .astype(np.float32)})
    g.add_node("y", "Output", ["fc2"])
    return g.validate()


def test_split_parts_sum_to_the_layer_in_float():
    g = _conv_net(np.random.default_rng(0))
    s = g.copy()
    assert split_fan_in(s, 64) == 2  # c1 (144) and fc (288); the readout stays whole
    parts = [n for n in s if n.meta.get("split")]
    assert all(fan_in(n) <= 64 for n in parts if n.op != "Add")
    x = np.random.default_rng(1).random((4, 3, 16, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(Engine(s.validate()).run(x)["output"].numpy(),
                               Engine(g).run(x)["output"].numpy(), atol=1e-5)


def test_split_layers_on_lava_equal_the_emulator(lava_python, small_core):  # noqa: F811
    rng = np.random.default_rng(2)
    g = _conv_net(rng)
    x = (rng.random((3, 2, 16, 6, 6)) < 0.4).astype(np.float32)
    q = quantize(g, small_core, calibration=x)
    assert any(n.meta.get("split") for n in q)
    emu = assert_emulator_equals_lava(q, integer_inputs(q, x))
    assert np.abs(emu["n1"]).max() > 0


def test_vgg11_deploys_on_loihi2_by_splitting_its_wide_convolutions():
    from deploy_matrix import inputs, network

    g, opts = network("vgg11")
    x = inputs(opts, 2)
    q = quantize(g, "loihi2", calibration=x)
    split = sorted({n.meta["split"]["of"] for n in q if n.meta.get("split")})
    assert len(split) == 3  # the 3x3x512 convolutions
    assert all(fan_in(n) <= 4096 for n in q if n.op in ("Conv2d", "Linear"))
    from cf2neuro.runners.emulator import emulate

    assert emulate(q, x)["output"].shape == (4, 2, 10)


def test_a_readout_over_the_limit_is_refused_with_the_way_out(small_core):
    from cf2neuro.errors import UnsupportedError

    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [100]})
    g.add_node("fc", "Linear", ["x"], params={"weight": np.ones((3, 100), np.float32)})
    g.add_node("y", "Output", ["fc"])
    with pytest.raises(UnsupportedError, match="readout.*Add a hidden layer"):
        quantize(g.validate(), small_core)
