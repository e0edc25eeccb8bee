"""Writers of small data files in the real on-disk formats, for the data tests.

Each writer encodes by the published format description (not by calling the
reader under test), so a test that reads the file back checks the decoder.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_cifar_bin(path, images: np.ndarray, labels) -> Path:
    """CIFAR-10 binary batch: per record 1 label byte + 3072 CHW pixel bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for img, lab in zip(images, labels):
            fh.write(bytes([int(lab)]) + np.asarray(img, dtype=np.uint8).tobytes(order="C"))
    return path


def write_nmnist_bin(path, events, overflow_before=()) -> Path:
    """N-MNIST 40-bit events (x, y, t_us, p); an overflow marker (y=240) before listed indices."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = bytearray()
    for i, (x, y, t, p) in enumerate(events):
        if i in overflow_before:
            out += bytes([0, 240, 0, 0, 0])
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.write_bytes(bytes(out))
    return path


def dvs128_address(sensor_x: int, sensor_y: int, off_bit: int) -> int:
    """jAER DVS128 address: bit 0 polarity (1 = OFF), bits 1..7 x, bits 8..14 y."""
    return (sensor_y << 8) | (sensor_x << 1) | off_bit


def write_aedat2(path, events, version: str = "2.0") -> Path:
    """AEDAT 2.0: '#' header lines, then big-endian (uint32 address, uint32 t_us) pairs.

    `events` holds (address, t_us).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"#!AER-DAT{version}\r\n"
              "# This is a raw AE data file - do not edit\r\n"
              "# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
              "# created by a cf2neuro test\r\n").encode()
    body = b"".join(struct.pack(">II", a, t) for a, t in events)
    path.write_bytes(header + body)
    return path


def polarity_word(x: int, y: int, p: int, valid: int = 1) -> int:
    """AEDAT 3.1 polarity event data: bit 0 valid, bit 1 polarity, bits 2..16 y, 17..31 x."""
    return (x << 17) | (y << 2) | (p << 1) | valid


def aedat31_packet(event_type: int, events, ts_overflow: int = 0, capacity=None) -> bytes:
    """One AEDAT 3.1 packet of 8-byte events given as (data word, int32 timestamp)."""
    capacity = len(events) if capacity is None else capacity
    valid = len(events)
    head = struct.pack("<hhiiiiii", event_type, 1, 8, 4, ts_overflow, capacity, len(events), valid)
    body = b"".join(struct.pack("<Ii", d, t) for d, t in events)
    return head + body + bytes(8 * (capacity - len(events)))


def write_aedat31(path, packets) -> Path:
    """AEDAT 3.1 file: the standard header lines, then the given packets (bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("#!AER-DAT3.1\r\n"
              "#Format: RAW\r\n"
              "#Source 1: DVS128\r\n"
              "#Start-Time: 2016-07-04 14:02:04 (TZ+0200)\r\n"
              "#!END-HEADER\r\n").encode()
    path.write_bytes(header + b"".join(packets))
    return path


def write_gesture_recording(directory, name: str, packets, labels) -> None:
    """`<name>.aedat` and `<name>_labels.csv` (class 1..11, start_us, end_us) in directory."""
    directory = Path(directory)
    write_aedat31(directory / f"{name}.aedat", packets)
    rows = "".join(f"{c},{s},{e}\n" for c, s, e in labels)
    (directory / f"{name}_labels.csv").write_text("class,startTime_usec,endTime_usec\n" + rows)
