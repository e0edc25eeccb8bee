"""The fixed-point ProcessModel of `ResetDense`: Lava's bit-accurate Dense, buffer reset."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.dense.models import AbstractPyDenseModelBitAcc

from cf2neuro_lava.procs.rdense.process import ResetDense


@implements(proc=ResetDense, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyResetDenseModelBitAcc(AbstractPyDenseModelBitAcc):
    """Zero ``a_buff`` before it is sent at each sample start; see process.py."""

    def run_spk(self):
        interval = int(self.proc_params.get("reset_interval", 0))
        if interval > 0:
            step = self.time_step - 1  # Lava counts steps from 1
            if (step - int(self.proc_params.get("reset_offset", 0))) % interval == 0:
                self.a_buff = np.zeros_like(self.a_buff)
        super().run_spk()
