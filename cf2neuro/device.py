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


GIB = 1024 ** 3


def available_memory(device=None) -> tuple[int, str] | None:
    """(bytes free, where) on `device` (a torch.device; None or CPU: RAM), or None if unknown."""
    if device is not None and torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free), f"free on {device}"
    try:  # Linux: what the kernel says a new process can still get without swapping
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "RAM available"
    except OSError:
        pass
    return None


def check_fits(need: int, what: str, device=None, fix: str = "") -> None:
    """Refuse, with the figures in GiB, `need` bytes that the device cannot hold."""
    have = available_memory(device)
    if have is not None and need > have[0]:
        raise ConfigError(f"{what} needs about {need / GIB:.3g} GiB but only "
                          f"{have[0] / GIB:.3g} GiB is {have[1]}; nothing was allocated. "
                          f"{fix or 'Use a smaller model'}")
