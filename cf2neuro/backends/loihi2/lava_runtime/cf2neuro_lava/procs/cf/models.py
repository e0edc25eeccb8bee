"""The fixed-point ProcessModel of `CFNeuron` (see process.py for the equations)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from cf2neuro_lava.procs.cf.process import V_MAX, CFNeuron


def trunc0(x: np.ndarray) -> np.ndarray:
    """sign(x) * (|x| >> 12): the decay product back to state scale, toward zero."""
    return np.sign(x) * (np.abs(x) >> 12)


def check_parameters(vth, dv, bias_exp, max_spikes) -> None:
    """Raise ValueError, naming the value, for parameters outside the CF neuron's ranges."""
    if np.any(vth < 1) or np.any(vth > V_MAX):
        bad = vth[(vth < 1) | (vth > V_MAX)].ravel()[0]
        raise ValueError(f"CFNeuron vth must be in [1, 2**23 - 1] (24-bit state), got {bad}")
    if np.any(dv < 0) or np.any(dv > 4096):
        bad = dv[(dv < 0) | (dv > 4096)].ravel()[0]
        raise ValueError(f"CFNeuron dv must be in [0, 4096], got {bad}")
    if np.any(np.abs(bias_exp) > 23):
        raise ValueError(f"CFNeuron bias_exp must be in [-23, 23], got "
                         f"{bias_exp[np.abs(bias_exp) > 23].ravel()[0]}")
    if max_spikes < 1:
        raise ValueError(f"CFNeuron max_spikes must be >= 1, got {max_spikes}")


@implements(proc=CFNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCFNeuronModelFixed(PyLoihiProcessModel):
    """Integer CF neuron: 24-bit state, 12-bit decay, graded signed payload."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    dv: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=6)
    v_min: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.max_spikes = int(proc_params["max_spikes"])
        self.min_spikes = -self.max_spikes if proc_params["signed"] else 0
        self.reset_zero = bool(proc_params["reset_zero"])
        self.interval = int(proc_params["reset_interval"])
        self.offset = int(proc_params["reset_offset"])
        self._ready = False

    def _prepare(self) -> None:
        """Check the parameters and precompute the constant terms (first step only)."""
        check_parameters(self.vth, self.dv, self.bias_exp, self.max_spikes)
        mant, exp = self.bias_mant.astype(np.int64), self.bias_exp.astype(np.int64)
        self.bias = np.where(exp >= 0, np.left_shift(mant, np.maximum(exp, 0)),
                             np.right_shift(mant, np.maximum(-exp, 0)))
        self.keep = 4096 - self.dv.astype(np.int64)
        self.vth64 = self.vth.astype(np.int64)
        self._ready = True

    def run_spk(self) -> None:
        if not self._ready:
            self._prepare()
        a = self.a_in.recv().astype(np.int64)
        step = self.time_step - 1  # Lava counts steps from 1
        phase = (step - self.offset) % self.interval if self.interval else -1
        v = self.v.astype(np.int64)
        if phase == 0:
            v[...] = 0
        v = np.clip(trunc0(v * self.keep) + a + self.bias, -V_MAX, V_MAX)
        n = np.clip(np.sign(v) * (np.abs(v) // self.vth64), self.min_spikes, self.max_spikes)
        v = np.where(n != 0, 0, v) if self.reset_zero else v - n * self.vth64
        v = np.maximum(v, self.v_min)
        self.v[...] = v
        self.s_out.send(n.astype(np.int32))
        self.v_out.send(self.v)
