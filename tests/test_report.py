"""cf2neuro.report: typed records, one renderer (Markdown + HTML from the same blocks), one
joule formatter, real PNG plots, and the demo's report folder."""

import ast
import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from cf2neuro.errors import ConfigError
from cf2neuro.report import (PLOT_FILES, REPORT_KEYS, DemoRecord, EnergyRecord, EnergySummary,
                             RasterSummary, VerifyRecord, document, format_joules,
                             format_percent, plots, to_markdown, write_report)
from cf2neuro.report.document import Bullets, Document, Heading, Image, Paragraph, Table, to_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PACKAGE = Path(__file__).resolve().parents[1] / "cf2neuro"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not np.all(image == image[0, 0]), f"{path} is blank"
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "temporary file left behind"


# ---- reading the rendered tables back ---------------------------------------------------

def _plain(cell: str) -> str:
    return cell.replace("**", "").replace("`", "").strip()


def md_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table as rows of cells (header first, the rule line dropped)."""
    tables, rows = [], None
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [_plain(c.replace("\\|", "|"))
                     for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r"-+:?", c) for c in cells):
                rows = (rows or []) + [cells]
        elif rows is not None:
            tables.append(rows)
            rows = None
    return tables


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def html_tables(text: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(text)
    return parser.tables


# ---- the one formatter ------------------------------------------------------------------

@pytest.mark.parametrize("value, text", [
    (None, "–"), (0, "0 J"), (0.0, "0 J"), (-0.0, "0 J"), (1e-15, "1 fJ"), (3.2e-6, "3.2 µJ"),
    (-3.2e-6, "-3.2 µJ"), (2.13e-6, "2.13 µJ"), (1.779e-7, "178 nJ"), (1.0, "1 J"),
    (999.96e-9, "1 µJ"), (4.2e-18, "0.0042 fJ"), (2500.0, "2.5 kJ"), (float("nan"), "nan J"),
])
def test_format_joules_edge_cases(value, text):
    assert format_joules(value) == text


@pytest.mark.parametrize("value, text", [
    (None, "–"), (0.9833, "98.33 %"), (1.0, "100.00 %"), (0.0, "0.00 %"),
    (0.99999, "> 99.99 %"), (0.00001, "< 0.01 %")])
def test_format_percent_never_rounds_a_failure_to_100(value, text):
    assert format_percent(value) == text


OLD_FORMATTERS = ("_fmt", "_joules", "_si_joules")


def test_no_other_joule_formatter_remains():
    """The old formatters are gone and the SI prefix table lives in units.py only."""
    sources = {p: p.read_text() for p in PACKAGE.rglob("*.py") if ".runtime" not in p.parts}
    for path, text in sources.items():
        for name in OLD_FORMATTERS:
            assert not re.search(rf"(?<![\w.]){name}\(", text), f"{path} still has {name}()"
        if path.name == "units.py":
            continue
        formatters = [n.name for n in ast.walk(ast.parse(text)) if isinstance(n, ast.FunctionDef)
                      and re.search(r"(fmt|format).*(joule|energ)|(joule|energ).*(fmt|format)",
                                    n.name)]
        assert not formatters, f"{path} defines its own energy formatter {formatters}"
        assert not re.search(r"[\"']µJ?[\"']", text), f"{path} spells an SI prefix: use units"


# ---- the renderer -----------------------------------------------------------------------

def test_one_document_renders_to_markdown_and_html_alike(tmp_path):
    plots.plot_accuracy({"a": 0.5, "b": 0.75}, tmp_path / "p.png")
    doc = Document("Title | with a bar", [
        Heading("Section"), Paragraph("plain **bold** and `code <x>`"),
        Bullets(["one", "two"]),
        Table(["name", "value"], [["a|b", "1 µJ"], ["c", "**2 J**"]], "lr"),
        Image("p.png", "A caption")])
    md, page = to_markdown(doc), to_html(doc, tmp_path)
    assert md.startswith("# Title | with a bar\n") and "## Section" in md
    assert "|---|---:|" in md and "| a\\|b | 1 µJ |" in md and "![A caption](p.png)" in md
    assert "<strong>bold</strong>" in page and "<code>code &lt;x&gt;</code>" in page
    assert '<td class="r">1 µJ</td>' in page and "<li>two</li>" in page
    assert md_tables(md) == html_tables(page) == [[["name", "value"], ["a|b", "1 µJ"],
                                                   ["c", "2 J"]]]
    data = base64.b64encode((tmp_path / "p.png").read_bytes()).decode()
    assert f'src="data:image/png;base64,{data}"' in page
    with pytest.raises(ValueError, match="cells"):
        Table(["a", "b"], [["only one"]])


# ---- records ----------------------------------------------------------------------------

RATES = {"layers.2": {"float": 0.16, "emulator": 0.161, "runner": 0.161,
                      "emulator_vs_float": 1.006},
         "layers.4": {"float": 0.64, "emulator": 0.65, "runner": 0.65,
                      "emulator_vs_float": 1.016}}


def fixed_verify(**changes):
    """The keys cf2neuro.verify writes for a fixed-point target."""
    d = {"target": "loihi2", "runner": "lava", "samples": 359, "timesteps": 4, "quantized": True,
         "float_accuracy": 0.9833, "quantized_accuracy": 0.9805, "runner_accuracy": 0.9805,
         "accuracy_drop_pp": 0.28, "max_drop_pp": None, "argmax_agreement": 0.997,
         "runner_argmax_agreement": 0.997,
         "exact_match": {"output": 1.0, "layers.2": 1.0, "layers.4": 1.0, "v:layers.2": 1.0},
         "spike_rates": RATES, "latency_steps": 3,
         "quantization": [{"node": "layers.1", "op": "Linear", "scale": 2973.5, "weight_exp": -6,
                           "clipped_fraction": 0.001, "round_err_max": 0.0039,
                           "round_err_mean": 0.002, "notes": []},
                          {"node": "layers.2", "op": "CFNeuron", "vth": 2973, "notes": ["ok"]}],
         "passed": True, "calibration": {"split": "train", "samples": 256}, "seconds": 1.5}
    return d | changes


def float_verify(**changes):
    """The keys cf2neuro.verify writes for a float target, with two flipped spikes."""
    d = {"target": "onnx", "runner": "onnxruntime", "samples": 359, "timesteps": 4,
         "quantized": False, "float_accuracy": 0.9833, "quantized_accuracy": 0.9833,
         "runner_accuracy": 0.9833, "accuracy_drop_pp": 0.0, "max_drop_pp": None,
         "argmax_agreement": 1.0, "runner_argmax_agreement": 1.0,
         "exact_match": {"output": 1.0, "layers.2": 0.9972, "layers.4": 1.0},
         "spike_agreement": {"output": 1.0, "layers.2": 0.99998, "layers.4": 1.0},
         "spike_agreement_min": 0.999,
         "flips": [{"probe": "layers.2", "step": 2, "sample": 41, "index": [17],
                    "reference": 1.0, "runner": 0.0, "margin": 1.19e-07},
                   {"probe": "layers.2", "step": 3, "sample": 41, "index": [17],
                    "reference": 0.0, "runner": 1.0, "margin": 2.5e-08}],
         "spike_rates": {"layers.2": {"float": 0.16, "runner": 0.16},
                         "layers.4": {"float": 0.64, "runner": 0.64}},
         "latency_steps": 0, "quantization": [], "passed": True, "seconds": 0.7}
    return d | changes


ENERGY = {"checkpoint": "ck", "samples": 100, "timesteps": 4, "runner": "emulator",
          "counts": {"reference": {"layers": {}}},
          "targets": {
              "cmos45": {"total_joules_per_inference": 2e-7,
                         "by_kind": {"synops": 5e-8, "macs": 1.5e-7},
                         "by_layer": {"fc1": {"synops": 5e-8, "macs": 1.5e-7, "total": 2e-7}},
                         "ann_joules_per_inference": 4e-7, "snn_vs_ann": 0.5, "measured": True,
                         "deployable": True, "assumptions": ["45 nm convention"],
                         "sources": {"mac_pj": {"value_pj": 4.6, "source": "Horowitz"}},
                         "counts_per_inference": {"synops": 10.0, "macs": 3.0},
                         "counts_source": "reference", "target": "cmos45", "model": "cmos45"},
              "loihi2": {"total_joules_per_inference": 2e-6, "by_kind": {"synops": 1.9e-6,
                                                                         "neuron_updates": 1e-7},
                         "by_layer": {}, "measured": False, "deployable": True,
                         "assumptions": ["Loihi 1 figures as upper bound"], "sources": {},
                         "counts_per_inference": {}, "counts_source": "emulator (loihi2)",
                         "placement": {"tile": {}}}}}


@pytest.mark.parametrize("d", [fixed_verify(), float_verify(),
                               fixed_verify(lava_missing="no Python 3.10", extra_key=[1])])
def test_verify_record_round_trips_every_key(d):
    rec = VerifyRecord.from_json(d)
    assert rec.to_json() == d
    assert rec.min_exact_match == min(d["exact_match"].values())


def test_energy_record_round_trips_every_key():
    rec = EnergyRecord.from_json(ENERGY)
    assert rec.to_json() == ENERGY
    assert rec.targets["loihi2"].extra == {"placement": {"tile": {}}}
    assert "snn_vs_ann" not in rec.targets["loihi2"].to_json()  # no ANN priced: no ratio key


def test_fixed_point_verify_document():
    md = to_markdown(document(VerifyRecord.from_json(fixed_verify())))
    assert "calibrated on 256 samples of the training split" in md
    assert "| quantized (emulator) | 98.05 % | 99.70 % |" in md
    assert "| layer | float | emulator | lava runner | emulator / float |" in md
    assert "| layers.2 | 0.1600 | 0.1610 | 0.1610 | 1.006 |" in md
    assert "| v:layers.2 | 100.00 % |" in md and "**0.28 pp**" in md
    assert "| layers.1 | Linear | 2974 | -6 | 0.10 % | 0.0039 / 0.0020 |" in md
    assert md.rstrip().endswith("**PASSED**") and "Lava did not run" not in md
    fallback = to_markdown(document(VerifyRecord.from_json(fixed_verify(
        runner="emulator", lava_missing="no Python 3.10"))))
    assert "Lava did not run (no Python 3.10); the runner is the emulator." in fallback


def test_energy_document_and_plot(tmp_path):
    paths = write_report(EnergyRecord.from_json(ENERGY), tmp_path)
    assert set(paths) == {"energy.json", "energy.md", "energy.html", "energy.png"}
    assert_png(tmp_path / "energy.png")
    assert json.loads((tmp_path / "energy.json").read_text()) == ENERGY
    md, page = (tmp_path / "energy.md").read_text(), (tmp_path / "energy.html").read_text()
    assert md_tables(md) == html_tables(page)
    summary = md_tables(md)[0]
    assert summary[0] == ["target", "energy / inference", "macs", "neuron_updates", "synops",
                          "constants", "deployable", "same network as an ANN"]
    assert summary[1] == ["cmos45", "200 nJ", "150 nJ", "–", "50 nJ", "published", "yes",
                          "400 nJ (SNN / ANN = 0.5)"]
    assert summary[2][:2] == ["loihi2", "2 µJ"] and summary[2][5] == "assumed"
    assert "`mac_pj` = 4.6 pJ: Horowitz" in md and "<code>mac_pj</code>" in page


# ---- plots ------------------------------------------------------------------------------

HISTORY = [{"epoch": e, "loss": 2.0 / e, "test_accuracy": 0.5 + 0.45 * (1 - 1 / e),
            "train_accuracy": 0.4 + 0.5 * (1 - 1 / e)} for e in range(1, 21)]


def spikes(seed=0, steps=4, neurons=32):
    rng = np.random.default_rng(seed)
    return {"layers.2": rng.choice([-1, 0, 0, 1], size=(steps, neurons)),
            "layers.4": rng.choice([-2, -1, 0, 1, 2], size=(steps, neurons))}


def test_training_curve(tmp_path):
    assert_png(plots.plot_training_curve(HISTORY, tmp_path / "t.png"))
    with pytest.raises(ConfigError):
        plots.plot_training_curve([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_accuracy_bars(tmp_path):
    assert_png(plots.plot_accuracy({"float": 0.9833, "quantized": 0.98, "Lava": 0.98},
                                   tmp_path / "a.png"))
    assert_png(plots.plot_accuracy({"float": 0.1, "quantized": 0.09}, tmp_path / "low.png"))


def test_spike_rates_grouped(tmp_path):
    assert_png(plots.plot_spike_rates(RATES, tmp_path / "r.png",
                                      {"float": "float", "emulator": "emulator",
                                       "runner": "Lava"}))


def test_spike_raster_signed_and_graded(tmp_path):
    assert_png(plots.plot_spike_raster(spikes(), tmp_path / "s.png"))
    # both colours are drawn: red for +, blue for -
    image = mpimg.imread(tmp_path / "s.png")[..., :3]
    red = (image[..., 0] > 0.6) & (image[..., 2] < 0.45)
    blue = (image[..., 2] > 0.5) & (image[..., 0] < 0.45)
    assert red.sum() > 100 and blue.sum() > 100


@pytest.mark.parametrize("values", [{"a": 1e-7, "b": 2e-7, "c": 3e-7},
                                    {"a": 1e-9, "b": 2e-6, "c": 4e-4},
                                    {"a": {"synops": 1e-7, "macs": 2e-7}, "b": {"synops": 3e-7}},
                                    {"a": {"synops": 1e-9}, "b": {"synops": 1e-6, "x": 1e-6}}])
def test_energy_bars_linear_log_and_stacked(tmp_path, values):
    assert_png(plots.plot_energy(values, tmp_path / "e.png", reference={"ANN": 5e-7},
                                 notes={"b": "assumed constants"}))
    with pytest.raises(ConfigError):
        plots.plot_energy({}, tmp_path / "none.png")


# ---- the demo's report folder -----------------------------------------------------------

def demo_record(with_energy=True) -> DemoRecord:
    summary = {"model": "mlp", "data": "digits", "timesteps": 4, "seed": 0,
               "checkpoint": "ck", "nir": "model.nir", "nir_agreement": 1.0,
               "nir_accuracy": 0.9833, "total_seconds": 30.0}
    metrics = {"test_accuracy": 0.9833, "train_seconds": 20.0, "history": HISTORY}
    energy = (EnergySummary.of(EnergyRecord.from_json(ENERGY), report_path="energy/energy.md")
              if with_energy else EnergySummary.of(None, missing="not installed"))
    return DemoRecord.build(summary, metrics, VerifyRecord.from_json(fixed_verify()), energy,
                            RasterSummary.of(spikes(), 0, 5), files={"nir": "model.nir"})


@pytest.mark.parametrize("with_energy", [True, False])
def test_report_folder(tmp_path, with_energy):
    record = demo_record(with_energy)
    paths = write_report(record, tmp_path)
    expected = set(PLOT_FILES) if with_energy else set(PLOT_FILES) - {"energy"}
    assert set(record.plots) == expected
    for name in expected:
        assert_png(tmp_path / PLOT_FILES[name])
    # report.json: the documented keys, and it is what the record says
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved) == set(REPORT_KEYS) and saved == json.loads(json.dumps(record.to_json()))
    assert DemoRecord.from_json(saved).to_json() == saved  # report.json reads back as a record
    v = saved["verification"]
    for key in ("float_accuracy", "quantized_accuracy", "runner_accuracy", "accuracy_drop_pp",
                "argmax_agreement", "exact_match", "min_exact_match", "latency_steps",
                "spike_rates"):
        assert key in v
    assert "quantization" not in v and v["min_exact_match"] == 1.0  # verify.json has the rest
    raster = saved["raster"]
    assert raster["layers"]["layers.2"]["neurons"] == 32 and "spikes" not in raster
    assert saved["energy"]["available"] is with_energy
    assert any("not on Loihi 2 hardware" in a for a in saved["assumptions"])
    assert any("calibrated on 256 samples" in a for a in saved["assumptions"])
    assert any("loihi2 per-operation energies are an assumption" in a
               for a in saved["assumptions"]) is with_energy
    # report.html: self-contained, every PNG inline as base64, the same tables as report.md
    page = (tmp_path / "report.html").read_text()
    for name in expected:
        data = base64.b64encode((tmp_path / PLOT_FILES[name]).read_bytes()).decode()
        assert f'src="data:image/png;base64,{data}"' in page
    assert page.count("<img ") == len(expected) and 'src="' + "training_curve" not in page
    md = (tmp_path / "report.md").read_text()
    assert md_tables(md) == html_tables(page)
    for name in expected:
        assert f"]({PLOT_FILES[name]})" in md
    numbers = dict(md_tables(md)[0][1:])
    assert numbers["test accuracy, float (PyTorch)"] == "98.33 %"
    assert numbers["accuracy drop, float - quantized"] == "0.28 pp"
    assert numbers["pipeline latency (removed by the runner)"] == "3 steps"
    if with_energy:
        assert numbers["energy per inference, cmos45"] == format_joules(2e-7) == "200 nJ"
        assert numbers["energy per inference, loihi2"] == "2 µJ"
        assert numbers["energy ratio SNN / ANN on cmos45"] == "0.5"
        assert "Energy, loihi2: Loihi 1 figures as upper bound" in md
    else:
        assert "No energy estimate: not installed" in md
    assert set(paths) >= {"report.json", "report.md", "report.html"}


def test_the_report_package_imports_no_stage():
    """The stages import cf2neuro.report, never the other way round."""
    from test_architecture import _imports

    stages = tuple(f"cf2neuro.{s}" for s in ("verify", "energy", "api", "cli", "demo"))
    for module, deps in _imports().items():
        if module == "cf2neuro.report" or module.startswith("cf2neuro.report."):
            assert not [d for d in deps if d.startswith(stages)], (module, deps)
