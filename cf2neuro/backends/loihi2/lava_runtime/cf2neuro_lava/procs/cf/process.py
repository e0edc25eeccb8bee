"""The circulate-firing (CF) neuron as a Lava Process (the spec; models.py implements it).

Integer semantics (docs/fixed_point.md of cf2neuro, per neuron, per step)::

    v = clip(trunc0(v * (4096 - dv)) + a + (bias_mant << bias_exp), -(2**23 - 1), 2**23 - 1)
    n = clip(trunc0div(v, vth), -K * signed, K)
    v = v - n * vth                 # reset_zero: v = 0 where n != 0 instead
    v = max(v, v_min)               # a floor (Sinabs's min_v_mem); default -(2**23 - 1)
    s_out = n                       # a graded payload: downstream needs num_message_bits > 0

``trunc0(x) = sign(x) * (|x| >> 12)`` and ``trunc0div`` round toward zero;
a negative ``bias_exp`` shifts right (arithmetic), as Lava's LIF does.

Streaming: with ``reset_interval = T > 0`` the state is zeroed at the start
of every step ``s`` (0-based) with ``(s - reset_offset) % T == 0``, so a
layer at pipeline depth d (``reset_offset = d``) starts every sample of T
steps from zero state. Ports: ``a_in`` (summed input), ``s_out`` (the
graded payload n) and ``v_out`` (the membrane after the step, for probes;
sending on an unconnected port costs nothing).

This package holds only this Process and its models: Lava imports every
module beside a Process's module when it looks for ProcessModels.
"""

from __future__ import annotations

import typing as ty

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

V_MAX = 2 ** 23 - 1
"""The membrane is 24-bit signed: it saturates at +-(2**23 - 1)."""


def _per_neuron(value, shape: tuple, what: str) -> np.ndarray:
    a = np.asarray(value)
    try:
        return np.array(np.broadcast_to(a, shape), dtype=np.int64)
    except ValueError:
        raise ValueError(f"CFNeuron {what} of shape {list(a.shape)} does not broadcast to "
                         f"the layer shape {list(shape)}") from None


class CFNeuron(AbstractProcess):
    """A layer of integer circulate-firing neurons; see the module docstring.

    Parameters: ``shape``; ``vth`` (int > 0), ``dv`` (0..4096), ``bias_mant``,
    ``bias_exp`` (each scalar or per neuron); ``max_spikes`` K >= 1;
    ``signed``; ``reset_zero`` (v = 0 after a spike instead of v - n·vth);
    ``v_min`` (the state's floor after the reset, scalar or per neuron);
    ``reset_interval`` (0 = never reset), ``reset_offset``.
    """

    def __init__(self, *, shape: tuple[int, ...], vth, dv=0, bias_mant=0, bias_exp=0,
                 max_spikes: int = 1, signed: bool = True, reset_zero: bool = False,
                 reset_interval: int = 0, reset_offset: int = 0, v_min=-V_MAX,
                 name: ty.Optional[str] = None) -> None:
        shape = tuple(int(s) for s in shape)
        super().__init__(shape=shape, max_spikes=int(max_spikes), signed=bool(signed),
                         reset_zero=bool(reset_zero),
                         reset_interval=int(reset_interval), reset_offset=int(reset_offset),
                         name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.vth = Var(shape=shape, init=_per_neuron(vth, shape, "vth"))
        self.dv = Var(shape=shape, init=_per_neuron(dv, shape, "dv"))
        self.bias_mant = Var(shape=shape, init=_per_neuron(bias_mant, shape, "bias_mant"))
        self.bias_exp = Var(shape=shape, init=_per_neuron(bias_exp, shape, "bias_exp"))
        self.v_min = Var(shape=shape, init=_per_neuron(v_min, shape, "v_min"))
