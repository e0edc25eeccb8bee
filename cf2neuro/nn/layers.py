"""Multi-step building blocks: stateless layers fold T into the batch."""

from __future__ import annotations

import torch
from torch import nn


class SeqToANN(nn.Module):
    """Apply stateless modules to [T, B, ...] by folding T into the batch.

    Like SpikingJelly's `layer.SeqToANNContainer`; traceable by torch.fx.
    """

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.module = modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (x.shape[0], x.shape[1]))
