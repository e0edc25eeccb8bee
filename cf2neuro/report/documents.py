"""What each report says: a function record -> Document, for verify, energy and the demo.

The numbers are formatted here and only here (with `units`), so verify.md,
verify.html and the CLI read the same digits.
"""

from __future__ import annotations

from .demo_record import DemoRecord
from .document import Bullets, Document, Heading, Image, Paragraph, Table
from .records import CompareRecord, EnergyRecord, TargetEnergy, VerifyRecord
from .units import MISSING, format_joules, format_percent, format_pp, format_ratio

ENERGY_PLOT = "energy.png"


def _verdict(passed: bool) -> str:
    return f"**{'PASSED' if passed else 'FAILED'}**"


def _rate(v) -> str:
    return MISSING if v is None else f"{float(v):.4f}"


def _rate_ratio(v) -> str:
    return MISSING if v is None else f"{float(v):.3f}"


# ---- verify -----------------------------------------------------------------------------

def accuracy_table(r: VerifyRecord) -> Table:
    rows = [["float reference", format_percent(r.float_accuracy), MISSING]]
    if r.quantized is not False:
        rows.append(["quantized (emulator)", format_percent(r.quantized_accuracy),
                     format_percent(r.argmax_agreement)])
    rows.append([f"{r.runner} runner", format_percent(r.runner_accuracy),
                 format_percent(r.runner_argmax_agreement)])
    return Table(["", "accuracy", "argmax agreement with float"], rows, "lrr")


def spike_rates_table(r: VerifyRecord) -> Table:
    """Per layer: float and runner, and the emulator's where there is one (fixed point)."""
    emulator = r.quantized is not False
    header = ["layer", "float", *(["emulator"] if emulator else []), f"{r.runner} runner",
              *(["emulator / float"] if emulator else ["runner / float"])]
    rows = []
    for layer, x in r.spike_rates.items():
        if emulator:
            rows.append([layer, _rate(x.get("float")), _rate(x.get("emulator")),
                         _rate(x.get("runner")), _rate_ratio(x.get("emulator_vs_float"))])
        else:
            f, run = x.get("float"), x.get("runner")
            rows.append([layer, _rate(f), _rate(run),
                         _rate_ratio(run / f if f else None)])
    return Table(header, rows, "lrrrr")


def exact_match_table(r: VerifyRecord) -> Table:
    return Table(["probe", "exact match"],
                 [[p, format_percent(v)] for p, v in r.exact_match.items()], "lr")


def quantization_table(r: VerifyRecord) -> Table:
    def num(q, key, fmt):
        return fmt.format(q[key]) if isinstance(q.get(key), (int, float)) else MISSING

    rows = [[q.get("node", "?"), q.get("op", "?"), num(q, "scale", "{:.4g}"),
             num(q, "weight_exp", "{}"),
             format_percent(q["clipped_fraction"]) if "clipped_fraction" in q else MISSING,
             (f"{q['round_err_max']:.4f} / {q['round_err_mean']:.4f}"
              if "round_err_max" in q and "round_err_mean" in q else MISSING),
             num(q, "vth", "{}"), "; ".join(q.get("notes") or []) or MISSING]
            for q in r.quantization]
    return Table(["node", "op", "scale", "weight exp", "clipped", "rounding error max / mean",
                  "threshold", "notes"], rows, "llrrrrrl")


def flips_table(r: VerifyRecord) -> Table:
    return Table(["probe", "step", "sample", "neuron", "reference", "runner", "margin (θ)"],
                 [[f.probe, str(f.step), str(f.sample),
                   ", ".join(str(i) for i in f.index) or MISSING,
                   f"{f.reference:g}", f"{f.runner:g}", f"{f.margin:.3g}"] for f in r.flips or []],
                 "lrrrrrr")


