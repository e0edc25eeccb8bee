"""The demo's record (report.json): the whole job's numbers in one typed place.

    rec = DemoRecord.build(summary, metrics, VerifyRecord.from_json(verified),
                           EnergySummary.of(EnergyRecord.from_json(estimate), report_path),
                           RasterSummary.of(spikes, sample, label), files)

report.json keys (`REPORT_KEYS`):

- ``title``, ``passed``, ``seconds`` (the whole job)
- ``pipeline``: model, data, timesteps, seed, checkpoint, nir, target
- ``training``: test_accuracy, train_seconds, epochs, history [{epoch, loss, test_accuracy}]
- ``nir``: path, agreement, accuracy (the NIR round trip)
- ``verification``: target, runner, samples, timesteps, float/quantized/runner accuracy,
  accuracy_drop_pp, max_drop_pp, argmax_agreement, runner_argmax_agreement, exact_match
  {probe: rate}, min_exact_match, latency_steps, spike_rates, passed (+ lava_missing)
- ``energy``: available, targets {name: {joules_per_inference, by_kind,
  ann_joules_per_inference, measured, deployable}}, snn_vs_ann_cmos45 (or None),
  report (the energy report's path), missing (why not), assumptions
- ``raster``: sample, label, timesteps, layers {name: {neurons, positive, negative}}, description
- ``assumptions``: list of sentences
- ``plots``: {training_curve, accuracy, spike_rates, spike_raster[, energy]: file name}
- ``files``: where the other outputs of the job are
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .records import EnergyRecord, Record, VerifyRecord

REPORT_KEYS = ("title", "passed", "seconds", "pipeline", "training", "nir", "verification",
               "energy", "raster", "assumptions", "plots", "files")

PLOT_FILES = {"training_curve": "training_curve.png", "accuracy": "accuracy.png",
              "spike_rates": "spike_rates.png", "spike_raster": "spike_raster.png",
              "energy": "energy.png"}

# the verify keys report.json repeats (verify.json beside it has them all)
VERIFY_KEYS = ("target", "runner", "samples", "timesteps", "float_accuracy",
               "quantized_accuracy", "runner_accuracy", "accuracy_drop_pp", "max_drop_pp",
               "argmax_agreement", "runner_argmax_agreement", "exact_match", "spike_rates",
               "latency_steps", "passed", "lava_missing")


def runner_label(runner: str) -> str:
    return {"lava": "Lava", "emulator": "emulator"}.get(runner, runner)


@dataclass
class TargetSummary(Record):
    joules_per_inference: float
    by_kind: dict[str, float] = field(default_factory=dict)
    ann_joules_per_inference: float | None = None
    measured: bool | None = None
    deployable: bool = True
    extra: dict = field(default_factory=dict)


@dataclass
class EnergySummary(Record):
    """The demo's view of the energy report: per target the total and its split by kind."""

    _NESTED: ClassVar[dict] = {"targets": ("dict", TargetSummary)}

    available: bool
    targets: dict[str, TargetSummary] = field(default_factory=dict)
    snn_vs_ann_cmos45: float | None = None
    missing: str | None = None
    report: str | None = None
    assumptions: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, energy: EnergyRecord | None, report_path: str | None = None,
           missing: str | None = None) -> "EnergySummary":
        if energy is None or not energy.targets:
            why = missing or ("the energy step did not run" if energy is None
                              else "the energy report has no targets")
            return cls(available=False, missing=why, report=report_path)
        targets = {name: TargetSummary(t.total_joules_per_inference, dict(t.by_kind),
                                       t.ann_joules_per_inference, t.measured, t.deployable)
                   for name, t in energy.targets.items()}
        cmos45 = energy.targets.get("cmos45")
        notes = [f"Energy, {name}: {a}" for name, t in energy.targets.items()
                 for a in t.assumptions if a]
        return cls(available=True, targets=targets,
                   snn_vs_ann_cmos45=cmos45.snn_vs_ann if cmos45 else None,
                   report=report_path, assumptions=notes)

    def ann_joules(self, target: str = "cmos45") -> float | None:
        t = self.targets.get(target)
        return t.ann_joules_per_inference if t else None


@dataclass
class RasterSummary(Record):
    """One test sample's spikes per layer; `spikes` draws the raster and stays out of JSON."""

    sample: int
    label: int | None
    timesteps: int
    layers: dict[str, dict[str, int]]
    description: str
    spikes: dict = field(default_factory=dict, repr=False, metadata={"json": False})
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, spikes: dict, sample: int, label) -> "RasterSummary":
        layers = {}
        for name, s in spikes.items():
            a = np.asarray(s)
            layers[name] = {"neurons": int(a[0].size), "positive": int((a > 0).sum()),
                            "negative": int((a < 0).sum())}
        steps = int(np.asarray(next(iter(spikes.values()))).shape[0]) if spikes else 0
        desc = (f"Test sample {sample} (label {label}) on the emulator (the quantized model; "
                f"Lava produces the same spikes bit for bit), {steps} time steps. "
                + "; ".join(f"{n}: {v['positive']} positive and {v['negative']} negative "
                            f"spikes over {v['neurons']} neurons" for n, v in layers.items())
                + ".")
        return cls(int(sample), None if label is None else int(label), steps, layers, desc,
                   dict(spikes))


