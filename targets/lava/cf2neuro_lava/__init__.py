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
"""

__version__ = "0.1.0"