def verify_document(r: VerifyRecord) -> Document:
    fixed = r.quantized is not False
    split = (r.calibration or {}).get("split", "train")
    how = (f"Quantized for {r.target}'s fixed-point format, calibrated on "
           f"{r.calibration_samples if r.calibration_samples is not None else '?'} samples of "
           f"the {'training' if split == 'train' else split} split (the test set stays "
           f"unseen)." if fixed else
           f"{r.target} is a float target: no quantization; the {r.runner} runner is compared "
           f"with the float reference spike for spike.")
    drop = f"Accuracy drop (float - quantized): **{format_pp(r.accuracy_drop_pp)}**" + (
        f" (bound {r.max_drop_pp} pp)" if r.max_drop_pp is not None else "") + "."
    blocks = [
        Paragraph(f"{r.samples} test samples, T = {r.timesteps if r.timesteps is not None else '?'}"
                  f", pipeline latency {r.latency_steps} steps"
                  f"{' (removed)' if r.latency_steps else ''}. {how} "
                  f"Result: {_verdict(r.passed)}."),
        *([Paragraph(f"Lava did not run ({r.lava_missing}); the runner is the emulator.")]
          if r.lava_missing else []),
        *([Heading("Warnings"), Bullets(list(r.warnings))] if r.warnings else []),
        Heading("Accuracy"),
        accuracy_table(r),
    ]
    if fixed:
        blocks.append(Paragraph(drop))
    blocks += [Heading("Spike rates per layer (mean |spike| per neuron and step)"),
               spike_rates_table(r)]
    if fixed:
        blocks += [Heading("Emulator vs runner: exact match per sample"),
                   Paragraph("The share of test samples whose whole probe (every step, every "
                             "neuron) is identical; a bit-exact runner must reach 100 %."),
                   exact_match_table(r)]
        if r.quantization:
            blocks += [Heading("Quantization per node"), quantization_table(r)]
    else:
        bound = format_percent(r.spike_agreement_min)
        blocks += [
            Heading("Runner vs float reference: spike agreement"),
            Paragraph(f"The share of equal spikes per probe (bound {bound}) and of test "
                      f"samples whose whole probe is identical; the runner's argmax must "
                      f"agree with the reference on every sample."),
            Table(["probe", "spike agreement", "exact match per sample"],
                  [[p, format_percent(a, 3), format_percent(r.exact_match.get(p))]
                   for p, a in (r.spike_agreement or {}).items()], "lrr"),
            Heading("Flipped spikes"),
        ]
        if r.flips:
            blocks += [Paragraph(
                f"{len(r.flips)} spike{'s' if len(r.flips) != 1 else ''} listed (at most 20) "
                f"that the runner emitted differently from the reference. The margin is how "
                f"far the reference's pre-fire potential was from the threshold level it "
                f"crossed or missed, in units of the threshold θ: a margin near 1e-7 is float "
                f"rounding, not a wrong model."), flips_table(r)]
        else:
            blocks.append(Paragraph("No spike differs from the float reference."))
    blocks.append(Paragraph(_verdict(r.passed)))
    return Document(f"Verification on {r.target} ({r.runner} runner)", blocks)


# ---- energy -----------------------------------------------------------------------------

def _ann(t: TargetEnergy) -> str:
    if not t.ann_joules_per_inference:
        return MISSING
    return (f"{format_joules(t.ann_joules_per_inference)} "
            f"(SNN / ANN = {format_ratio(t.snn_vs_ann)})")


def _source(key: str, v: dict) -> str:
    value = v.get("value_pj", v.get("value"))
    unit = " pJ" if "value_pj" in v else ""
    return f"`{key}` = {value}{unit}: {v.get('source', '?')}"


