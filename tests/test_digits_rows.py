"""`digits-rows`: the digits streamed row by row (8 channels x 8 steps, classes 0-7)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from cf2neuro.data import encode, load_dataset, method_for
from cf2neuro.errors import ConfigError


def test_each_step_is_one_image_row_and_only_eight_classes():
    b = load_dataset("digits-rows")
    assert b.spec.input_shape == [8] and b.spec.frames == 8 and b.spec.num_classes == 8
    raw = load_digits()
    kept = raw.images[raw.target < 8] / 16.0
    assert len(b.train) + len(b.test) == len(kept) == int((raw.target < 8).sum())
    x, y = b.test[0]
    assert x.shape == (8, 8) and 0 <= int(y) < 8
    # the sample is one of the kept images, row t at frame t
    match = np.flatnonzero([np.array_equal(x.numpy(), k.astype(np.float32)) for k in kept])
    assert match.size >= 1 and raw.target[raw.target < 8][match[0]] == int(y)
    seq = encode(torch.stack([b.test[i][0] for i in range(4)]), 8, method_for(b.spec.kind))
    assert seq.shape == (8, 4, 8) and torch.equal(seq[3, 0], x[3])


def test_classes_option_and_its_range():
    assert load_dataset("digits-rows", classes=10).spec.num_classes == 10
    with pytest.raises(ConfigError, match="classes"):
        load_dataset("digits-rows", classes=11)
