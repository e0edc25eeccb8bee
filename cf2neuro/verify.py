"""`cf2neuro verify`: float reference vs quantized emulator vs a target's runner (DESIGN §5).

All three run the same test inputs. The report (verify.json, verify.md)
gives float and quantized accuracy and the drop, argmax agreement, per-layer
spike rates, and, between the emulator and a bit-exact runner, the
exact-match rate of every probed spike train and of the final membranes
(which must be 100 %). `passed` is False when a bound fails: the accuracy
drop over `max_drop` percentage points, or any exact-match rate below 1.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .api import RUNNERS, checkpoint_graph
from .checkpoint import load_checkpoint
from .data import encode, load_dataset, method_for
from .device import pick_device
from .errors import ConfigError
from .fileio import atomic_path, write_json
from .ir.engine import Engine
from .ir.numerics import FloatNumerics
from .quant import quantization_report, quantize
from .runners.emulator import emulate
from .targets import load_target
from .train import TrainConfig

log = logging.getLogger(__name__)


def test_inputs(ckpt_dir, data: str | None = None, limit: int | None = None):
    """The checkpoint's test set as (x [T, N, ...] float, labels [N]) with its own encoding."""
    _, config, _ = load_checkpoint(ckpt_dir)
    cfg = TrainConfig.from_dict(config.get("train", {}))
    name = data or cfg.data
    bundle = load_dataset(name, root=cfg.data_root, seed=cfg.seed,
                          **(cfg.data_options if name == cfg.data else {}))
    dataset = bundle.test
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    xs, ys = zip(*DataLoader(dataset, batch_size=len(dataset)))
    generator = torch.Generator().manual_seed(cfg.seed)
    x = encode(xs[0], cfg.timesteps, method_for(bundle.spec.kind, cfg.encoding), generator)
    return x, ys[0].numpy()


def _neurons(graph) -> list[str]:
    return [n.name for n in graph.nodes.values() if n.op in ("CFNeuron", "LIF", "IF", "CubaLIF")]


