"""SynSense Xylo Audio 2 (SYNS61201) as XyloSim computes it (DESIGN §4).

    numerics.py   XyloSim's integer semantics (the emulator runs them, bit-exact with XyloSim)
    limits.py     the graphs Xylo holds: one hidden CF layer (+ recurrent weights) and a readout
    quantize.py   float CF graph -> int8 weights + shifts, thresholds, dashes
    lower.py      quantized graph -> the Xylo specification Rockpool's XyloSim takes
    runtime.py    the isolated runtime (rockpool 3.1.0 + xylosim 0.1.3, no torch, no samna)
    runner.py     the ``xylosim`` runner: the runtime in a subprocess, under a watchdog
    energy.py     energy model ``xylo``: published dynamic power x the inference's duration
    xylo_runtime/ the standalone ``cf2neuro_xylo`` package that runs inside it

Target ``xylo`` uses this back end.
"""

from .. import Backend

BACKEND = Backend(
    name="xylo",
    description="SynSense Xylo Audio 2 integer arithmetic as XyloSim (rockpool 3.1.0) computes it",
    numerics="cf2neuro.backends.xylo.numerics:XyloNumerics",
    checker="cf2neuro.backends.xylo.limits:check",
    quantizer="cf2neuro.backends.xylo.quantize:quantize_graph",
    runners={"xylosim": "cf2neuro.backends.xylo.runner:XyloSimRunner"},
    energy_models={"xylo": "cf2neuro.backends.xylo.energy:price"},
)
