"""The ProcessModel of `Recorder` (see process.py)."""

from __future__ import annotations

import os

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from cf2neuro_lava.procs.recorder.process import Recorder


@implements(proc=Recorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyRecorderModel(PyLoihiProcessModel):
    """Keep the chosen steps in memory; save them after the last step."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.path = proc_params["path"]
        self.steps = proc_params["steps"]
        self.offset = proc_params["offset"]
        self.interval = proc_params["interval"]
        count = len(range(self.offset, self.steps, self.interval))
        self.buffer = np.zeros((count, *proc_params["shape"]), dtype=np.int64)

    def run_spk(self) -> None:
        data = self.a_in.recv()
        step = self.time_step - 1  # Lava counts steps from 1
        k, phase = divmod(step - self.offset, self.interval)
        if step >= self.offset and phase == 0 and k < len(self.buffer):
            self.buffer[k] = data
        if step == self.steps - 1:
            tmp = f"{self.path}.tmp.npy"
            np.save(tmp, self.buffer)
            os.replace(tmp, self.path)
