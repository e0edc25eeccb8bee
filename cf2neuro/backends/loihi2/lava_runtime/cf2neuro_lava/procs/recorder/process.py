"""`Recorder`: a sink Process that writes what it received to a .npy file (models.py).

Why not ``lava.proc.io.sink.RingBuffer``: reading its buffer back with
``Var.get()`` sends the Var one element at a time through a channel
(15-30 us each in lava-nc 0.10.0): 7 of the 8.5 s of a 100-sample digits
run. The Recorder keeps only the steps it is asked for and saves them
itself after the run's last step, before Lava reports the run done.

It keeps the steps ``s`` (0-based) with ``s >= offset`` and
``(s - offset) % interval == 0``, in order, as an int64 array
``[count, *shape]`` with ``count = len(range(offset, steps, interval))``,
written atomically to ``path`` at step ``steps - 1``.
"""

from __future__ import annotations

import typing as ty

from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess


class Recorder(AbstractProcess):
    """Record `shape`-shaped input at chosen steps of a `steps`-step run into `path`."""

    def __init__(self, *, shape: tuple[int, ...], path: str, steps: int, offset: int = 0,
                 interval: int = 1, name: ty.Optional[str] = None) -> None:
        shape = tuple(int(s) for s in shape)
        if steps < 1 or offset < 0 or interval < 1:
            raise ValueError(f"Recorder needs steps >= 1, offset >= 0, interval >= 1; got "
                             f"steps={steps}, offset={offset}, interval={interval}")
        super().__init__(shape=shape, path=str(path), steps=int(steps), offset=int(offset),
                         interval=int(interval), name=name)
        self.a_in = InPort(shape=shape)