@dataclass
class Pipeline(Record):
    model: str | None
    data: str | None
    timesteps: int | None
    seed: int | None
    checkpoint: str | None
    nir: str | None
    target: str
    extra: dict = field(default_factory=dict)


@dataclass
class Training(Record):
    test_accuracy: float | None
    train_seconds: float
    epochs: int
    history: list[dict]
    extra: dict = field(default_factory=dict)


@dataclass
class NirCheck(Record):
    path: str | None
    agreement: float | None  # fraction of test predictions unchanged by the round trip
    accuracy: float | None
    extra: dict = field(default_factory=dict)


@dataclass
class DemoRecord(Record):
    """The main job: training, NIR round trip, verification, energy, one raster."""

    STEM: ClassVar[str] = "report"
    _NESTED: ClassVar[dict] = {"pipeline": ("one", Pipeline), "training": ("one", Training),
                               "nir": ("one", NirCheck), "verification": ("one", VerifyRecord),
                               "energy": ("one", EnergySummary),
                               "raster": ("one", RasterSummary)}

    title: str
    passed: bool
    seconds: float
    pipeline: Pipeline
    training: Training
    nir: NirCheck
    verification: VerifyRecord
    energy: EnergySummary
    raster: RasterSummary
    assumptions: list[str]
    plots: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = super().to_json()
        full = self.verification.to_json()
        out["verification"] = {k: full[k] for k in VERIFY_KEYS if k in full}
        out["verification"]["min_exact_match"] = self.verification.min_exact_match
        return out

    @classmethod
    def build(cls, summary: dict, metrics: dict, verify: VerifyRecord, energy: EnergySummary,
              raster: RasterSummary, files: dict | None = None) -> "DemoRecord":
        """From the job's results: run_demo's summary, train's metrics, and the records."""
        history = [{"epoch": int(h["epoch"]), "loss": float(h["loss"]),
                    "test_accuracy": h.get("test_accuracy")} for h in metrics.get("history", [])]
        nir_ok = summary.get("nir_agreement", 1.0) == 1.0
        return cls(
            title=f"cf2neuro demo: {summary.get('model', '?')} on {summary.get('data', '?')}, "
                  f"{verify.target} via {runner_label(verify.runner)}",
            passed=bool(verify.passed and nir_ok),
            seconds=float(summary.get("total_seconds", 0.0)),
            pipeline=Pipeline(*(summary.get(k) for k in ("model", "data", "timesteps", "seed",
                                                         "checkpoint", "nir")), verify.target),
            training=Training(metrics.get("test_accuracy"),
                              float(metrics.get("train_seconds", 0.0)), len(history), history),
            nir=NirCheck(summary.get("nir"), summary.get("nir_agreement"),
                         summary.get("nir_accuracy")),
            verification=verify, energy=energy, raster=raster,
            assumptions=assumptions(verify, energy),
            plots={k: f for k, f in PLOT_FILES.items() if k != "energy" or energy.available},
            files=dict(files or {}))


def assumptions(v: VerifyRecord, energy: EnergySummary) -> list[str]:
    """What a reader must know to read the numbers right, as sentences."""
    out = [
        f"Accuracies are measured on the embedded digits test set ({v.samples} samples), "
        f"T = {v.timesteps or '?'} steps; the prediction is the argmax of the output "
        f"summed over the steps.",
        f"The quantized model uses {v.target}'s fixed-point format; cf2neuro's emulator "
        f"runs those integers bit-exactly. The quantization scales are calibrated on "
        f"{v.calibration_samples or '?'} samples of the training split; the test set stays "
        f"unseen.",
    ]
    if v.runner == "lava":
        out.append("Lava runs on the CPU (Lava's Loihi 2 simulation of the same fixed-point "
                   "processes), not on Loihi 2 hardware: no chip time or power was measured.")
    if v.lava_missing:
        out.append(f"Lava did not run ({v.lava_missing}); the runner column repeats "
                   f"the emulator.")
    out += [
        f"Latency is the pipeline latency in time steps (one per synaptic layer on Loihi) that "
        f"the runner removed from its outputs ({v.latency_steps} steps); it is not a "
        f"wall-clock time.",
        "Spike rates are mean |spike| per neuron and time step; a graded spike counts by its "
        "magnitude.",
    ]
    if energy.available:
        out += [
            "Energy is an estimate, not a measurement: operation counts measured from a run on "
            "the test set × each target's per-operation energies (the target files cite the "
            "source of every constant).",
            "The loihi2 per-operation energies are an assumption: Intel publishes no per-"
            "operation figures for Loihi 2, so the published Loihi (1) figures are used as an "
            "upper bound (see targets/loihi2.toml).",
        ]
        out += [a for a in energy.assumptions if a not in out]
    else:
        out.append(f"No energy estimate in this report: {energy.missing}.")
    return out


__all__ = ["REPORT_KEYS", "PLOT_FILES", "VERIFY_KEYS", "DemoRecord", "EnergySummary",
           "TargetSummary", "RasterSummary", "Pipeline", "Training", "NirCheck", "runner_label",
           "assumptions"]
