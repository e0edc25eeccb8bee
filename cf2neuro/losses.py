"""Training losses: the task loss and the positive-negative balanced loss (DESIGN §1).

For every CF layer l, over batch, time and neurons of the pre-fire potential u:
    P_l = mean(relu(u)),  N_l = mean(relu(-u)),
    L_pn = mean_l ((P_l - N_l) / (P_l + N_l + eps))^2
The layers compute P and N inside their fused kernel, and only while
`recording_potentials` is active, so the loss costs no memory otherwise.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from .errors import ConfigError
from .nn.neuron import CFNeuron


def cf_layers(model: nn.Module) -> list[CFNeuron]:
    return [m for m in model.modules() if isinstance(m, CFNeuron)]


@contextlib.contextmanager
def recording_potentials(model: nn.Module, enabled: bool = True):
    """Make every CF layer of `model` keep its (P, N) statistics while inside.

    Compute the loss inside the block: leaving it drops the statistics (and
    the autograd graph they hold).
    """
    layers = cf_layers(model) if enabled else []
    for layer in layers:
        layer.record_pn = True
    try:
        yield layers
    finally:
        for layer in layers:
            layer.record_pn = False
            layer.pn = None


def pn_balance_loss(layers: list[CFNeuron], eps: float = 1e-6) -> torch.Tensor:
    """L_pn over the layers' last recorded (P, N)."""
    stats = [layer.pn for layer in layers if layer.pn is not None]
    if not stats:
        raise ConfigError("the PN loss needs CF layers that ran inside recording_potentials()")
    terms = [((p - n) / (p + n + eps)) ** 2 for p, n in stats]
    return torch.stack(terms).mean()


def task_loss(outputs: torch.Tensor, targets: torch.Tensor, kind: str = "ce") -> torch.Tensor:
    """Cross-entropy of per-step outputs [T, B, C].

    "ce": on the time-averaged output (the usual SNN readout).
    "tet": mean over steps of the per-step cross-entropy (Deng et al., ICLR 2022,
    without its optional MSE regulariser).
    """
    if kind == "ce":
        return F.cross_entropy(outputs.mean(0), targets)
    if kind == "tet":
        steps = outputs.shape[0]
        return F.cross_entropy(outputs.flatten(0, 1), targets.repeat(steps))
    raise ConfigError(f"unknown task loss {kind!r}; choose 'ce' or 'tet'")
