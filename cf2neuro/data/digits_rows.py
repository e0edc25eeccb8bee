"""`digits-rows`: scikit-learn's digits streamed row by row, a temporal task for small chips.

Each 8x8 image becomes 8 time steps of 8 input channels (row t of the image
at step t), and only the digits 0-7 are kept: 8 classes. That fits SynSense
Xylo's interface (at most 16 input channels and 8 output neurons) and, unlike
the static `digits`, the network has to integrate over time to classify.
Embedded like `digits` (the images ship with scikit-learn); the split is the
same seeded stratified 80/20 over the kept samples.
"""

from __future__ import annotations

import numpy as np
import torch

from cf2neuro.data.digits import TEST_FRACTION
from cf2neuro.data.spec import ArrayDataset, DataBundle, DataSpec, stratified_split
from cf2neuro.errors import ConfigError


def load_digits_rows(root=None, seed: int = 0, test_fraction: float = TEST_FRACTION,
                     classes: int = 8) -> DataBundle:
    """[8 frames, 8 channels] float32 rows in [0, 1]; labels 0..classes-1.

    `root` is accepted for a uniform loader signature and ignored.
    """
    from sklearn.datasets import load_digits

    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= 10:
        raise ConfigError(f"digits-rows: classes must be an int in 2..10, got {classes!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
            or not 0 < test_fraction < 1:
        raise ConfigError(f"digits-rows: test_fraction must be a number strictly between 0 "
                          f"and 1, got {test_fraction!r}")
    raw = load_digits()
    keep = raw.target < classes
    rows = raw.images[keep].astype(np.float32) / 16.0  # [N, 8 rows = frames, 8 channels]
    labels = raw.target[keep].astype(np.int64)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    x, y = torch.from_numpy(rows), torch.from_numpy(labels)
    spec = DataSpec(name="digits-rows", input_shape=[8], num_classes=classes, kind="frames",
                    frames=8, class_names=[str(d) for d in range(classes)])
    return DataBundle(train=ArrayDataset(x[train_idx], y[train_idx]),
                      test=ArrayDataset(x[test_idx], y[test_idx]), spec=spec)
