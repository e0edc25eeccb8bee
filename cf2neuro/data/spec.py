"""What every loader returns, and the helpers every loader shares.

A loader is a plain function `(root, seed, **options) -> DataBundle`. This
module holds the bundle types, where data lives on disk, how a missing data set
is reported, and the seeded stratified split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cf2neuro.errors import DatasetNotFoundError

#: Environment variable naming the directory that holds every data set.
DATA_ENV = "CF2NEURO_DATA"
DEFAULT_DATA_DIR = "~/.cache/cf2neuro/data"

#: (x_batch [B, ...], torch.Generator | None) -> x_batch, applied at train time.
Augment = Callable[[torch.Tensor, Optional[torch.Generator]], torch.Tensor]


@dataclass(frozen=True)
class DataSpec:
    """Shape facts about a data set, without loading a sample.

    kind "static": a sample x is `input_shape`; "frames": x is
    `[frames, *input_shape]` (`frames` = T_native, the number of time bins).
    """

    name: str
    input_shape: list
    num_classes: int
    kind: str = "static"
    frames: Optional[int] = None
    class_names: list = field(default_factory=list)


@dataclass
class DataBundle:
    """A loaded data set: train/test datasets of (x float32, y int64 scalar)."""

    train: Dataset
    test: Dataset
    spec: DataSpec
    augment: Optional[Augment] = None


def data_base(root: Optional[str]) -> Path:
    """The base directory: `root`, else $CF2NEURO_DATA, else ~/.cache/cf2neuro/data."""
    base = root if root is not None else os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(base).expanduser()


def locate(
    name: str,
    root: Optional[str],
    subdirs: Sequence[str],
    required: Sequence[str],
    how_to_get: str,
) -> Path:
    """Find the data set's directory or raise DatasetNotFoundError.

    `root` may name the common data directory or the data set's own directory,
    so each of `base/sub` (for sub in subdirs, "" meaning base) is tried; the
    first one holding every path in `required` wins. The error names the full
    expected paths of the first (canonical) candidate.
    """
    base = data_base(root)
    candidates = [base / sub if sub else base for sub in subdirs]
    for cand in candidates:
        if all((cand / req).exists() for req in required):
            return cand
    canonical = candidates[0]
    missing = [str(canonical / req) for req in required if not (canonical / req).exists()]
    if root is not None:
        where = "the root argument"
    elif os.environ.get(DATA_ENV):
        where = f"${DATA_ENV}"
    else:
        where = f"the default data directory; set ${DATA_ENV} or pass root to change it"
    raise DatasetNotFoundError(
        f"data set '{name}' not found under {base} ({where}). Missing: "
        + ", ".join(missing)
        + f". cf2neuro never downloads data: {how_to_get} "
        f"<data dir> is {base}."
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Seeded per-class split -> (train_idx, test_idx), each sorted ascending.

    Uses numpy's own generator (not scikit-learn's) so a seed gives the same
    split across library versions.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class ArrayDataset(Dataset):
    """Samples held in memory as one tensor, converted to float32 on access.

    `transform` maps a stored sample (e.g. uint8 pixels) to the float32 input,
    so large data sets stay compact in memory.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform=None):
        self.x, self.y, self.transform = x, y.to(torch.int64), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        x = self.transform(x) if self.transform is not None else x.to(torch.float32)
        return x, self.y[i]
