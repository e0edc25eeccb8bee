"""The main job on the embedded default: train a CF network on digits, carry
it through NIR (checking nothing changed on the way), quantize it for Loihi 2
and verify it on the emulator and on Lava, over the whole test set.

Energy per target extends it next.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from . import api
from .checkpoint import load_checkpoint
from .data import encode, load_dataset, method_for
from .errors import CheckFailedError, RuntimeMissingError
from .fileio import write_json
from .ir.engine import Engine
from .nir import from_nir
from .train import TrainConfig, train
from .verify import verify

log = logging.getLogger(__name__)


def run_demo(out_dir="cf2neuro-demo", seed: int = 0, progress: bool = True) -> dict:
    """Train into OUT/checkpoint, export OUT/model.nir, re-import and compare.

    Raises CheckFailedError when the re-imported NIR graph predicts any test
    sample differently from the trained PyTorch model.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    cfg = TrainConfig(seed=seed)
    ckpt = out / "checkpoint"
    metrics = train(cfg, ckpt, progress=progress)
    exported = api.export(ckpt, out / "model.nir")
    nir_check = _compare_nir(ckpt, Path(exported["path"]), cfg)
    checked = _verify_loihi2(ckpt, out / "verify")
    summary = {
        "checkpoint": str(ckpt), "nir": exported["path"],
        "model": cfg.model, "data": cfg.data, "timesteps": cfg.timesteps,
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        **nir_check,
        "verify": checked,
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / "demo.json", summary)
    if nir_check["nir_agreement"] < 1.0:
        raise CheckFailedError(
            f"the re-imported {exported['path']} predicts "
            f"{100 * (1 - nir_check['nir_agreement']):.2f} % of the test set differently "
            f"from the PyTorch model; see {out / 'demo.json'}")
    if not checked["passed"]:
        raise CheckFailedError(f"verification on loihi2 failed; see {out / 'verify' / 'verify.md'}")
    return summary


def _verify_loihi2(ckpt: Path, report_dir: Path) -> dict:
    """Quantize for loihi2 and verify on Lava (whole test set: ~3 s once the runtime
    exists); on the emulator alone, saying why, when no Lava runtime can be had."""
    try:
        report = verify(ckpt, "loihi2", runner="lava", report_dir=report_dir)
    except RuntimeMissingError as e:
        log.warning("Lava is not available (%s); verifying on the emulator only", e)
        report = verify(ckpt, "loihi2", runner="emulator", report_dir=report_dir)
        report["lava_missing"] = str(e)
    return report


@torch.no_grad()
def _compare_nir(ckpt: Path, nir_path: Path, cfg: TrainConfig) -> dict:
    """Test-set predictions of the PyTorch model vs the NIR graph read back."""
    model, _, _ = load_checkpoint(ckpt)
    model.eval()
    graph = Engine(from_nir(nir_path))
    bundle = load_dataset(cfg.data, root=cfg.data_root, seed=cfg.seed, **cfg.data_options)
    method = method_for(bundle.spec.kind, cfg.encoding)
    generator = torch.Generator().manual_seed(cfg.seed)
    same = correct = total = 0
    for x, y in DataLoader(bundle.test, batch_size=512):
        seq = encode(x, cfg.timesteps, method, generator)
        ours = model(seq).mean(0).argmax(-1)
        theirs = graph(seq).mean(0).argmax(-1)
        same += (ours == theirs).sum().item()
        correct += (theirs == y).sum().item()
        total += y.numel()
    log.info("NIR round trip: %d/%d test predictions agree", same, total)
    return {"nir_agreement": same / total, "nir_accuracy": correct / total}
