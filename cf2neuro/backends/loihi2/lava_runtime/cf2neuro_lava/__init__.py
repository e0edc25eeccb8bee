"""cf2neuro's isolated Lava runtime: quantized NIR graphs run on lava-nc 0.10.0.

This package runs in its own Python 3.10 virtual environment (lava-nc 0.10.0
needs Python 3.10 exactly and numpy < 2); it never imports torch or
cf2neuro. cf2neuro's ``lava`` runner talks to it through files and a
subprocess: ``python -m cf2neuro_lava run --graph G.nir --inputs IN.npz
--out OUT.npz`` (see ``__main__``).

- `build`: NIR graph + ``cf2neuro.fixed_point`` metadata -> Lava processes.
- `run`: compile once, stream every sample through one ``run()`` with state
  resets, read outputs and probes back, ``stop()`` in a ``finally``; the
  guard against Lava's deadlocks and shared-memory leaks.
- `procs.cf`: the circulate-firing neuron's Process and fixed-point model
  (a package of its own: Lava imports every module beside a Process).
- `procs.rdense`: ``ResetDense``, Lava's bit-accurate Dense with its one-step
  buffer zeroed at each sample start: the recurrent (back-edge) Dense of
  graphs with cycles, so that samples streamed through one ``run()`` do not
  pass their last spikes into the next sample's first step.
- `procs.recorder`: the sink that keeps the aligned steps of an output/probe.

Recurrent graphs (a neuron -> Dense -> ... -> the same neuron loop, e.g. the
Braille CubaLIF graphs) run bit-exactly like cf2neuro's emulator: the back
edge is the Dense's own one-step delay (it adds no pipeline depth) and the
Dense is a ``ResetDense``; see `build`'s docstring.
"""

__version__ = "0.1.0"
