"""Sum pooling over 128 or more channels on REAL Lava equals the emulator.

Lava's Conv keeps `groups` as int8, so the old lowering (one group per
channel) computed garbage from 128 channels on, without an error. The Lava
runtime now groups channels by the largest divisor <= 127 with a diagonal of
ones inside each group: the same sums. Checked here at 256 and 384 channels
(and 96, one group per channel as before) against the emulator, spike for
spike, and against a hand-computed pooled sum.
"""

from __future__ import annotations

import numpy as np
import pytest
from fixed_point_checks import assert_emulator_equals_lava

from cf2neuro.backends.loihi2.lava_runtime.cf2neuro_lava.layers import pooling_weights
from cf2neuro.backends.loihi2.runner import integer_inputs
from cf2neuro.ir import Graph
from cf2neuro.quant import quantize


def _pool_graph(c: int, rng) -> Graph:
    """Binary input spikes [c, 4, 4] -> 2x2 sum pooling -> Dense -> CF: Lava's pooled sums reach v."""
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [c, 4, 4]})
    g.add_node("p", "AvgPool2d", ["x"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("fl", "Flatten", ["p"])
    g.add_node("fc", "Linear", ["fl"],
               params={"weight": rng.normal(0, 0.2, (6, c * 4)).astype(np.float32)})
    g.add_node("cf", "CFNeuron", ["fc"],
               attrs={"threshold": 1.0, "beta": 1.0, "max_spikes": 4, "signed": True})
    g.add_node("y", "Output", ["cf"])
    return g.validate()


@pytest.mark.parametrize("c", [96, 256, 384])
def test_wide_sum_pooling_on_lava_equals_the_emulator(lava_python, c):  # noqa: F811
    rng = np.random.default_rng(c)
    x = (rng.random((3, 2, c, 4, 4)) < 0.3).astype(np.float32)
    q = quantize(_pool_graph(c, rng), "loihi2", calibration=x)
    assert q["p"].op == "SumPool2d"
    emu = assert_emulator_equals_lava(q, integer_inputs(q, x))
    assert np.abs(emu["cf"]).max() > 0  # spikes crossed, so the sums mattered


@pytest.mark.parametrize("c", [1, 7, 96, 127, 128, 256, 384, 509])
def test_pooling_weights_sum_each_channel_alone(c):
    groups, w = pooling_weights(c, 2, 2)
    assert groups <= 127 and c % groups == 0
    per = c // groups
    # output channel o of group g reads input channel g*per + j: exactly j == o % per
    for o in range(c):
        want = np.zeros((2, 2, per), np.int64)
        want[:, :, o % per] = 1
        np.testing.assert_array_equal(w[o], want)
    # the same sums as pooling channel by channel (the grouped-conv contract, in numpy)
    x = np.random.default_rng(c).integers(0, 3, (c, 4, 4))
    ref = x.reshape(c, 2, 2, 2, 2).sum(axis=(2, 4))
    out = np.zeros_like(ref)
    for o in range(c):
        g = o // per
        ins = x[g * per:(g + 1) * per]
        for j in range(per):
            out[o] += (ins[j].reshape(2, 2, 2, 2) * w[o, 0, 0, j]).sum(axis=(1, 3))
    np.testing.assert_array_equal(out, ref)


def test_conv_parameters_lava_cannot_hold_are_refused_up_front():
    """A grouped Conv with 128+ groups: refused before quantizing, naming the layer."""
    from cf2neuro.errors import UnsupportedError

    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [256, 4, 4]})
    g.add_node("dw", "Conv2d", ["x"], params={"weight": np.ones((256, 1, 3, 3), np.float32)},
               attrs={"groups": 256, "padding": [1, 1]})
    g.add_node("cf", "CFNeuron", ["dw"])
    g.add_node("y", "Output", ["cf"])
    with pytest.raises(UnsupportedError, match=r"'dw'.*groups \[256\] exceeds 127.*int8"):
        quantize(g.validate(), "loihi2")
