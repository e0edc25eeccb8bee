"""`cifar10-dvs`: CIFAR10-DVS (Li et al. 2017), read from the original AEDAT 2.0 files.

The release (figshare 4724671) is one zip per class; extracted it gives
`<class>/cifar10_<class>_<i>.aedat`, i = 0..999, recorded with a DVS128.

AEDAT 2.0 (jAER): ASCII header lines starting with '#' (the first is
'#!AER-DAT2.0'), then 8-byte events, big-endian: uint32 address, uint32
timestamp in microseconds. DVS128 address: bit 0 polarity (1 = OFF),
bits 1..7 sensor x, bits 8..14 sensor y. Frames use SpikingJelly's mapping
(column = 127 - sensor y, row = 127 - sensor x, ON = 1 - bit 0), which shows
the objects upright and keeps results comparable with the SNN literature.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cf2neuro.data.augment import ShiftFlip
from cf2neuro.data.events import EventFrames, Events, as_size, check_frame_options
from cf2neuro.data.spec import DataBundle, DataSpec, locate, stratified_split
from cf2neuro.errors import BadInputError, ConfigError

SENSOR = (128, 128)
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
URL = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"
SPLITS = ("tebn", "random")


def _skip_header(data: bytes, path: Path) -> int:
    """Offset of the first event after the '#' header lines; checks the version."""
    if not data.startswith(b"#!AER-DAT"):
        raise BadInputError(f"{path}: not an AEDAT file (no '#!AER-DAT' header line).")
    version = data[9:data.find(b"\n")].strip().decode("ascii", "replace")
    if not version.startswith("2."):
        raise BadInputError(
            f"{path}: AEDAT version {version}, expected 2.0 (the original CIFAR10-DVS "
            f"release from {URL}); re-encoded AEDAT 4 copies are not supported."
        )
    pos = 0
    while data.startswith(b"#", pos):
        end = data.find(b"\n", pos)
        pos = len(data) if end < 0 else end + 1
    return pos


def read_aedat2_dvs128(path) -> Events:
    """Decode a DVS128 AEDAT 2.0 file into events in SpikingJelly's frame orientation."""
    path = Path(path)
    data = path.read_bytes()
    body = memoryview(data)[_skip_header(data, path):]
    if len(body) % 8:
        raise BadInputError(
            f"{path}: {len(body)} bytes of events is not a whole number of 8-byte AEDAT 2.0 "
            f"events (address, timestamp); the file is truncated. Re-extract it from {URL}."
        )
    words = np.frombuffer(body, dtype=">u4").reshape(-1, 2).astype(np.int64)
    addr, t = words[:, 0], words[:, 1]
    sx, sy = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F
    return Events(x=127 - sy, y=127 - sx, t=t, p=1 - (addr & 1))


def _natural_key(path: Path):
    """Sort cifar10_cat_10 after cifar10_cat_9 (by the trailing sample number)."""
    m = re.search(r"(\d+)$", path.stem)
    return (int(m.group(1)) if m else -1, path.name)


def _list_files(directory: Path):
    items = []
    for label, cls in enumerate(CLASS_NAMES):
        files = sorted((directory / cls).glob("*.aedat"), key=_natural_key)
        if not files:
            raise BadInputError(f"{directory / cls}: no *.aedat files; re-extract {cls}.zip from {URL}.")
        items += [(str(f), label, rank) for rank, f in enumerate(files)]
    return items


def load_cifar10_dvs(root=None, seed: int = 0, frames: int = 16, size=None,
                     bin_by: str = "count", split: str = "tebn", augment: bool = True) -> DataBundle:
    """Load CIFAR10-DVS as [frames, 2, H, W] event counts (128x128 unless `size`).

    The release has no official split. split="tebn" (default): samples 0..99 of
    each class (by file number) are the test set, the rest train, as in TEBN
    (NeurIPS 2022) and most later papers; split="random": a `seed`ed stratified
    90/10 split. The augment is a random horizontal flip and a random shift of
    up to 1/8 of the width (all frames of a sample alike).
    """
    size = as_size(size, SENSOR)
    check_frame_options(frames, size, SENSOR, bin_by)
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    directory = locate(
        "cifar10-dvs", root, subdirs=["cifar10-dvs", "CIFAR10-DVS", ""], required=CLASS_NAMES,
        how_to_get=f"download the ten class zips (airplane.zip ... truck.zip) from {URL} and "
                   "extract each into <data dir>/cifar10-dvs/ so that "
                   "<data dir>/cifar10-dvs/airplane/cifar10_airplane_0.aedat exists.",
    )
    items = _list_files(directory)
    if split == "tebn":
        is_test = np.array([rank < 100 for _, _, rank in items])
    else:
        labels = np.array([label for _, label, _ in items])
        is_test = np.zeros(len(items), dtype=bool)
        is_test[stratified_split(labels, 0.1, seed)[1]] = True
    pairs = [(f, label) for f, label, _ in items]
    spec = DataSpec(name="cifar10-dvs", input_shape=[2, *size], num_classes=10, kind="frames",
                    frames=frames, class_names=list(CLASS_NAMES))

    def subset(flag):
        chosen = [pair for pair, t in zip(pairs, is_test) if t == flag]
        return EventFrames(chosen, read_aedat2_dvs128, SENSOR, size, frames, bin_by)

    return DataBundle(train=subset(False), test=subset(True), spec=spec,
                      augment=ShiftFlip(size[1] // 8, flip=True) if augment else None)
