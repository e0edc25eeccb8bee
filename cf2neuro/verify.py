"""`cf2neuro verify`: float reference vs quantized emulator vs a target's runner (DESIGN §5).

All three run the same test inputs. The report (verify.json, .md, .html)
gives float and quantized accuracy and the drop, argmax agreement, per-layer
spike rates, and, between the emulator and a bit-exact runner, the
exact-match rate of every probed spike train and of the final membranes
(which must be 100 %). `passed` is False when a bound fails: the accuracy
drop over `max_drop` percentage points, or any exact-match rate below 1.

A float target (no ``[numeric]``, e.g. cmos45) is verified without
quantizing: the runner is compared with the float reference, spike for
spike (the runner's outputs must match the reference's; an output spike
that differs is reported with the membrane margin that flipped it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .checkpoint import load_checkpoint, source_graph
from .data import encode, load_dataset, method_for, require_samples
from .device import pick_device
from .errors import ConfigError
from .ir.engine import Engine
from .ir.numerics import FloatNumerics
from .quant import quantization_report, quantize
from .quant.report import quantization_warnings, silence_warnings
from .report import VerifyRecord
from .report import write_report as write_record
from .runners import RunRequest, get_runner
from .runners.emulator import Emulator
from .shards import check_workers, init_distributed, rank_world, run_ranks, run_sharded
from .targets import DEFAULT_TARGET, load_target
from .train import TrainConfig

log = logging.getLogger(__name__)


CALIBRATION_SAMPLES = 256  # training samples that set the input scale when quantizing


DATA_OVERRIDES = ("encoding", "data_root", "data_options")  # what verify/energy may override


def test_inputs(ckpt_dir, data: str | None = None, limit: int | None = None,
                overrides: dict | None = None):
    """The checkpoint's test set as (x [T, N, ...] float, labels [N]) with its own encoding."""
    return split_inputs(ckpt_dir, "test", data, limit, overrides)


def calibration_inputs(ckpt_dir, data: str | None = None, samples: int = CALIBRATION_SAMPLES,
                       overrides: dict | None = None) -> torch.Tensor:
    """The first `samples` of the TRAINING split, encoded: what quantization calibrates on.

    Calibrating on the test inputs a report then scores would leak them; the
    test set stays unseen.
    """
    return split_inputs(ckpt_dir, "train", data, samples, overrides)[0]


def split_inputs(ckpt_dir, split: str, data: str | None = None, limit: int | None = None,
                 overrides: dict | None = None):
    """A split ("train" or "test") as (x [T, N, ...] float, labels [N]), the model's encoding.

    Encoding, data root and data options come from the checkpoint's training
    config; `overrides` ({"encoding", "data_root", "data_options"}) replace them.
    """
    if Path(ckpt_dir).is_file():  # a NIR file: no training config, the defaults
        if data is None:
            raise ConfigError(f"{ckpt_dir} is a NIR file: pass --data (it has no training "
                              f"config naming its data set)")
        cfg = TrainConfig(data=data)
    else:
        _, config, _ = load_checkpoint(ckpt_dir)
        cfg = TrainConfig.from_dict(config.get("train", {}),
                                    f"{Path(ckpt_dir) / 'config.json'} (its 'train' section)")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(DATA_OVERRIDES))
    if unknown:
        raise ConfigError(f"cannot override {unknown}; the data overrides are {DATA_OVERRIDES}")
    cfg = dataclasses.replace(cfg, **overrides)
    name = data or cfg.data
    options = cfg.data_options if name == cfg.data or "data_options" in overrides else {}
    bundle = load_dataset(name, root=cfg.data_root, seed=cfg.seed, **options)
    require_samples(bundle, split)
    dataset = bundle.train if split == "train" else bundle.test
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    xs, ys = zip(*DataLoader(dataset, batch_size=len(dataset)))
    generator = torch.Generator().manual_seed(cfg.seed)
    x = encode(xs[0], cfg.timesteps, method_for(bundle.spec.kind, cfg.encoding), generator)
    return x, ys[0].numpy()


