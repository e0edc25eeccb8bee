"""A CF neuron's membrane floor ``v_min`` (Sinabs's ``min_v_mem``, read --from sinabs).

After the reset the state is ``max(v, v_min)``. References: a hand-written
loop for the float engine; Lava against the emulator, spike for spike and
membrane for membrane, after quantization (the floor in state units is
exactly ``-vth`` for Sinabs's ``-θ``); the NIR round trip keeps it.
"""

import numpy as np
import pytest
import torch

from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.numerics import FloatNumerics
from cf2neuro.nir import from_nir, write_nir
from cf2neuro.quant import quantize
from fixed_point_checks import assert_emulator_equals_lava

T, B = 16, 5


def floored_mlp(theta=0.7, hidden=24):
    g = torch.Generator().manual_seed(0)
    graph = Graph({})
    graph.add_node("x", "Input", [], attrs={"shape": (12,)})
    graph.add_node("fc1", "Linear", ["x"], params={"weight": torch.randn(hidden, 12, generator=g)
                                               .numpy() * 0.8})
    graph.add_node("cf1", "CFNeuron", ["fc1"], params={"v_min": np.full(hidden, -theta)},
              attrs={"threshold": theta, "beta": 1.0, "max_spikes": 15, "signed": False,
                     "reset": "subtract"})
    graph.add_node("fc2", "Linear", ["cf1"], params={"weight": torch.randn(6, hidden, generator=g)
                                                 .numpy() * 0.5})
    graph.add_node("cf2", "CFNeuron", ["fc2"], params={"v_min": np.full(6, -theta)},
              attrs={"threshold": theta, "beta": 1.0, "max_spikes": 15, "signed": False,
                     "reset": "subtract"})
    graph.add_node("output", "Output", ["cf2"])
    graph.validate()
    return graph


def by_hand(graph, x):
    w1, w2 = (graph[n].params["weight"].astype(np.float64) for n in ("fc1", "fc2"))
    th = graph["cf1"].attrs["threshold"]
    v1, v2, out = np.zeros((B, w1.shape[0])), np.zeros((B, w2.shape[0])), []
    for t in range(T):
        v1 = v1 + x[t] @ w1.T
        n1 = np.clip(np.trunc(v1 / th), 0, 15)
        v1 = np.maximum(v1 - n1 * th, -th)
        v2 = v2 + n1 @ w2.T
        n2 = np.clip(np.trunc(v2 / th), 0, 15)
        v2 = np.maximum(v2 - n2 * th, -th)
        out.append(n2)
    return np.stack(out)


def inputs():
    return torch.randn(T, B, 12, generator=torch.Generator().manual_seed(1)).numpy() * 1.5


def test_the_float_engine_floors_the_membrane():
    g, x = floored_mlp(), inputs()
    res = Engine(g, FloatNumerics(torch.float64)).run(x, probes=["v:cf1"])
    np.testing.assert_array_equal(res["output"].numpy(), by_hand(g, x))
    assert res["v:cf1"].min() == pytest.approx(-0.7)  # the floor is reached
    unfloored = floored_mlp()
    for n in ("cf1", "cf2"):
        del unfloored[n].params["v_min"]
    assert not np.array_equal(Engine(unfloored).run(x)["output"].numpy(), by_hand(g, x))


def test_the_floor_survives_nir(tmp_path):
    g, x = floored_mlp(), inputs()
    write_nir(g, tmp_path / "f.nir")
    back = from_nir(tmp_path / "f.nir")
    np.testing.assert_array_equal(back["cf1"].params["v_min"], g["cf1"].params["v_min"])
    assert torch.equal(Engine(back).run(x)["output"], Engine(g).run(x)["output"])


def test_emulator_equals_lava_with_a_floor(lava_python):
    g, x = floored_mlp(), inputs()
    q = quantize(g, "loihi2", calibration=torch.as_tensor(x))
    vth = q["cf1"].attrs["fixed_point"]["vth"]
    np.testing.assert_array_equal(q["cf1"].params["v_min_int"], -vth)  # -θ is exactly -vth
    emu = assert_emulator_equals_lava(q, x)
    assert np.abs(emu["cf1"]).sum() > 50