def energy_document(r: EnergyRecord, plot: str | None = ENERGY_PLOT) -> Document:
    kinds = r.kinds()
    blocks = [
        Paragraph(f"{r.samples} test samples, T = {r.timesteps}; operation counts measured "
                  f"from the float reference (float targets) and the {r.runner} (fixed-point "
                  f"targets). Energies are means per sample (one inference); they are "
                  f"estimates, not measurements."),
        Table(["target", "energy / inference", *kinds, "constants", "deployable",
               "same network as an ANN"],
              [[name, format_joules(t.total_joules_per_inference),
                *[format_joules(t.by_kind.get(k)) for k in kinds],
                "published" if t.measured else "**assumed**",
                "yes" if t.deployable else "**no**", _ann(t)]
               for name, t in r.targets.items()], "lr" + "r" * len(kinds) + "lll"),
    ]
    if r.refused:
        blocks += [Paragraph("Targets that cannot hold this network (not priced):"),
                   Table(["target", "why"], [[n, why] for n, why in r.refused.items()], "ll")]
    if plot:
        ann = any(t.ann_joules_per_inference for t in r.targets.values())
        blocks.append(Image(plot, "Estimated energy per inference by target, split by kind of "
                                  "operation" + ("; hatched: the same network as an ANN"
                                                 if ann else "") + "."))
    blocks.append(Heading("Per target: layers, counts, assumptions, sources"))
    for name, t in r.targets.items():
        layer_kinds = sorted({k for v in t.by_layer.values() for k in v},
                             key=lambda k: (k == "total", k))  # the sum goes last
        c = t.counts_per_inference
        blocks += [Heading(name, 3)]
        if layer_kinds:
            blocks.append(Table(["layer", *layer_kinds],
                                [[layer, *[format_joules(v.get(k)) for k in layer_kinds]]
                                 for layer, v in t.by_layer.items()],
                                "l" + "r" * len(layer_kinds)))
        if c:
            blocks.append(Paragraph(
                f"Counts per inference ({t.counts_source or '?'}): " + ", ".join(
                    f"{k} {c[k]:.4g}" for k in ("synops", "macs", "events", "neuron_updates",
                                                "spikes") if k in c) + "."))
        if t.assumptions:
            blocks += [Paragraph("Assumptions:"), Bullets(list(t.assumptions))]
        if t.sources:
            blocks += [Paragraph("Sources:"),
                       Bullets([_source(k, v) for k, v in t.sources.items()])]
    return Document(f"Energy per inference: {r.checkpoint}", blocks)


# ---- the targets side by side -----------------------------------------------------------

def compare_document(r: CompareRecord) -> Document:
    rows, refused = [], []
    for name, t in r.targets.items():
        if not t.get("deployable"):
            refused.append([name, t.get("reason", "")])
            continue
        exact = t.get("exact_match")
        energy = format_joules(t.get("joules_per_inference")) + (
            "" if t.get("energy_measured", True) else " (assumed constants)")
        rows.append([name, t["runner"], format_percent(t["float_accuracy"]),
                     format_percent(t["target_accuracy"]), format_pp(t["accuracy_drop_pp"]),
                     f"{format_percent(exact)} vs {t['runner_equals']}",
                     str(t["latency_steps"]),
                     energy if "joules_per_inference" in t else MISSING,
                     t.get("note", "")])
    blocks = [Paragraph(f"{r.samples} test samples of {r.data}. Accuracy on the target: its "
                        f"integer numerics (fixed-point targets, quantized on 256 training "
                        f"samples) or the float runner; exact match: the worst probe of the "
                        f"target's runner against the emulator (fixed point) or the "
                        f"reference (float); latency: pipeline steps the runner removes; "
                        f"energy: the target's model, per inference."),
              Table(["target", "runner", "float", "on target", "drop", "exact match",
                     "latency", "energy / inference", "note"], rows, "llrrrrrrl")]
    if refused:
        blocks += [Paragraph("Targets that cannot hold this network:"),
                   Table(["target", "why"], refused, "ll")]
    return Document(f"Targets side by side: {r.checkpoint}", blocks)


# ---- the demo ---------------------------------------------------------------------------

