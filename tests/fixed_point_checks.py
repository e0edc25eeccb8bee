"""Shared assertion for the Lava tests: the emulator and Lava compute the same integers."""

import numpy as np

from cf2neuro.runners.emulator import Emulator
from cf2neuro.backends.loihi2.runner import run_lava

NEURON_OPS = ("LIF", "IF", "CubaLIF", "CFNeuron")


def assert_emulator_equals_lava(q, xi) -> dict:
    """Run both; assert output, spikes and final membranes of every neuron are equal."""
    names = [n.name for n in q.nodes.values() if n.op in NEURON_OPS]
    probes = names + [f"v:{n}" for n in names]
    emu = Emulator(q).run(xi, probes=probes)
    lava = run_lava(q, xi, probes=probes)
    assert int(lava["latency"]) == int(emu["latency"])
    np.testing.assert_array_equal(lava["output"], emu["output"], err_msg="output")
    for n in names:
        np.testing.assert_array_equal(lava[n], emu[n], err_msg=f"spikes of {n}")
        np.testing.assert_array_equal(lava[f"v:{n}"], emu[f"v:{n}"][-1],
                                      err_msg=f"final membrane of {n}")
    return emu
