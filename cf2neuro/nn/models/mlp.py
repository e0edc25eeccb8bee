"""Spiking MLP of CF neurons."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ...errors import ConfigError
from ..neuron import CFNeuron


class SpikingMLP(nn.Module):
    """Flatten -> [Linear -> CF (-> Dropout)] per hidden width -> Linear readout.

    No batch norm: the known-good digits recipe is a plain 64-256-256-10
    CF-MLP (input [1, 8, 8]: 85,010 parameters with the defaults). The
    readout is a Linear without neuron, giving per-step logits [T, B, C].
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 timesteps: int = 4, neuron: dict | None = None,
                 hidden: Sequence[int] = (256, 256), dropout: float = 0.0):
        super().__init__()
        hidden = check_widths("hidden", hidden)
        check_dropout(dropout)
        layers: list[nn.Module] = [nn.Flatten(2)]  # [T, B, *shape] -> [T, B, F]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), CFNeuron(timesteps, neuron)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def check_widths(key: str, widths, allow_empty: bool = True) -> list[int]:
    """A list of positive layer widths, or a ConfigError naming the key."""
    ok = isinstance(widths, (list, tuple)) and (allow_empty or len(widths) > 0) and all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
    if not ok:
        raise ConfigError(f"{key} must be a list of positive ints, "
                          f"got {widths!r}")
    return list(widths)


def check_dropout(p) -> None:
    if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {p!r}")