def fit_inputs(graph, x: torch.Tensor) -> torch.Tensor:
    """`x` [T, N, ...] shaped as the graph's input (a NIR file's [64] for digits' [1, 8, 8])."""
    shape = tuple(graph[graph.inputs[0]].shape)
    if tuple(x.shape[2:]) == shape or int(np.prod(shape)) != int(np.prod(x.shape[2:])):
        return x  # equal, or not the same size: the engine says what is wrong
    return x.reshape(*x.shape[:2], *shape)


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


def verify(ckpt_dir, target: str = DEFAULT_TARGET, data: str | None = None,
           runner: str | None = None, limit: int | None = None,
           max_drop: float | None = None, report_dir=None,
           timeout: float | None = None, device: str = "cpu",
           data_overrides: dict | None = None, workers: int = 1,
           peer: str | None = None, dt: float | None = None) -> dict | None:
    """Run float, emulator and runner on the test set; write and return the report.

    `device` is where the float reference and the emulator run ("cuda" for
    big test sets); target runners such as Lava run where they run.
    `timeout` (seconds) bounds the target runner's run (each shard's). `data_overrides`
    replaces the checkpoint's encoding, data root or data options.
    `ckpt_dir` may also be a NIR file (read as framework `peer` ran it, with
    `dt`); its data set is `data`, encoded with the training defaults.

    `workers` splits the target runner's run into that many contiguous shards
    of the test samples, run side by side in runtimes of their own and merged
    (`cf2neuro.shards`); the report is the same as with one. Under torchrun
    (WORLD_SIZE > 1) each rank runs its shard (split over its `workers`) and
    rank 0 gathers them, reports and returns the report; the other ranks
    return None. The emulator and reference runners are not split (they
    already run the whole set at once, on rank 0).
    """
    t0 = time.perf_counter()
    _check_bounds(max_drop, timeout)  # before any work
    workers = check_workers(workers)
    dev = pick_device(device)
    tgt = load_target(target)
    runner = runner or tgt.runner
    run_with = get_runner(runner)
    if runner not in tgt.runners:
        raise ConfigError(f"target {tgt.name} is not simulated by runner {runner!r}; its "
                          f"runners: {', '.join(tgt.runners)}")
    rank, world = rank_world()
    in_process = run_with.name in ("emulator", "reference")  # nothing to split: rank 0 runs it
    if world > 1 and in_process and rank != 0:
        return None
    if rank != 0:  # its shard goes to rank 0, which reports (and warns) for all
        logging.getLogger("cf2neuro").setLevel(logging.ERROR)
    shard = _Shards(workers, world if not in_process else 1)
    created = shard.world > 1 and init_distributed()
    try:
        x, labels = test_inputs(ckpt_dir, data, limit, data_overrides)
        graph = source_graph(ckpt_dir, dt=dt, peer=peer)
        x = fit_inputs(graph, x)
        if tgt.numeric is None:
            report = _verify_float(graph, x, labels, run_with, timeout, dev, shard)
        else:
            calibration = fit_inputs(graph, calibration_inputs(ckpt_dir, data,
                                                               overrides=data_overrides))
            report = _verify_fixed(graph, tgt, x, calibration, labels, run_with, timeout, dev,
                                   max_drop, shard)
            if report is not None:
                report["calibration"] = {"split": "train",
                                         "samples": int(calibration.shape[1])}
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()
    if report is None:  # a torchrun rank other than 0: its shard went to rank 0
        return None
    report = {"target": tgt.name, "runner": runner, "samples": int(len(labels)),
              "timesteps": int(x.shape[0]), **report, "workers": workers,
              **({"ranks": world} if world > 1 else {}),
              "seconds": round(time.perf_counter() - t0, 2)}
    report["warnings"] = _warnings(report)
    for w in report["warnings"]:  # in the output too, not only in the report
        log.warning("%s", w)
    if report_dir is not None:
        write_report(report, Path(report_dir))
    return report


