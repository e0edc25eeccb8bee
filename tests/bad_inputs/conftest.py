"""Fixtures of the bad-input catalogue; the checks themselves are in checks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from .checks import new_leftovers, snapshot


@pytest.fixture
def no_leftovers():
    """Fails the test if it leaves Lava processes, shared memory or temp dirs behind."""
    before = snapshot()
    yield
    left = new_leftovers(before)
    assert not left, f"left behind: {left}"


@pytest.fixture(scope="session")
def mlp_ckpt(tmp_path_factory) -> Path:
    """A digits MLP trained for one epoch (read-only: copy it before changing it)."""
    from cf2neuro.train import TrainConfig, train

    ckpt = tmp_path_factory.mktemp("bad-inputs") / "mlp"
    train(TrainConfig(epochs=1), ckpt, progress=False)
    return ckpt
