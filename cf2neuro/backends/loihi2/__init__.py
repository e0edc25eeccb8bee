"""Loihi 2 as lava-nc 0.10.0's fixed-point process models compute it (DESIGN §4).

    numerics.py   the integer semantics (the emulator runs them, bit-exact with Lava)
    mapping.py    float weights/neurons -> 8-bit mantissas, biases, vth, decays
    quantize.py   the per-layer quantization algorithm and its refusals
    lower.py      pipeline depths (Lava's one-step synaptic delay) and the NIR file Lava reads
    limits.py     Lava's int8 Conv parameters, refused up front
    runner.py     the ``lava`` runner: the isolated runtime, under a watchdog
    runtime.py    finds a Python 3.10 and builds the runtime's virtual environment
    nengo_loihi_runner.py   the ``nengo-loihi`` runner: target loihi on nengo-loihi's Loihi 1
                  emulator, in its own runtime (nengo_loihi_runtime.py builds it;
                  nengo_loihi_driver.py is the script that runs inside it)
    energy.py     the ``loihi`` energy model (Davies et al. 2018's per-op energies)
    lava_runtime/ the standalone ``cf2neuro_lava`` package that runs inside it

Targets ``loihi2`` (graded signed spikes) and ``loihi`` (binary spikes, the
same arithmetic) use this back end.
"""

from .. import Backend

BACKEND = Backend(
    name="loihi2",
    description="Loihi-style fixed point as Lava's fixed_pt process models compute it",
    numerics="cf2neuro.backends.loihi2.numerics:FixedPointNumerics",
    checker="cf2neuro.backends.loihi2.limits:check",
    quantizer="cf2neuro.backends.loihi2.quantize:quantize_graph",
    runners={"lava": "cf2neuro.backends.loihi2.runner:LavaRunner",
             "nengo-loihi": "cf2neuro.backends.loihi2.nengo_loihi_runner:NengoLoihiRunner"},
    energy_models={"loihi": "cf2neuro.backends.loihi2.energy:price"},
    simulators={"sanafe": "cf2neuro.backends.loihi2.sanafe_compare:sanafe_report"},
)
