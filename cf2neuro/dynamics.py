"""The math every engine shares: pure functions of (state, input, parameters).

    n, v, u = cf_step(v, x, theta, CFParameters(beta, K, signed))   one CF step (DESIGN §1)
    CFParameters(..., reset="zero")                                 reset to zero (NIR's LIF)
    y = spiking_attention(q, k, v, heads, scale)                    Q·Kᵀ·V·s, no softmax
    p = attention_product(q, k, v, heads)                           Q·Kᵀ·V (integers stay so)

The training module (`cf2neuro.nn`), the float IR engine and the fixed-point
back ends import these, so the step lives once (as Norse keeps its neurons).
Nothing here imports the model zoo or the IR.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .errors import ConfigError

RESETS = ("subtract", "zero")


class CFParameters(NamedTuple):
    """The fixed hyper-parameters of a CF layer (θ and α_t are tensors)."""

    beta: float = 0.5          # decay in (0, 1]; 1 = IF
    max_spikes: int = 1        # K >= 1
    signed: bool = True        # allow negative spikes
    detach_reset: bool = True  # no gradient through the reset (as snnTorch)
    surrogate: str = "sigmoid"
    reset: str = "subtract"    # after firing: v = u - n·θ (the method's), or "zero": v = 0

    def check(self) -> "CFParameters":
        if not 0.0 < self.beta <= 1.0:
            raise ConfigError(f"CF decay beta must be in (0, 1], got {self.beta}")
        if self.reset not in RESETS:
            raise ConfigError(f"CF reset must be one of {RESETS}, got {self.reset!r}")
        if int(self.max_spikes) != self.max_spikes or self.max_spikes < 1:
            raise ConfigError(f"CF max_spikes K must be an integer >= 1, got {self.max_spikes}")
        from .nn.surrogate import bump

        bump(self.surrogate)  # raises on an unknown shape
        return self

    @property
    def lowest(self) -> int:
        return -int(self.max_spikes) if self.signed else 0


def cf_step(v: torch.Tensor, x: torch.Tensor, theta, p: CFParameters, v_min=None):
    """One step: returns (n, v_next, u). No surrogate; for simulators.

    `v_min` (optional) floors the state after the reset: Sinabs's ``min_v_mem``,
    which its NIR importer gives every IF (-θ); imported graphs only. Computed
    as Sinabs does, ``relu(v - v_min) + v_min``: in floats that is not always
    ``max(v, v_min)`` to the last bit, and the last bit moves later spikes.
    """
    u = p.beta * v + x
    n = torch.clamp(torch.div(u, theta, rounding_mode="trunc"), p.lowest, p.max_spikes)
    v = reset(u, n, theta, p.reset == "zero")
    return n, (v if v_min is None else torch.relu(v - v_min) + v_min), u


def reset(u: torch.Tensor, n: torch.Tensor, theta, zero: bool) -> torch.Tensor:
    """The state after firing n: u - n·θ (reset by subtraction), or 0 where n != 0."""
    return u * (n == 0) if zero else u - n * theta


def attention_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      heads: int) -> torch.Tensor:
    """Q·Kᵀ·V per head, on [..., N, D] (D = heads·d) -> [..., N, D]; dtype kept.

    No softmax makes the product associative: Q·(Kᵀ·V) costs N·d² instead of
    N²·d, and on integer spikes both orders give exactly the same sums.
    """
    q, k, v = (t.unflatten(-1, (heads, -1)).transpose(-3, -2) for t in (q, k, v))
    out = q @ (k.transpose(-2, -1) @ v)
    return out.transpose(-3, -2).flatten(-2)


def spiking_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
                      scale: float) -> torch.Tensor:
    """Spikformer's spiking self-attention: Q·Kᵀ·V·s per head, without softmax."""
    return attention_product(q, k, v, heads) * scale