def _check_bounds(max_drop, timeout) -> None:
    """--max-drop a finite number, --timeout a finite number of seconds > 0."""
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if max_drop is not None and not number(max_drop):  # < 0 is allowed: a bound that fails
        raise ConfigError(f"--max-drop must be a finite number of percentage points, "
                          f"got {max_drop!r}; e.g. --max-drop 1")
    if timeout is not None and not (number(timeout) and timeout > 0):
        raise ConfigError(f"--timeout must be a finite number of seconds > 0, got "
                          f"{timeout!r}; leave it out for the default")


def _warnings(report: dict) -> list[str]:
    """Silent layers and saturated formats: numbers that may pass a bound yet mean little."""
    run = "emulator" if report.get("quantized") else "runner"
    return (quantization_warnings(report.get("quantization") or [])
            + silence_warnings(report.get("spike_rates") or {}, run))


class _Shards:
    """How the target runner's run is split: `workers` runtimes per rank, `world` ranks."""

    def __init__(self, workers: int = 1, world: int = 1):
        self.workers, self.world = workers, world


def _run(runner, graph, x, probes, timeout, device=None, shard: _Shards | None = None):
    """The runner on x [T, B, ...], sharded over samples; None on a torchrun rank other than 0."""
    shard = shard or _Shards()
    x = x.numpy()
    dev = str(device) if runner.uses_device and device is not None else None

    with _exported(runner, graph, x, probes, shard) as model_file:
        def run(samples: slice) -> dict:
            req = RunRequest(graph, np.ascontiguousarray(x[:, samples]), tuple(probes), timeout,
                             dev, model_file=model_file)
            return runner.run(req).arrays()

        final = not getattr(runner, "membrane_trace", True)  # Lava: "v:" is [B, ...]
        if shard.world > 1:
            return run_ranks(run, x.shape[1], shard.workers, final)
        return run_sharded(run, x.shape[1], shard.workers, final)


