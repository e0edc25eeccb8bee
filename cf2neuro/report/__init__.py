"""Every report cf2neuro writes (verify, energy, the demo's), from typed records, in one place.

    from cf2neuro.report import VerifyRecord, write_report
    write_report(VerifyRecord.from_json(verify_dict), "out/verify")
    # -> verify.json, verify.md, verify.html

    write_report(EnergyRecord.from_json(energy_dict), "out/energy")
    # -> energy.json, energy.md, energy.html, energy.png

    write_report(DemoRecord.build(...), "out/report")
    # -> report.json, report.md, report.html and the plots (PLOT_FILES)

A record's `to_json()` is the JSON file; `documents` turns it into blocks,
`document` renders those to Markdown and to one self-contained HTML page
(plots inline), `plots` draws the PNGs, `units.format_joules` is the one
way energies are written. The stages (verify, energy, demo, cli) import this
package, never the other way round.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..fileio import atomic_path, write_json
from .demo_record import (PLOT_FILES, REPORT_KEYS, DemoRecord, EnergySummary, RasterSummary,
                          runner_label)
from .document import Document, to_html, to_markdown
from .documents import (ENERGY_PLOT, compare_document, demo_document, energy_document,
                        verify_document)
from .records import CompareRecord, EnergyRecord, Flip, TargetEnergy, VerifyRecord
from .units import format_joules, format_percent, format_pp

log = logging.getLogger(__name__)

_DOCUMENTS = {VerifyRecord: verify_document, EnergyRecord: energy_document,
              DemoRecord: demo_document, CompareRecord: compare_document}


def _energy_notes(targets: dict) -> dict:
    """What a bar's height does not say: the constants are assumed, or the target refuses
    the model (counted on another quantization)."""
    notes = {}
    for name, t in targets.items():
        words = (["assumed constants"] if t.measured is False else []) + (
            [] if t.deployable else ["not deployable"])
        if words:
            notes[name] = ", ".join(words)
    return notes


def _draw_energy(r: EnergyRecord, directory: Path) -> dict:
    from .plots import plot_energy

    ann = {f"ANN on {n}": t.ann_joules_per_inference for n, t in r.targets.items()
           if t.ann_joules_per_inference}
    path = plot_energy({n: t.by_kind for n, t in r.targets.items()}, directory / ENERGY_PLOT,
                       reference=ann, notes=_energy_notes(r.targets),
                       title="Estimated energy per inference by target")
    return {ENERGY_PLOT: str(path)}


def _draw_demo(r: DemoRecord, directory: Path) -> dict:
    from . import plots as P

    v, runner, files = r.verification, runner_label(r.verification.runner), r.plots
    fixed = v.quantized is not False
    out = {
        "training_curve": P.plot_training_curve(
            r.training.history, directory / files["training_curve"],
            title=f"Training: {r.pipeline.model} on {r.pipeline.data}"),
        "accuracy": P.plot_accuracy(
            {"float (PyTorch)": v.float_accuracy,
             **({"quantized (emulator)": v.quantized_accuracy} if fixed else {}),
             runner: v.runner_accuracy}, directory / files["accuracy"],
            title=f"Test accuracy: float vs quantized ({v.target}) vs {runner}"),
        "spike_rates": P.plot_spike_rates(
            v.spike_rates, directory / files["spike_rates"],
            {"float": "float (PyTorch)", "emulator": "quantized (emulator)", "runner": runner},
            title="Spike rate per CF layer: float vs emulator vs " + runner),
        "spike_raster": P.plot_spike_raster(
            r.raster.spikes, directory / files["spike_raster"],
            title=f"Spike raster: test sample {r.raster.sample} (label {r.raster.label}), "
                  f"quantized model"),
    }
    if "energy" in files:
        e = r.energy
        ann = e.ann_joules("cmos45")
        out["energy"] = P.plot_energy(
            {n: t.by_kind or t.joules_per_inference for n, t in e.targets.items()},
            directory / files["energy"], reference={"ANN on cmos45": ann} if ann else None,
            notes=_energy_notes(e.targets),
            title="Estimated energy per inference by target")
    return {k: str(p) for k, p in out.items()}


_PLOTS = {EnergyRecord: _draw_energy, DemoRecord: _draw_demo}


def document(record) -> Document:
    """The record's document (the blocks both Markdown and HTML are rendered from)."""
    try:
        return _DOCUMENTS[type(record)](record)
    except KeyError:
        raise TypeError(f"no report for a {type(record).__name__}; records: "
                        f"{', '.join(t.__name__ for t in _DOCUMENTS)}") from None


def write_report(record, directory) -> dict[str, str]:
    """Write STEM.json, STEM.md, STEM.html (and the record's plots) into `directory`.

    STEM is the record's (`verify`, `energy`, `report`). Every file is written
    atomically; the plots first, since the HTML page inlines them. Returns
    {file name or plot name: path}.
    """
    directory = Path(directory)
    doc = document(record)
    directory.mkdir(parents=True, exist_ok=True)
    draw = _PLOTS.get(type(record))
    paths = draw(record, directory) if draw else {}
    page = to_html(doc, directory)  # reads the PNGs: a missing plot fails before any text
    stem = record.STEM
    write_json(directory / f"{stem}.json", record.to_json())
    for suffix, text in ((".md", to_markdown(doc)), (".html", page)):
        with atomic_path(directory / f"{stem}{suffix}") as tmp:
            tmp.write_text(text, encoding="utf-8")
    written = {f"{stem}{s}": str(directory / f"{stem}{s}") for s in (".json", ".md", ".html")}
    log.info("wrote %s", ", ".join(written.values()))
    return {**paths, **written}


__all__ = ["REPORT_KEYS", "PLOT_FILES", "VerifyRecord", "Flip", "EnergyRecord", "TargetEnergy",
           "CompareRecord",
           "DemoRecord", "EnergySummary", "RasterSummary", "Document", "document",
           "write_report", "to_markdown", "to_html", "format_joules", "format_percent",
           "format_pp", "runner_label"]