def _accuracy(output: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    pred = np.asarray(output).sum(axis=0).reshape(len(labels), -1).argmax(-1)
    return float((pred == labels).mean()), pred


def _rate(spikes: np.ndarray) -> float:
    """Mean spike magnitude per neuron and step (graded spikes count as such)."""
    return float(np.abs(np.asarray(spikes, dtype=np.float64)).mean())


def _exact_match(probe: str, emulated, ran, samples: int) -> float:
    """Fraction of samples whose whole probe (every step, every neuron) is identical."""
    a, b = np.asarray(emulated), np.asarray(ran)
    if probe.startswith("v:") and a.ndim == b.ndim + 1:
        a = a[-1]  # the emulator keeps the membrane trace; runners report the final state
    if a.shape != b.shape:
        return 0.0
    same = a == b
    if not probe.startswith("v:"):  # [T, B, ...] -> per sample over all steps
        same = np.moveaxis(same, 0, -1)
    return float(same.reshape(samples, -1).all(axis=1).mean())


def verify(ckpt_dir, target: str = "loihi2", data: str | None = None, runner: str | None = None,
           limit: int | None = None, max_drop: float | None = None, report_dir=None,
           timeout: float | None = None, device: str = "cpu") -> dict:
    """Run float, emulator and runner on the test set; write and return the report.

    `device` is where the float reference and the emulator run ("cuda" for
    big test sets); target runners such as Lava run where they run.
    """
    t0 = time.perf_counter()
    dev = pick_device(device)
    tgt = load_target(target)
    runner = runner or tgt.runner
    if runner not in RUNNERS:
        raise ConfigError(f"runner {runner!r} is not available; available: {sorted(RUNNERS)}")
    x, labels = test_inputs(ckpt_dir, data, limit)
    graph = checkpoint_graph(ckpt_dir)
    qgraph = quantize(graph, tgt, calibration=x)
    neurons = _neurons(qgraph)
    probes = neurons + [f"v:{n}" for n in neurons]

    with torch.no_grad():
        ref = Engine(graph, FloatNumerics(device=dev)).run(x, probes=neurons)
    ref = {k: v.cpu() for k, v in ref.items()}
    emu = emulate(qgraph, x, probes=probes, device=dev)
    if runner == "emulator":
        run = emu
    else:
        kwargs = {"timeout": timeout} if timeout is not None else {}
        run = RUNNERS[runner](qgraph, x.numpy(), probes, tgt.name, **kwargs)

    float_acc, float_pred = _accuracy(ref["output"].numpy(), labels)
    quant_acc, quant_pred = _accuracy(emu["output"], labels)
    run_acc, run_pred = _accuracy(run["output"], labels)
    exact = {p: _exact_match(p, emu[p], run[p], len(labels)) for p in ["output", *probes]}
    rates = {}
    for n in neurons:
        r = {"float": _rate(ref[n].numpy()), "emulator": _rate(emu[n]), "runner": _rate(run[n])}
        r["emulator_vs_float"] = r["emulator"] / r["float"] if r["float"] else float(r["emulator"] == 0)
        rates[n] = r
    drop = 100.0 * (float_acc - quant_acc)
    passed = all(v == 1.0 for v in exact.values()) and (max_drop is None or drop <= max_drop)
    report = {
        "target": tgt.name, "runner": runner, "samples": int(len(labels)),
        "timesteps": int(x.shape[0]),
        "float_accuracy": float_acc, "quantized_accuracy": quant_acc, "runner_accuracy": run_acc,
        "accuracy_drop_pp": drop, "max_drop_pp": max_drop,
        "argmax_agreement": float((quant_pred == float_pred).mean()),
        "runner_argmax_agreement": float((run_pred == float_pred).mean()),
        "exact_match": exact, "spike_rates": rates,
        "latency_steps": int(run.get("latency", emu.get("latency", 0))),
        "quantization": quantization_report(qgraph),
        "seconds": round(time.perf_counter() - t0, 2), "passed": bool(passed),
    }
    if report_dir is not None:
        write_report(report, Path(report_dir))
    return report


def write_report(report: dict, directory: Path) -> None:
    write_json(directory / "verify.json", report)
    with atomic_path(directory / "verify.md") as tmp:
        tmp.write_text(markdown(report))


def markdown(r: dict) -> str:
    lines = [
        f"# Verification on {r['target']} ({r['runner']} runner)", "",
        f"{r['samples']} test samples, T = {r['timesteps']}, pipeline latency "
        f"{r['latency_steps']} steps (removed).", "",
        "| | accuracy | argmax agreement with float |", "|---|---|---|",
        f"| float reference | {100 * r['float_accuracy']:.2f} % | – |",
        f"| quantized (emulator) | {100 * r['quantized_accuracy']:.2f} % | "
        f"{100 * r['argmax_agreement']:.2f} % |",
        f"| {r['runner']} runner | {100 * r['runner_accuracy']:.2f} % | "
        f"{100 * r['runner_argmax_agreement']:.2f} % |", "",
        f"Accuracy drop (float - quantized): **{r['accuracy_drop_pp']:.2f} pp**"
        + (f" (bound {r['max_drop_pp']} pp)" if r["max_drop_pp"] is not None else "") + ".", "",
        "## Spike rates per layer (mean |spike| per neuron and step)", "",
        "| layer | float | emulator | runner | emulator / float |", "|---|---|---|---|---|",
        *[f"| {n} | {v['float']:.4f} | {v['emulator']:.4f} | {v['runner']:.4f} | "
          f"{v['emulator_vs_float']:.3f} |" for n, v in r["spike_rates"].items()], "",
        "## Emulator vs runner: exact match per sample", "",
        "| probe | exact match |", "|---|---|",
        *[f"| {p} | {100 * v:.2f} % |" for p, v in r["exact_match"].items()], "",
        f"**{'PASSED' if r['passed'] else 'FAILED'}**", "",
    ]
    return "\n".join(lines)
