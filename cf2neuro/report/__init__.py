"""The main job's report folder: plots (PNG), report.md, report.html (images
inline), report.json.

    report = build_report(summary, metrics, verify_report, energy_summary(energy_result),
                          raster_summary(spikes, sample, label))
    write_report(report, directory, metrics["history"], spikes, ann_cmos45_joules)

`build_report` gathers the numbers into the report.json dict (keys below);
`write_report` draws the plots into `directory` and writes the documents.
report.json keys:

- ``title``, ``passed``, ``seconds`` (the whole job)
- ``pipeline``: model, data, timesteps, seed, checkpoint, nir, target
- ``training``: test_accuracy, train_seconds, epochs,
  history [{epoch, loss, test_accuracy}]
- ``nir``: path, agreement, accuracy (the NIR round trip)
- ``verification``: target, runner, samples, float/quantized/runner accuracy,
  accuracy_drop_pp, argmax_agreement, runner_argmax_agreement, exact_match
  {probe: rate}, min_exact_match, latency_steps, spike_rates, passed
  (+ lava_missing when Lava could not run)
- ``energy``: available, targets {name: {joules_per_inference, by_kind,
  ann_joules_per_inference, measured (constants published or assumed),
  deployable}}, snn_vs_ann_cmos45 (or None), report (path of the energy
  report), missing (why not), assumptions (per target, from the energy report)
- ``raster``: sample, label, layers {name: {neurons, positive, negative}}, description
- ``assumptions``: list of sentences
- ``plots``: {training_curve, accuracy, spike_rates, spike_raster[, energy]: file name}
- ``files``: where the other outputs of the job are
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .document import markdown, to_html, write_documents

REPORT_KEYS = ("title", "passed", "seconds", "pipeline", "training", "nir", "verification",
               "energy", "raster", "assumptions", "plots", "files")

PLOT_FILES = {"training_curve": "training_curve.png", "accuracy": "accuracy.png",
              "spike_rates": "spike_rates.png", "spike_raster": "spike_raster.png",
              "energy": "energy.png"}

_VERIFY_KEYS = ("target", "runner", "samples", "timesteps", "float_accuracy",
                "quantized_accuracy", "runner_accuracy", "accuracy_drop_pp", "max_drop_pp",
                "argmax_agreement", "runner_argmax_agreement", "exact_match", "spike_rates",
                "latency_steps", "passed", "lava_missing")


def runner_label(runner: str) -> str:
    return {"lava": "Lava", "emulator": "emulator"}.get(runner, runner)


def energy_summary(energy: dict | None, missing: str | None = None,
                   report_path: str | None = None) -> dict:
    """The report's view of `cf2neuro.energy.energy_report`'s result: per target the
    total J per inference and its split by kind, and the SNN/ANN ratio on cmos45."""
    if energy is None:
        return {"available": False, "targets": {}, "snn_vs_ann_cmos45": None,
                "missing": missing or "the energy step did not run", "report": None}
    per_target = energy.get("targets", energy)
    targets, ratio, notes = {}, None, []
    for name, t in per_target.items():
        if not isinstance(t, dict) or "total_joules_per_inference" not in t:
            continue
        by_kind = {k: _joules_of(v) for k, v in (t.get("by_kind") or {}).items()}
        targets[name] = {"joules_per_inference": float(t["total_joules_per_inference"]),
                         "by_kind": {k: v for k, v in by_kind.items() if v is not None},
                         "ann_joules_per_inference": ann_joules(energy, name),
                         "measured": t.get("measured"), "deployable": t.get("deployable", True)}
        notes += [f"Energy, {name}: {a}" for a in t.get("assumptions") or [] if a]
        r = _snn_vs_ann(t)
        if name == "cmos45" and r is not None:
            ratio = r
    return {"available": bool(targets), "targets": targets, "snn_vs_ann_cmos45": ratio,
            "missing": None if targets else (missing or "the energy report has no targets"),
            "report": report_path, "assumptions": notes}


def _joules_of(v):
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        for k in ("joules_per_inference", "total_joules_per_inference", "joules"):
            if isinstance(v.get(k), (int, float)):
                return float(v[k])
    return None


def _snn_vs_ann(t: dict):
    for k in ("snn_vs_ann", "snn_over_ann", "snn_to_ann_ratio", "ratio_snn_ann"):
        if isinstance(t.get(k), (int, float)):
            return float(t[k])
    ann = t.get("ann") if isinstance(t.get("ann"), dict) else {}
    ann_j = t.get("ann_joules_per_inference", ann.get("joules_per_inference",
                                                       ann.get("total_joules_per_inference")))
    if isinstance(ann_j, (int, float)) and ann_j > 0:
        return float(t["total_joules_per_inference"]) / float(ann_j)
    return None


def ann_joules(energy: dict | None, target: str = "cmos45"):
    """The ANN comparison point on `target` (J per inference), when the energy report has one."""
    if not energy:
        return None
    t = energy.get("targets", energy).get(target)
    if not isinstance(t, dict):
        return None
    ann = t.get("ann") if isinstance(t.get("ann"), dict) else {}
    v = t.get("ann_joules_per_inference", ann.get("joules_per_inference",
                                                  ann.get("total_joules_per_inference")))
    if isinstance(v, (int, float)):
        return float(v)
    r = _snn_vs_ann(t)
    return float(t["total_joules_per_inference"]) / r if r else None


def raster_summary(spikes: dict, sample: int, label) -> dict:
    layers = {}
    for name, s in spikes.items():
        a = np.asarray(s)
        layers[name] = {"neurons": int(a[0].size), "positive": int((a > 0).sum()),
                        "negative": int((a < 0).sum())}
    steps = int(np.asarray(next(iter(spikes.values()))).shape[0]) if spikes else 0
    desc = (f"Test sample {sample} (label {label}) on the emulator (the quantized model; Lava "
            f"produces the same spikes bit for bit), {steps} time steps. "
            + "; ".join(f"{n}: {v['positive']} positive and {v['negative']} negative spikes "
                        f"over {v['neurons']} neurons" for n, v in layers.items()) + ".")
    return {"sample": int(sample), "label": None if label is None else int(label),
            "timesteps": steps, "layers": layers, "description": desc}


def assumptions(verify: dict, energy: dict) -> list[str]:
    runner = verify["runner"]
    out = [
        f"Accuracies are measured on the embedded digits test set ({verify['samples']} samples), "
        f"T = {verify.get('timesteps', '?')} steps; the prediction is the argmax of the output "
        f"summed over the steps.",
        f"The quantized model uses {verify['target']}'s fixed-point format; cf2neuro's emulator "
        f"runs those integers bit-exactly. The quantization scales are calibrated on "
        f"{verify.get('calibration', {}).get('samples', '?')} samples of the training split; "
        f"the test set stays unseen.",
    ]
    if runner == "lava":
        out.append("Lava runs on the CPU (Lava's Loihi 2 simulation of the same fixed-point "
                   "processes), not on Loihi 2 hardware: no chip time or power was measured.")
    if verify.get("lava_missing"):
        out.append(f"Lava did not run ({verify['lava_missing']}); the runner column repeats "
                   f"the emulator.")
    out += [
        f"Latency is the pipeline latency in time steps (one per synaptic layer on Loihi) that "
        f"the runner removed from its outputs ({verify['latency_steps']} steps); it is not a "
        f"wall-clock time.",
        "Spike rates are mean |spike| per neuron and time step; a graded spike counts by its "
        "magnitude.",
    ]
    if energy["available"]:
        out += [
            "Energy is an estimate, not a measurement: operation counts measured from a run on "
            "the test set × each target's per-operation energies (the target files cite the "
            "source of every constant).",
            "The loihi2 per-operation energies are an assumption: Intel publishes no per-"
            "operation figures for Loihi 2, so the published Loihi (1) figures are used as an "
            "upper bound (see targets/loihi2.toml).",
        ]
        out += [a for a in energy.get("assumptions", []) if a not in out]
    else:
        out.append(f"No energy estimate in this report: {energy.get('missing')}.")
    return out


def build_report(summary: dict, metrics: dict, verify: dict, energy: dict, raster: dict,
                 files: dict | None = None) -> dict:
    """The report.json dict from the job's results (see the module docstring for keys).

    `energy` is `energy_summary(...)`'s dict; `raster` is `raster_summary(...)`'s.
    """
    history = [{"epoch": int(h["epoch"]), "loss": float(h["loss"]),
                "test_accuracy": h.get("test_accuracy")} for h in metrics.get("history", [])]
    v = {k: verify[k] for k in _VERIFY_KEYS if k in verify}
    v["min_exact_match"] = min(verify["exact_match"].values()) if verify["exact_match"] else None
    plots = {k: f for k, f in PLOT_FILES.items() if k != "energy" or energy["available"]}
    nir_ok = summary.get("nir_agreement", 1.0) == 1.0
    return {
        "title": f"cf2neuro demo: {summary.get('model', '?')} on {summary.get('data', '?')}, "
                 f"{verify['target']} via {runner_label(verify['runner'])}",
        "passed": bool(verify["passed"] and nir_ok),
        "seconds": float(summary.get("total_seconds", 0.0)),
        "pipeline": {k: summary.get(k) for k in ("model", "data", "timesteps", "seed",
                                                  "checkpoint", "nir")}
                    | {"target": verify["target"]},
        "training": {"test_accuracy": metrics.get("test_accuracy"),
                     "train_seconds": float(metrics.get("train_seconds", 0.0)),
                     "epochs": len(history), "history": history},
        "nir": {"path": summary.get("nir"), "agreement": summary.get("nir_agreement"),
                "accuracy": summary.get("nir_accuracy")},
        "verification": v,
        "energy": energy,
        "raster": raster,
        "assumptions": assumptions(verify, energy),
        "plots": plots,
        "files": dict(files or {}),
    }


def draw_plots(report: dict, directory, history: list, spikes: dict,
               ann_cmos45_joules: float | None = None) -> dict:
    """Draw every plot the report names into `directory`; return {name: path}."""
    from . import plots as P

    directory = Path(directory)
    v, runner = report["verification"], runner_label(report["verification"]["runner"])
    files = report["plots"]
    out = {
        "training_curve": P.plot_training_curve(
            history, directory / files["training_curve"],
            title=f"Training: {report['pipeline']['model']} on {report['pipeline']['data']}"),
        "accuracy": P.plot_accuracy(
            {"float (PyTorch)": v["float_accuracy"], "quantized (emulator)":
             v["quantized_accuracy"], runner: v["runner_accuracy"]},
            directory / files["accuracy"],
            title=f"Test accuracy: float vs quantized ({v['target']}) vs {runner}"),
        "spike_rates": P.plot_spike_rates(
            v["spike_rates"], directory / files["spike_rates"],
            {"float": "float (PyTorch)", "emulator": "quantized (emulator)", "runner": runner},
            title="Spike rate per CF layer: float vs emulator vs " + runner),
        "spike_raster": P.plot_spike_raster(
            spikes, directory / files["spike_raster"],
            title=f"Spike raster: test sample {report['raster']['sample']} "
                  f"(label {report['raster']['label']}), quantized model"),
    }
    if "energy" in files:
        joules = {n: t["joules_per_inference"] for n, t in report["energy"]["targets"].items()}
        ref = {"ANN on cmos45": ann_cmos45_joules} if ann_cmos45_joules else None
        out["energy"] = P.plot_energy(joules, directory / files["energy"], reference=ref,
                                      title="Estimated energy per inference by target")
    return out


def write_report(report: dict, directory, history: list, spikes: dict,
                 ann_cmos45_joules: float | None = None) -> dict:
    """Draw the plots, then write report.json, report.md, report.html; return the paths."""
    paths = {k: str(p) for k, p in draw_plots(report, directory, history, spikes,
                                              ann_cmos45_joules).items()}
    return {**paths, **write_documents(report, directory)}


__all__ = ["REPORT_KEYS", "PLOT_FILES", "build_report", "write_report", "draw_plots",
           "energy_summary", "raster_summary", "ann_joules", "markdown", "to_html",
           "write_documents"]
