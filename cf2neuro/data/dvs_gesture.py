"""`dvs128-gesture`: IBM DVS128 Gesture (Amir et al. 2017), from the original release.

DvsGesture.tar.gz extracts to `DvsGesture/` holding, per recording,
`userNN_<lighting>.aedat` (AEDAT 3.1) and `userNN_<lighting>_labels.csv`
(`class,startTime_usec,endTime_usec`, classes 1..11), plus the official split
lists `trials_to_train.txt` / `trials_to_test.txt`. A sample is the events of
one labelled time range, start <= t < end (as SpikingJelly cuts them).

AEDAT 3.1 (inivation docs, "AEDAT 3.1 file format"): '#' header lines ending
with '#!END-HEADER', then packets. A packet is a 28-byte little-endian header
(int16 type, int16 source, int32 event size, int32 ts offset, int32 ts overflow,
int32 capacity, int32 number, int32 valid) and capacity x size bytes of
events. Polarity events (type 1) are uint32 data (bit 0 valid, bit 1 polarity,
bits 2..16 y, bits 17..31 x) and int32 timestamp; the full timestamp is
timestamp | overflow << 31. Other packet types (special events, ...) are skipped.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from cf2neuro.data.augment import ShiftFlip
from cf2neuro.data.events import EventFrames, Events, as_size, check_frame_options
from cf2neuro.data.spec import DataBundle, DataSpec, locate
from cf2neuro.errors import BadInputError

SENSOR = (128, 128)
URL = "https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz)"
CLASS_NAMES = ["hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
               "right arm counter-clockwise", "left arm clockwise",
               "left arm counter-clockwise", "arm roll", "air drums", "air guitar", "other"]
POLARITY_EVENT = 1
PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"),
                          ("ts_offset", "<i4"), ("ts_overflow", "<i4"), ("capacity", "<i4"),
                          ("number", "<i4"), ("valid", "<i4")])


def _body_offset(data: bytes, path: Path) -> int:
    if not data.startswith(b"#!AER-DAT3"):
        raise BadInputError(f"{path}: expected an AEDAT 3.x file ('#!AER-DAT3.1' header line).")
    end = data.find(b"#!END-HEADER")
    if end < 0:
        raise BadInputError(f"{path}: AEDAT 3 header has no '#!END-HEADER' line; truncated file.")
    return data.index(b"\n", end) + 1


@lru_cache(maxsize=4)  # one recording holds ~11 samples; keep the last few parsed
def read_aedat31_polarity(path) -> Events:
    """Decode the valid polarity events of an AEDAT 3.1 file."""
    path = Path(path)
    data = path.read_bytes()
    pos, chunks = _body_offset(data, path), []
    while pos < len(data):
        if pos + PACKET_HEADER.itemsize > len(data):
            raise BadInputError(f"{path}: truncated packet header at byte {pos}.")
        head = np.frombuffer(data, PACKET_HEADER, count=1, offset=pos)[0]
        pos += PACKET_HEADER.itemsize
        size, capacity = int(head["size"]), int(head["capacity"])
        if size < 1 or capacity < 0 or pos + size * capacity > len(data):
            raise BadInputError(f"{path}: packet at byte {pos - 28} (type {head['type']}, "
                                f"{capacity} x {size} bytes) runs past the end of the file.")
        if head["type"] == POLARITY_EVENT:
            if size < 8:
                raise BadInputError(f"{path}: polarity events of {size} bytes, expected 8.")
            n = min(int(head["number"]), capacity)
            rec = np.frombuffer(data, np.uint8, count=n * size, offset=pos).reshape(n, size)
            words = rec[:, :8].copy().view("<u4").astype(np.int64)
            chunks.append((words[:, 0], words[:, 1] | (int(head["ts_overflow"]) << 31)))
        pos += size * capacity
    if not chunks:
        return Events(*(np.zeros(0, np.int64) for _ in range(4)))
    d = np.concatenate([c[0] for c in chunks])
    t = np.concatenate([c[1] for c in chunks])
    ok = (d & 1) == 1  # bit 0: validity mark
    d, t = d[ok], t[ok]
    return Events(x=(d >> 17) & 0x7FFF, y=(d >> 2) & 0x7FFF, t=t, p=(d >> 1) & 1)


def read_gesture_sample(source) -> Events:
    """One sample: (aedat path, start_us, end_us) -> its events."""
    path, start, end = source
    ev = read_aedat31_polarity(path)
    return ev.select((ev.t >= start) & (ev.t < end))


def _read_labels(csv_path: Path):
    """(class 0..10, start, end) rows of one `_labels.csv` file."""
    try:
        with open(csv_path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and r[0].strip().isdigit()]
        out = [(int(c) - 1, int(s), int(e)) for c, s, e, *_ in rows]
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{csv_path}: cannot read the label table ({exc}).") from exc
    for c, s, e in out:
        if not 0 <= c < 11 or e <= s:
            raise BadInputError(f"{csv_path}: bad row (class {c + 1}, {s}..{e}); "
                                "expected class 1..11 and start < end.")
    return out


def _items(directory: Path, list_name: str):
    items = []
    for line in (directory / list_name).read_text().splitlines():
        name = line.strip()
        if not name:
            continue
        aedat = directory / name
        labels = directory / (Path(name).stem + "_labels.csv")
        for f in (aedat, labels):
            if not f.exists():
                raise BadInputError(f"{directory / list_name} lists {name}, but {f} is missing.")
        items += [((str(aedat), s, e), c) for c, s, e in _read_labels(labels)]
    return items


def load_dvs_gesture(root=None, seed: int = 0, frames: int = 16, size=None,
                     bin_by: str = "count", augment: bool = True) -> DataBundle:
    """Load DVS128 Gesture (official trial split, 11 classes) as [frames, 2, H, W] counts.

    The augment is a random shift of up to 1/8 of the width, no flip (a flip
    would turn a left-hand gesture into a right-hand one). `seed` is unused.
    """
    size = as_size(size, SENSOR)
    check_frame_options(frames, size, SENSOR, bin_by)
    directory = locate(
        "dvs128-gesture", root, subdirs=["dvs128-gesture/DvsGesture", "DvsGesture", ""],
        required=["trials_to_train.txt", "trials_to_test.txt"],
        how_to_get=f"download DvsGesture.tar.gz from {URL} and extract it into "
                   "<data dir>/dvs128-gesture/ so that "
                   "<data dir>/dvs128-gesture/DvsGesture/trials_to_train.txt exists.",
    )
    spec = DataSpec(name="dvs128-gesture", input_shape=[2, *size], num_classes=11,
                    kind="frames", frames=frames, class_names=list(CLASS_NAMES))

    def split(list_name):
        return EventFrames(_items(directory, list_name), read_gesture_sample,
                           SENSOR, size, frames, bin_by)

    return DataBundle(train=split("trials_to_train.txt"), test=split("trials_to_test.txt"),
                      spec=spec, augment=ShiftFlip(size[1] // 8) if augment else None)
