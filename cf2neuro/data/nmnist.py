"""`nmnist`: N-MNIST (Orchard et al. 2015), read from the original `.bin` files.

Layout after extracting Train.zip and Test.zip: `Train/<digit>/<id>.bin` and
`Test/<digit>/<id>.bin`, 34x34 ATIS sensor. Each event is 40 bits (5 bytes):
byte 0 x, byte 1 y, byte 2 bit 7 polarity, then a 23-bit timestamp in
microseconds (byte 2 bits 6..0, bytes 3, 4, big-endian). An event with y = 240
marks a timestamp overflow and adds 2^13 to the following timestamps, as in
the authors' reader (github.com/gorchard/event-Python, eventvision.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cf2neuro.data.events import EventFrames, Events, as_size, check_frame_options
from cf2neuro.data.spec import DataBundle, DataSpec, locate
from cf2neuro.errors import BadInputError

SENSOR = (34, 34)
OVERFLOW_Y = 240
OVERFLOW_STEP = 1 << 13
URL = "https://www.garrickorchard.com/datasets/n-mnist (mirror: https://data.mendeley.com/datasets/468j46mzdv/1)"


def read_nmnist_bin(path) -> Events:
    """Decode one N-MNIST/N-Caltech101 `.bin` file into an event stream."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise BadInputError(
            f"{path}: {raw.size} bytes is not a whole number of 5-byte (40-bit) "
            f"N-MNIST events; the file is truncated. Re-extract it from {URL}."
        )
    rec = raw.reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    overflow = y == OVERFLOW_Y
    # Each overflow marker adds 2^13 to its own and every later timestamp.
    t = t + np.cumsum(overflow) * OVERFLOW_STEP
    keep = ~overflow
    return Events(x[keep], y[keep], t[keep], p[keep])


def _list_split(directory: Path):
    """(file, label) for every `<digit>/*.bin` below `directory`, in a stable order."""
    items = []
    for label in range(10):
        folder = directory / str(label)
        if folder.is_dir():
            items += [(str(f), label) for f in sorted(folder.glob("*.bin"))]
    if not items:
        raise BadInputError(
            f"{directory}: no <digit>/*.bin files found; expected e.g. "
            f"{directory / '0' / '00002.bin'}. Re-extract the archive from {URL}."
        )
    return items


def load_nmnist(root=None, seed: int = 0, frames: int = 16, size=None,
                bin_by: str = "count", augment: bool = True) -> DataBundle:
    """Load N-MNIST (official 60,000 / 10,000 split) as [frames, 2, 34, 34] counts.

    `frames` is T_native; `size` an output resolution (int or (H, W)) smaller
    than 34; `bin_by` "count" (equal event counts per frame) or "time". There
    is no augment (saccade recordings already jitter); `augment` and `seed`
    are accepted for a uniform signature.
    """
    size = as_size(size, SENSOR)
    check_frame_options(frames, size, SENSOR, bin_by)
    directory = locate(
        "nmnist", root, subdirs=["nmnist", "N-MNIST", ""], required=["Train", "Test"],
        how_to_get=f"download Train.zip and Test.zip from {URL} and extract both into "
                   "<data dir>/nmnist/ so that <data dir>/nmnist/Train/0/00002.bin exists.",
    )
    spec = DataSpec(name="nmnist", input_shape=[2, *size], num_classes=10, kind="frames",
                    frames=frames, class_names=[str(d) for d in range(10)])

    def split(name):
        return EventFrames(_list_split(directory / name), read_nmnist_bin,
                           SENSOR, size, frames, bin_by)

    return DataBundle(train=split("Train"), test=split("Test"), spec=spec, augment=None)
