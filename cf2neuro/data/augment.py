"""Batched, seeded image augmentations on the last two (H, W) axes.

They work on static batches `[B, C, H, W]` and on frame batches
`[B, T, C, H, W]` alike: every leading axis after the batch moves together,
so all frames of one event sample get the same shift or flip.
"""

from __future__ import annotations

from typing import Optional

import torch


def _draw(low: int, high: int, n: int, generator: Optional[torch.Generator], device):
    """n integers in [low, high], drawn on the generator's device, moved to `device`."""
    gen_device = generator.device if generator is not None else device
    v = torch.randint(low, high + 1, (n,), generator=generator, device=gen_device)
    return v.to(device)


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, fill: float = 0.0):
    """Shift sample b by (dy[b], dx[b]) pixels, filling uncovered pixels with `fill`.

    out[b, ..., i, j] = x[b, ..., i - dy[b], j - dx[b]] where that index is
    inside the image, else `fill` (so dy > 0 moves the content down).
    """
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    m = int(max(dy.abs().max().item(), dx.abs().max().item(), 0)) if b else 0
    flat = x.reshape(b, -1, h, w)
    padded = torch.nn.functional.pad(flat, (m, m, m, m), value=fill)
    rows = torch.arange(h, device=x.device)[None, :] + (m - dy.to(x.device))[:, None]
    cols = torch.arange(w, device=x.device)[None, :] + (m - dx.to(x.device))[:, None]
    bidx = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices around a slice put their broadcast dims [B, H, W] first.
    out = padded[bidx, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).reshape(x.shape)


def random_shift(x: torch.Tensor, max_shift: int, generator=None, fill: float = 0.0):
    """Shift each sample by an independent uniform integer in [-max_shift, max_shift]^2.

    With zero fill this is a random crop after `max_shift` pixels of padding.
    """
    dy = _draw(-max_shift, max_shift, x.shape[0], generator, x.device)
    dx = _draw(-max_shift, max_shift, x.shape[0], generator, x.device)
    return shift_images(x, dy, dx, fill)


def random_hflip(x: torch.Tensor, generator=None, p: float = 0.5):
    """Mirror each sample left-right with probability p."""
    gen_device = generator.device if generator is not None else x.device
    flip = (torch.rand(x.shape[0], generator=generator, device=gen_device) < p).to(x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where(flip.view(shape), x.flip(-1), x)


class ShiftFlip:
    """Picklable train-time augment: random shift, then (optionally) a random flip.

    A class rather than a lambda so DataLoader workers started with "spawn" can
    carry it.
    """

    def __init__(self, max_shift: int, flip: bool = False, fill: float = 0.0):
        self.max_shift, self.flip, self.fill = max_shift, flip, fill

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        if self.max_shift > 0:
            x = random_shift(x, self.max_shift, generator, self.fill)
        if self.flip:
            x = random_hflip(x, generator)
        return x

    def __repr__(self) -> str:
        return f"ShiftFlip(max_shift={self.max_shift}, flip={self.flip})"
