"""`--neuron reset=zero`: trains, traces, quantizes, and runs bit-exactly on emulator and Lava.

References: the PyTorch module itself (the float IR engine must reproduce it),
and Lava against the emulator, spike for spike and membrane for membrane.
"""

import json

import numpy as np
import pytest
import torch

from cf2neuro.checkpoint import checkpoint_graph, load_checkpoint
from cf2neuro.cli import main as cli
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nn.models import build_model
from cf2neuro.quant import quantize
from cf2neuro.runners.emulator import emulate
from cf2neuro.verify import calibration_inputs
from cf2neuro.verify import test_inputs as split_of_test


@pytest.fixture(scope="module")
def zero_ckpt(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("reset-zero") / "ck"
    assert cli(["train", "--epochs", "4", "--out", str(ckpt), "--neuron", "reset=zero",
                "--quiet"]) == 0
    return ckpt


def test_the_checkpoint_and_its_graph_say_reset_zero(zero_ckpt):
    cfg = json.loads((zero_ckpt / "config.json").read_text())
    assert cfg["train"]["neuron"]["reset"] == "zero"
    g = checkpoint_graph(zero_ckpt)
    assert {n.attrs["reset"] for n in g if n.op == "CFNeuron"} == {"zero"}


def test_the_float_engine_reproduces_the_trained_module(zero_ckpt):
    model, _, _ = load_checkpoint(zero_ckpt)
    x, _ = split_of_test(zero_ckpt, limit=64)
    with torch.no_grad():
        want = model(x)
    got = Engine(checkpoint_graph(zero_ckpt)).run(x)["output"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_emulator_equals_lava_on_the_trained_network(zero_ckpt, lava_python):
    from cf2neuro.backends.loihi2.runner import run_lava

    q = quantize(checkpoint_graph(zero_ckpt), "loihi2",
                 calibration=calibration_inputs(zero_ckpt))
    assert {n.attrs["fixed_point"]["reset"] for n in q if n.op == "CFNeuron"} == {"zero"}
    x, _ = split_of_test(zero_ckpt, limit=24)
    neurons = [n.name for n in q if n.op == "CFNeuron"]
    probes = neurons + [f"v:{n}" for n in neurons]
    emu = emulate(q, x, probes=probes)
    lava = run_lava(q, x.numpy(), probes=probes)
    assert np.abs(np.asarray(emu[neurons[0]])).sum() > 100  # it spikes
    for p in ["output", *neurons]:
        assert np.array_equal(lava[p], np.asarray(emu[p])), p
    for n in neurons:  # Lava reports the membrane after each sample's last step
        assert np.array_equal(lava[f"v:{n}"], np.asarray(emu[f"v:{n}"])[-1]), n


def test_emulator_equals_lava_on_a_random_conv_network(lava_python):
    from cf2neuro.backends.loihi2.runner import run_lava

    torch.manual_seed(3)
    m = build_model("vgg-small", {"timesteps": 4, "channels": [4, 8], "neuron":
                                  {"reset": "zero", "max_spikes": 2}})
    g = run_passes(trace_model(m))
    x = torch.rand(4, 6, 1, 8, 8) * 2
    q = quantize(g, "loihi2", calibration=x)
    neurons = [n.name for n in q if n.op == "CFNeuron"]
    emu = emulate(q, x, probes=neurons)
    lava = run_lava(q, x.numpy(), probes=neurons)
    for p in ["output", *neurons]:
        assert np.array_equal(lava[p], np.asarray(emu[p])), p


def test_an_unknown_reset_is_refused(tmp_path, capsys):
    assert cli(["train", "--epochs", "1", "--out", str(tmp_path / "x"), "--neuron",
                "reset=sideways", "--quiet"]) == 2
    assert "reset must be one of" in capsys.readouterr().err
