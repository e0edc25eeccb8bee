"""Event streams -> frame tensors, and the lazy Dataset the event loaders share.

An event stream is four equal-length numpy arrays (x, y, t in microseconds,
p in {0, 1}). `bin_events` turns it into `[frames, 2, H, W]` float32 event
counts: channel 0 counts OFF events (p = 0), channel 1 ON events (p = 1).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from cf2neuro.errors import BadInputError, ConfigError

BIN_MODES = ("count", "time")


class Events(NamedTuple):
    """One event stream; all arrays are 1-D and equally long."""

    x: np.ndarray
    y: np.ndarray
    t: np.ndarray
    p: np.ndarray

    def select(self, mask: np.ndarray) -> "Events":
        return Events(self.x[mask], self.y[mask], self.t[mask], self.p[mask])


def frame_index(t: np.ndarray, frames: int, by: str) -> np.ndarray:
    """Which of `frames` bins each event falls in.

    "count": consecutive groups of equal size (sizes differ by at most one);
    "time": equal slices of [t.min(), t.max()].
    """
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if by == "count":
        return (np.arange(n, dtype=np.int64) * frames) // n
    if by == "time":
        t = t.astype(np.int64)
        t0 = t.min()
        span = int(t.max() - t0) + 1
        return ((t - t0) * frames) // span  # integer maths: no float rounding at edges
    raise ConfigError(f"unknown bin_by {by!r}; use one of {', '.join(BIN_MODES)}")


def bin_events(ev: Events, frames: int, sensor: Tuple[int, int], size: Tuple[int, int],
               by: str = "count") -> np.ndarray:
    """Event counts per (frame, polarity, row, column) -> float32 [frames, 2, *size].

    `sensor` is the recording's (H, W); `size` the output (H, W). A smaller
    output scales coordinates down (y * H_out // H), summing the events of the
    sensor pixels that merge.
    """
    (sh, sw), (oh, ow) = sensor, size
    f = frame_index(ev.t, frames, by)
    ys = ev.y.astype(np.int64) * oh // sh
    xs = ev.x.astype(np.int64) * ow // sw
    flat = ((f * 2 + ev.p.astype(np.int64)) * oh + ys) * ow + xs
    counts = np.bincount(flat, minlength=frames * 2 * oh * ow)
    return counts.reshape(frames, 2, oh, ow).astype(np.float32)


def check_in_sensor(ev: Events, sensor: Tuple[int, int], source: str) -> None:
    """Raise BadInputError when an event lies outside the sensor."""
    h, w = sensor
    bad = (ev.x >= w) | (ev.y >= h) | (ev.x < 0) | (ev.y < 0) | (ev.p > 1) | (ev.p < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise BadInputError(
            f"{source}: event {i} (x={ev.x[i]}, y={ev.y[i]}, p={ev.p[i]}) lies outside "
            f"the {w}x{h} sensor with 2 polarities; the file is corrupt or of another data set."
        )


def check_frame_options(frames: int, size: Tuple[int, int], sensor: Tuple[int, int], by: str):
    """Validate loader options early, with the option's name in the message."""
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ConfigError(f"frames must be an integer >= 1, got {frames!r}")
    if by not in BIN_MODES:
        raise ConfigError(f"bin_by must be one of {', '.join(BIN_MODES)}, got {by!r}")
    if not (1 <= size[0] <= sensor[0] and 1 <= size[1] <= sensor[1]):
        raise ConfigError(f"size {size} must be between 1 and the sensor size {sensor}")


class EventFrames(Dataset):
    """Samples read from event files on access and binned to frames.

    `items` is a list of (source, label); `read(source) -> Events` reads one
    sample (a file, or a time slice of one). Reading lazily keeps loading fast
    and memory small; a DataLoader with workers parallelizes the parsing.
    """

    def __init__(self, items: Sequence, read: Callable[[object], Events],
                 sensor: Tuple[int, int], size: Tuple[int, int], frames: int, by: str):
        self.items, self.read = list(items), read
        self.sensor, self.size, self.frames, self.by = sensor, size, frames, by

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        source, label = self.items[i]
        ev = self.read(source)
        check_in_sensor(ev, self.sensor, str(source))
        x = bin_events(ev, self.frames, self.sensor, self.size, self.by)
        return torch.from_numpy(x), torch.tensor(label, dtype=torch.int64)

    @property
    def labels(self) -> np.ndarray:
        return np.array([label for _, label in self.items], dtype=np.int64)


def as_size(size, sensor: Tuple[int, int]) -> Tuple[int, int]:
    """`None` -> the sensor size; an int -> square; a pair -> itself."""
    if size is None:
        return tuple(sensor)
    if isinstance(size, int) and not isinstance(size, bool):
        return (size, size)
    if (isinstance(size, (list, tuple)) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) for s in size)):
        return (size[0], size[1])
    raise ConfigError(f"size must be an int or a pair [H, W] of ints up to the sensor's "
                      f"{tuple(sensor)}, got {size!r}")
