"""Surrogate-gradient shapes and the learnable, time-step-wise sharpness α_t.

Every shape is a smooth step F(α·x) with F' a unit-area bump. The backward
pass of a firing level at c uses

    d/du  F(α(u - c)) = α · F'(α(u - c))      (the surrogate g(α, u - c))
    d/dα  F(α(u - c)) = (u - c) · F'(α(u - c))  (how α_t learns)

so a shape only has to say what F' is. With the sigmoid shape,
g(α, x) = α·σ(αx)·(1 - σ(αx)), the default of DESIGN §1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError


def _sigmoid_bump(z: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 - s)


def _atan_bump(z: torch.Tensor) -> torch.Tensor:
    # F(z) = atan(pi z / 2) / pi + 1/2, as in SpikingJelly's ATan.
    return 0.5 / (1.0 + (0.5 * math.pi * z) ** 2)


def _triangle_bump(z: torch.Tensor) -> torch.Tensor:
    return torch.clamp(1.0 - z.abs(), min=0.0)


def _rectangle_bump(z: torch.Tensor) -> torch.Tensor:
    return (z.abs() < 0.5).to(z.dtype)


BUMPS = {
    "sigmoid": _sigmoid_bump,
    "atan": _atan_bump,
    "triangle": _triangle_bump,
    "rectangle": _rectangle_bump,
}


def bump(shape: str):
    """The unit-area bump F' of a surrogate shape, by name."""
    try:
        return BUMPS[shape]
    except KeyError:
        raise ConfigError(
            f"unknown surrogate shape {shape!r}; choose one of {sorted(BUMPS)}"
        ) from None


class Sharpness(nn.Module):
    """α_t: one surrogate sharpness per time step, kept above a floor.

    α = floor + softplus(ρ). The floor keeps the gradient's sign: an
    unconstrained α drifted below 0 in long runs and reversed it. Longer
    windows than the trained T reuse the last α; with `learnable=False` it
    is a fixed buffer (the ablation baseline).
    """

    def __init__(self, timesteps: int, init: float = 4.0, floor: float = 1.0,
                 learnable: bool = True):
        super().__init__()
        if timesteps < 1:
            raise ConfigError(f"timesteps must be >= 1, got {timesteps}")
        if not init > floor:
            raise ConfigError(
                f"surrogate alpha init ({init}) must be above its floor ({floor})")
        self.floor = float(floor)
        rho = torch.full((timesteps,), _softplus_inverse(init - floor))
        if learnable:
            self.rho = nn.Parameter(rho)
        else:
            self.register_buffer("rho", rho)

    def forward(self, steps: int) -> torch.Tensor:
        """α for `steps` time steps, shape [steps]."""
        alpha = self.floor + nn.functional.softplus(self.rho)
        if steps <= alpha.shape[0]:
            return alpha[:steps]
        tail = alpha[-1:].expand(steps - alpha.shape[0])
        return torch.cat([alpha, tail])

    def extra_repr(self) -> str:
        return f"timesteps={self.rho.shape[0]}, floor={self.floor}"


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))
