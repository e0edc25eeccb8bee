"""The main job on the embedded default: train a CF network on digits, carry
it through NIR (checking nothing changed on the way), quantize it for Loihi 2,
verify it on the emulator and on Lava over the whole test set, estimate the
energy per inference on every target, and write the report folder
(OUT/report: report.md, report.html with the plots inline, report.json, PNGs).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import api
from .checkpoint import checkpoint_graph, load_checkpoint
from .data import encode, load_dataset, method_for
from .errors import CheckFailedError, RuntimeMissingError
from .fileio import check_output_dir, write_json
from .ir.engine import Engine
from .nir import from_nir
from .quant import quantize
from .report import DemoRecord, EnergyRecord, EnergySummary, RasterSummary, VerifyRecord
from .report import write_report
from .runners.emulator import emulate
from .targets import load_target
from .train import TrainConfig, train
from .verify import calibration_inputs, test_inputs, verify

TARGET = "loihi2"

log = logging.getLogger(__name__)


def run_demo(out_dir="cf2neuro-demo", seed: int = 0, progress: bool = True) -> dict:
    """Train into OUT/checkpoint, export OUT/model.nir, re-import and compare,
    verify on loihi2 (OUT/verify), estimate energy (OUT/energy), report (OUT/report).

    Raises CheckFailedError when the re-imported NIR graph predicts any test
    sample differently from the trained PyTorch model, or verification fails
    (after the report is written, so it can be read).
    """
    out = check_output_dir(out_dir, "the demo's output directory")  # before any work
    t0 = time.perf_counter()
    cfg = TrainConfig(seed=seed)
    ckpt = out / "checkpoint"
    metrics = train(cfg, ckpt, progress=progress)
    exported = api.export(ckpt, out / "model.nir")
    nir_check = _compare_nir(ckpt, Path(exported["path"]), cfg)
    checked = _verify_loihi2(ckpt, out / "verify")
    energy = _energy(ckpt, out / "energy", progress)
    spikes, sample, label = _raster(ckpt)
    summary = {
        "checkpoint": str(ckpt), "nir": exported["path"],
        "model": cfg.model, "data": cfg.data, "timesteps": cfg.timesteps, "seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        **nir_check,
        "verify": checked,
        "energy": energy.to_json(),
        "report": str(out / "report" / "report.html"),
        "total_seconds": round(time.perf_counter() - t0, 2),
    }
    record = DemoRecord.build(
        summary, metrics, VerifyRecord.from_json(checked), energy,
        RasterSummary.of(spikes, sample, label),
        files={"checkpoint": str(ckpt), "nir": exported["path"],
               "verify": str(out / "verify" / "verify.md"),
               "energy": energy.report or "not written", "summary": str(out / "demo.json")})
    write_report(record, out / "report")
    summary["total_seconds"] = round(time.perf_counter() - t0, 2)
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
        result = verify(ckpt, TARGET, runner="lava", report_dir=report_dir)
    except RuntimeMissingError as e:
        log.warning("Lava is not available (%s); verifying on the emulator only", e)
        result = verify(ckpt, TARGET, runner="emulator", report_dir=report_dir)
        result["lava_missing"] = str(e)
        write_report(VerifyRecord.from_json(result), report_dir)  # so verify.md says so too
    return result


def _energy(ckpt: Path, report_dir: Path, progress: bool) -> EnergySummary:
    """Energy per inference on every target (`cf2neuro.energy`), as the report's summary;
    the full energy report goes to `report_dir`. Without that package the report says so."""
    try:
        from .energy import energy_report
    except ImportError as e:
        if e.name != "cf2neuro.energy":  # a broken import inside the package is a bug: raise
            raise
        log.warning("no energy estimate: cf2neuro.energy is not available (%s)", e)
        return EnergySummary.of(None, missing=f"cf2neuro.energy is not available ({e})")
    record = EnergyRecord.from_json(
        energy_report(ckpt, targets="all", runner="emulator", progress=progress))
    write_report(record, report_dir)
    return EnergySummary.of(record, report_path=str(report_dir / "energy.md"))


def _raster(ckpt: Path, sample: int = 0):
    """Each CF layer's spikes [T, neurons] for one test sample on the loihi2 emulator,
    quantized exactly as verify quantizes (calibrated on a slice of the training split)."""
    x, labels = test_inputs(ckpt)
    qgraph = quantize(checkpoint_graph(ckpt), load_target(TARGET),
                      calibration=calibration_inputs(ckpt))
    layers = [n.name for n in qgraph.nodes.values() if n.op in ("CFNeuron", "LIF", "IF", "CubaLIF")]
    res = emulate(qgraph, x[:, sample:sample + 1], probes=layers)
    return {n: np.asarray(res[n])[:, 0] for n in layers}, sample, int(labels[sample])


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
