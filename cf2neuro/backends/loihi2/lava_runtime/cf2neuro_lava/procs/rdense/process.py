"""Lava's Dense with a periodic reset of its one-step buffer (for recurrent weights).

Lava's Dense sends at step s the buffer ``a_buff`` it computed from the spikes
of step s - 1. On a recurrent back edge (a neuron's spikes fed back into
itself or an earlier neuron through a Dense) that buffer is the IR's
one-step delay itself: the quantizer places the Dense at its source neuron's
pipeline depth. When samples stream through one run, the buffer sent at the
first step of sample b holds the last spikes of sample b - 1 (or, for
b = 0, of the pipeline filling). ``ResetDense`` zeroes it right before it is
sent at every step ``s`` (0-based) with ``(s - reset_offset) % T == 0``,
``reset_offset`` = the pipeline depth of the neuron it feeds, so that neuron
gets zeros from its recurrent weights at each sample's step 0, as the
emulator (and cf2neuro's IR) deliver them. Everything else is Lava's
``PyDenseModelBitAcc`` unchanged (same weights clipping, sign mode,
``weight_exp``, ``num_message_bits``).

This package holds only this Process and its model: Lava imports every
module beside a Process's module when it looks for ProcessModels.
"""

from __future__ import annotations

from lava.proc.dense.process import Dense


class ResetDense(Dense):
    """``Dense(weights=..., weight_exp=..., num_message_bits=...)`` plus
    ``reset_interval`` (T > 0; 0 = never reset) and ``reset_offset``."""

    def __init__(self, *, reset_interval: int = 0, reset_offset: int = 0, **kwargs) -> None:
        if int(reset_interval) < 0:
            raise ValueError(f"ResetDense reset_interval must be >= 0, got {reset_interval}")
        super().__init__(reset_interval=int(reset_interval), reset_offset=int(reset_offset),
                         **kwargs)