@contextlib.contextmanager
def _exported(runner, graph, x, probes, shard: _Shards):
    """onnxruntime with several workers: export the ONNX file once (any batch), shared by the
    shards (torch's exporter is not thread-safe, and once is enough); else None."""
    if runner.name != "onnxruntime" or shard.workers == 1:
        yield None
        return
    from .backends import get_backend

    export_onnx = get_backend("onnx").load("exporters", ".onnx")
    with tempfile.TemporaryDirectory(prefix="cf2neuro-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(graph, path, timesteps=x.shape[0], probes=tuple(probes))
        yield path


def _verify_fixed(graph, tgt, x, calibration, labels, runner, timeout, dev, max_drop,
                  shard=None) -> dict | None:
    qgraph = quantize(graph, tgt, calibration=calibration)
    runner.refuse(qgraph)  # a graph this runner cannot run (Lava: attention), before any work
    neurons = _neurons(qgraph)
    probes = neurons + [f"v:{n}" for n in neurons]
    run = None
    if runner.name != "emulator":  # first: under torchrun the other ranks only do this
        run = _run(runner, qgraph, x, probes, timeout, shard=shard)
        if run is None:
            return None
    with torch.no_grad():
        ref = Engine(graph, FloatNumerics(device=dev)).run(x, probes=neurons)
    ref = {k: v.cpu().numpy() for k, v in ref.items()}
    deadline = None  # the timeout bounds the target runner, here the emulator itself
    if runner.name == "emulator" and timeout is not None:
        deadline = time.monotonic() + float(timeout)
    emu = Emulator(qgraph, dev).run(x, probes, deadline=deadline)
    run = emu if run is None else run
    float_acc, float_pred = _accuracy(ref["output"], labels)
    quant_acc, quant_pred = _accuracy(emu["output"], labels)
    run_acc, run_pred = _accuracy(run["output"], labels)
    exact = {p: _exact_match(p, emu[p], run[p], len(labels)) for p in ["output", *probes]}
    rates = {}
    for n in neurons:
        r = {"float": _rate(ref[n]), "emulator": _rate(emu[n]), "runner": _rate(run[n])}
        r["emulator_vs_float"] = (r["emulator"] / r["float"] if r["float"]
                                  else float(r["emulator"] == 0))
        rates[n] = r
    drop = 100.0 * (float_acc - quant_acc)
    passed = all(v == 1.0 for v in exact.values()) and (max_drop is None or drop <= max_drop)
    return {
        "quantized": True,
        "float_accuracy": float_acc, "quantized_accuracy": quant_acc, "runner_accuracy": run_acc,
        "accuracy_drop_pp": drop, "max_drop_pp": max_drop,
        "argmax_agreement": float((quant_pred == float_pred).mean()),
        "runner_argmax_agreement": float((run_pred == float_pred).mean()),
        "exact_match": exact, "spike_rates": rates,
        "latency_steps": int(run.get("latency", emu.get("latency", 0))),
        "quantization": quantization_report(qgraph), "passed": bool(passed),
    }


SPIKE_AGREEMENT_MIN = 0.999  # float runners: rounding may flip a spike at a threshold


def _verify_float(graph, x, labels, runner, timeout, dev, shard=None) -> dict | None:
    """A float target: the runner against the float reference, no quantization."""
    neurons = _neurons(graph)
    run = None
    if runner.name != "reference":  # first: under torchrun the other ranks only do this
        run = _run(runner, graph, x, neurons, timeout, dev, shard)
        if run is None:
            return None
    with torch.no_grad():
        ref = Engine(graph, FloatNumerics(device=dev)).run(
            x, probes=neurons + [f"v:{n}" for n in neurons])
    ref = {k: v.cpu().numpy() for k, v in ref.items()}
    run = ref if run is None else run
    float_acc, float_pred = _accuracy(ref["output"], labels)
    run_acc, run_pred = _accuracy(run["output"], labels)
    agree = {p: float((np.asarray(run[p]) == ref[p]).mean()) for p in ["output", *neurons]}
    exact = {p: _exact_match(p, ref[p], run[p], len(labels)) for p in ["output", *neurons]}
    flips = _flips(graph, ref, run, neurons)
    rates = {n: {"float": _rate(ref[n]), "runner": _rate(run[n])} for n in neurons}
    argmax = float((run_pred == float_pred).mean())
    passed = argmax == 1.0 and min(agree.values()) >= SPIKE_AGREEMENT_MIN
    return {
        "quantized": False,
        "float_accuracy": float_acc, "quantized_accuracy": float_acc, "runner_accuracy": run_acc,
        "accuracy_drop_pp": 0.0, "max_drop_pp": None,
        "argmax_agreement": 1.0, "runner_argmax_agreement": argmax,
        "exact_match": exact, "spike_agreement": agree,
        "spike_agreement_min": SPIKE_AGREEMENT_MIN, "flips": flips, "spike_rates": rates,
        "latency_steps": int(run.get("latency", 0)), "quantization": [],
        "passed": bool(passed),
    }


def _flips(graph, ref: dict, run: dict, neurons: list[str], keep: int = 20) -> list[dict]:
    """Spikes the runner emits differently from the reference, with the reference's margin.

    The margin is how far the reference's pre-fire potential u = v + n·θ was
    from the threshold level it crossed or missed, in units of θ: a flip at
    a margin of ~1e-7 is float rounding, not a wrong model.
    """
    out = []
    for n in neurons:
        a, b = ref[n], np.asarray(run[n])
        if a.shape != b.shape:
            continue
        theta = float(graph[n].attrs.get("threshold", 1.0))
        u = (ref[f"v:{n}"] + a * theta) / theta
        for idx in np.argwhere(a != b)[:keep - len(out)]:
            idx = tuple(int(i) for i in idx)
            level = np.floor(u[idx]) if u[idx] >= 0 else np.ceil(u[idx])
            margin = float(min(abs(u[idx] - level), abs(u[idx] - level - np.sign(u[idx]))))
            out.append({"probe": n, "step": idx[0], "sample": idx[1], "index": list(idx[2:]),
                        "reference": float(a[idx]), "runner": float(b[idx]), "margin": margin})
        if len(out) >= keep:
            break
    return out


def write_report(report: dict, directory: Path) -> dict:
    """verify.json (the dict as is), verify.md and verify.html; cf2neuro.report renders them."""
    return write_record(VerifyRecord.from_json(report), directory)
