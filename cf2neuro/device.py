"""Which torch device a command runs on: "auto", "cpu", "cuda", "cuda:1", ..."""

from __future__ import annotations

import torch

from .errors import ConfigError


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto", "cpu", "cuda", "cuda:1"... as a torch.device; a clear error without CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA GPU; "
                              f"use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
