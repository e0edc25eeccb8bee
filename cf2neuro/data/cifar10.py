"""`cifar10`: CIFAR-10 read from the official *binary* release.

Format (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"): each of
`data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin` is a sequence of
3,073-byte records: one label byte (0..9), then 3,072 pixel bytes, 1,024 per
channel (R, G, B), each channel row-major 32x32. The python-format release is
deliberately not read: it is a pickle, and unpickling a file runs its code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cf2neuro.data.augment import ShiftFlip
from cf2neuro.data.spec import ArrayDataset, DataBundle, DataSpec, locate
from cf2neuro.errors import BadInputError

RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
# Per-channel mean and (population) std of the CIFAR-10 training pixels in [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def read_cifar_bin(path: Path):
    """Read one CIFAR-10 binary batch -> (uint8 images [N, 3, 32, 32], int64 labels [N])."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise BadInputError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte "
            f"CIFAR-10 records (1 label byte + 3072 pixel bytes); the file is truncated "
            f"or not a CIFAR-10 binary batch. Re-extract {URL}."
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise BadInputError(f"{path}: record {bad} has label {labels[bad]}, expected 0..9.")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _read_all(directory: Path, names):
    parts = [read_cifar_bin(directory / n) for n in names]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y)


class Normalize:
    """uint8 CHW image -> float32 normalized with the CIFAR-10 channel mean/std."""

    def __init__(self, mean=MEAN, std=STD):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(torch.float32) / 255.0 - self.mean) / self.std


def load_cifar10(root=None, seed: int = 0, augment: bool = True) -> DataBundle:
    """Load CIFAR-10 (50,000 train / 10,000 test), x: [3, 32, 32] normalized float32.

    Images stay uint8 in memory (150 MB) and are normalized per sample on
    access. The augment is a random crop with 4 pixels of padding (a random
    shift of up to 4; the padding is 0 in normalized space, i.e. the mean
    colour) and a random horizontal flip. `seed` is unused: the split is the
    official one.
    """
    directory = locate(
        "cifar10", root,
        subdirs=["cifar10/cifar-10-batches-bin", "cifar-10-batches-bin", ""],
        required=TRAIN_FILES + TEST_FILES,
        how_to_get=f"download {URL} (the binary version) and extract it into "
                   "<data dir>/cifar10/ so the *.bin files are in "
                   "<data dir>/cifar10/cifar-10-batches-bin/.",
    )
    norm = Normalize()
    spec = DataSpec(name="cifar10", input_shape=[3, 32, 32], num_classes=10,
                    kind="static", class_names=list(CLASS_NAMES))
    return DataBundle(
        train=ArrayDataset(*_read_all(directory, TRAIN_FILES), transform=norm),
        test=ArrayDataset(*_read_all(directory, TEST_FILES), transform=norm),
        spec=spec,
        augment=ShiftFlip(4, flip=True) if augment else None,
    )
