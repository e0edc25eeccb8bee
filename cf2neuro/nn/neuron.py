"""The CF neuron layer: a thin module around `functional.cf_multistep`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from ..errors import ConfigError
from .functional import CFParameters, cf_multistep
from .surrogate import Sharpness


@dataclass
class NeuronConfig:
    """Everything that defines a CF layer; saved with every checkpoint."""

    threshold: float = 1.0
    beta: float = 0.5
    max_spikes: int = 1
    signed: bool = True
    learn_threshold: bool = False
    surrogate: str = "sigmoid"
    alpha_init: float = 4.0
    alpha_floor: float = 1.0
    learn_alpha: bool = True
    detach_reset: bool = True
    reset: str = "subtract"        # "zero": v = 0 after a spike (NIR's LIF/IF, every peer's)

    @classmethod
    def from_dict(cls, d: dict | None) -> "NeuronConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown neuron option(s) {unknown}; known: {sorted(known)}")
        for f in fields(cls):  # JSON and the CLI hand us untyped values
            if f.name in d and not _has_type(d[f.name], f.type):
                raise ConfigError(f"neuron option {f.name} must be {f.type}, got {d[f.name]!r}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _has_type(value, name: str) -> bool:
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


LIF_BASELINE = {"max_spikes": 1, "signed": False}
"""Options that turn the CF neuron into a LIF/IF with reset by subtraction."""


class CFNeuron(nn.Module):
    """Circulate-firing neuron over multi-step input [T, B, ...].

    A leaf for torch.fx: its window loop runs inside one autograd function.

    Each call starts from v = 0, so state never leaks between batches. With
    `record_pn = True` the layer keeps P = mean(relu(u)) and
    N = mean(relu(-u)) of its pre-fire potential in `pn` for the PN loss.
    """

    def __init__(self, timesteps: int, config: NeuronConfig | dict | None = None, **overrides):
        super().__init__()
        cfg = config if isinstance(config, NeuronConfig) else NeuronConfig.from_dict(config)
        cfg = NeuronConfig.from_dict({**cfg.to_dict(), **overrides})
        if not cfg.threshold > 0:
            raise ConfigError(f"CF threshold must be > 0, got {cfg.threshold}")
        self.config = cfg
        self.params = CFParameters(cfg.beta, int(cfg.max_spikes), bool(cfg.signed),
                                   bool(cfg.detach_reset), cfg.surrogate, cfg.reset).check()
        theta = torch.tensor(float(cfg.threshold))
        if cfg.learn_threshold:
            self.threshold = nn.Parameter(theta)
        else:
            self.register_buffer("threshold", theta)
        self.alpha = Sharpness(timesteps, cfg.alpha_init, cfg.alpha_floor, cfg.learn_alpha)
        self.record_pn = False
        self.pn: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            raise ConfigError(
                f"CFNeuron expects multi-step input [T, B, ...], got shape {tuple(x.shape)}")
        theta = self.threshold.clamp(min=1e-3) if self.config.learn_threshold else self.threshold
        out, pos, neg = cf_multistep(x, self.alpha(x.shape[0]), theta, self.params,
                                     record=self.record_pn)
        self.pn = (pos, neg) if self.record_pn else None
        return out

    def extra_repr(self) -> str:
        c = self.config
        return (f"theta={c.threshold}, beta={c.beta}, K={c.max_spikes}, signed={c.signed}, "
                f"reset={c.reset}, surrogate={c.surrogate}, learn_alpha={c.learn_alpha}")
