"""Input encodings: a batch of samples -> a time-first sequence `[T, B, *shape]`.

- "direct": the analog input every step (direct current encoding, the usual
  choice for static images in directly trained SNNs).
- "poisson": Bernoulli spikes with rate clip(x, 0, 1) at every step.
- "frames": event frames `[B, T_native, *shape]` made time-first; when T
  differs from T_native, groups of T_native / T consecutive frames are summed.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from cf2neuro.errors import BadInputError, ConfigError


def encode_direct(x: torch.Tensor, timesteps: int, generator=None) -> torch.Tensor:
    """[B, ...] -> [T, B, ...], the same tensor at every step (a contiguous copy)."""
    return x.unsqueeze(0).expand(timesteps, *x.shape).contiguous()


def encode_poisson(x: torch.Tensor, timesteps: int, generator=None) -> torch.Tensor:
    """[B, ...] -> [T, B, ...] of {0, 1}: spike with probability clip(x, 0, 1) each step."""
    rate = x.clamp(0.0, 1.0)
    device = generator.device if generator is not None else x.device
    u = torch.rand((timesteps, *x.shape), generator=generator, device=device,
                   dtype=rate.dtype if rate.is_floating_point() else torch.float32)
    return (u.to(x.device) < rate).to(u.dtype)


def encode_frames(x: torch.Tensor, timesteps: int, generator=None) -> torch.Tensor:
    """[B, T_native, ...] -> [T, B, ...]; re-binned by summing when T divides T_native."""
    if x.dim() < 2:
        raise BadInputError(f"frames encoding needs [B, T_native, ...], got shape {list(x.shape)}")
    native = x.shape[1]
    seq = x.transpose(0, 1)
    if timesteps == native:
        return seq.contiguous()
    if timesteps < native and native % timesteps == 0:
        group = native // timesteps
        return seq.reshape(timesteps, group, *seq.shape[1:]).sum(dim=1)
    raise ConfigError(
        f"cannot re-bin {native} event frames into {timesteps} time steps: T must equal "
        f"or divide {native}. Load the data set with frames={timesteps} instead."
    )


ENCODINGS: Dict[str, Callable] = {
    "direct": encode_direct,
    "poisson": encode_poisson,
    "frames": encode_frames,
}


def encode(x: torch.Tensor, timesteps: int, method: str = "direct",
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Encode a batch as a time-first sequence with the named method (see ENCODINGS).

    Frame data sets (spec.kind == "frames") take method="frames"; static ones
    "direct" or "poisson". `generator` seeds the random encodings.
    """
    if method not in ENCODINGS:
        raise ConfigError(f"unknown encoding {method!r}; known: {', '.join(ENCODINGS)}")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ConfigError(f"timesteps must be an integer >= 1, got {timesteps!r}")
    return ENCODINGS[method](x, timesteps, generator)


def method_for(kind: str, method: str = "direct") -> str:
    """The encoding to use for a data set kind: frames data always use "frames"."""
    return "frames" if kind == "frames" else method
