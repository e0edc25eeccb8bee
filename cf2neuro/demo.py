"""The main job on the embedded default: train a CF network on digits.

Later stages of the pipeline (export, quantize, verify, energy) extend it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .fileio import write_json
from .train import TrainConfig, train

log = logging.getLogger(__name__)


def run_demo(out_dir="cf2neuro-demo", seed: int = 0, progress: bool = True) -> dict:
    """Train the default CF-MLP on digits into OUT/checkpoint; returns the summary."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    cfg = TrainConfig(seed=seed)
    metrics = train(cfg, out / "checkpoint", progress=progress)
    summary = {
        "checkpoint": str(out / "checkpoint"),
        "model": cfg.model, "data": cfg.data, "timesteps": cfg.timesteps,
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "demo.json", summary)
    return summary