def demo_document(r: DemoRecord) -> Document:
    p, t, n, v, e = r.pipeline, r.training, r.nir, r.verification, r.energy
    runner = v.runner
    blocks = [
        Paragraph(f"{p.model} on {p.data}, T = {p.timesteps} steps, seed {p.seed}; quantized "
                  f"for {v.target} and run on the {runner} runner. Result: {_verdict(r.passed)}."
                  f" The whole job took {r.seconds:.1f} s."),
        Heading("Numbers"),
        Table(["quantity", "value"], [
            ["test accuracy, float (PyTorch)", format_percent(v.float_accuracy)],
            ["test accuracy, quantized (emulator)", format_percent(v.quantized_accuracy)],
            [f"test accuracy, {runner} runner", format_percent(v.runner_accuracy)],
            ["accuracy drop, float - quantized", format_pp(v.accuracy_drop_pp)],
            ["argmax agreement, quantized vs float", format_percent(v.argmax_agreement)],
            [f"argmax agreement, {runner} vs float", format_percent(v.runner_argmax_agreement)],
            [f"exact match, emulator vs {runner} (worst probe)",
             format_percent(v.min_exact_match)],
            ["NIR round trip: test predictions unchanged", format_percent(n.agreement)],
            ["pipeline latency (removed by the runner)", f"{v.latency_steps} steps"],
            ["test samples", str(v.samples)],
            *[[f"energy per inference, {name}", format_joules(x.joules_per_inference)]
              for name, x in e.targets.items()],
            *([["energy ratio SNN / ANN on cmos45", format_ratio(e.snn_vs_ann_cmos45)]]
              if e.snn_vs_ann_cmos45 is not None else []),
        ], "lr"),
        Heading("Assumptions"),
        Bullets(list(r.assumptions)),
        Heading("Training"),
        Paragraph(f"{t.epochs} epochs in {t.train_seconds:.1f} s; final test accuracy "
                  f"{format_percent(t.test_accuracy)}."),
        Image(r.plots["training_curve"], "Training loss and test accuracy per epoch."),
        Heading(f"Accuracy: float vs quantized vs {runner}"),
        Image(r.plots["accuracy"], f"Test accuracy of the float model, the quantized model on "
                                   f"the emulator, and the {runner} runner."),
        Heading("Spike rates per layer"),
        spike_rates_table(v),
        Image(r.plots["spike_rates"], "Mean |spike| per neuron and step, per CF layer."),
        Heading("Spike raster of one test sample"),
        Paragraph(r.raster.description),
        Image(r.plots["spike_raster"], "Spikes of each CF layer over the time steps; "
                                       "red positive, blue negative."),
        Heading(f"Exact match per probe (emulator vs {runner})"),
        exact_match_table(v),
        Heading("Energy per inference"),
    ]
    if e.available:
        kinds = sorted({k for x in e.targets.values() for k in x.by_kind})
        blocks.append(Table(
            ["target", "per inference", *kinds, "constants", "deployable"],
            [[name, format_joules(x.joules_per_inference),
              *[format_joules(x.by_kind.get(k)) for k in kinds],
              {True: "published", False: "**assumed**"}.get(x.measured, MISSING),
              "yes" if x.deployable else "no (counted on another quantization)"]
             for name, x in e.targets.items()],
            "lr" + "r" * len(kinds) + "ll"))
        ann = e.ann_joules()
        if ann:
            blocks.append(Paragraph(
                f"The same network as an ANN on cmos45 (one dense forward pass): "
                f"{format_joules(ann)} per inference; SNN / ANN = "
                f"{format_ratio(e.snn_vs_ann_cmos45)}."))
        if "energy" in r.plots:
            blocks.append(Image(r.plots["energy"], "Estimated energy per inference by target, "
                                                   "split by kind of operation" + (
                                                       "; hatched: the same network as an ANN "
                                                       "on cmos45" if ann else "") + "."))
        if e.report:
            blocks.append(Paragraph(f"Details (operation counts, constants and their sources):"
                                    f" {e.report}."))
    else:
        blocks.append(Paragraph(f"No energy estimate: {e.missing or 'not computed'}."))
    blocks += [Heading("Files"), Bullets([f"{k}: {x}" for k, x in r.files.items()])]
    return Document(r.title, blocks)


__all__ = ["verify_document", "energy_document", "demo_document", "accuracy_table",
           "spike_rates_table", "exact_match_table", "flips_table", "quantization_table"]
