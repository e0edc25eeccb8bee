"""The demo's report folder: plots are real PNGs, report.html is self-contained,
report.json has the documented keys (cf2neuro.report)."""

import base64
import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from cf2neuro.errors import ConfigError
from cf2neuro.report import (PLOT_FILES, REPORT_KEYS, build_report, energy_summary,
                             raster_summary, write_report)
from cf2neuro.report import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not np.all(image == image[0, 0]), f"{path} is blank"
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "temporary file left behind"


HISTORY = [{"epoch": e, "loss": 2.0 / e, "test_accuracy": 0.5 + 0.45 * (1 - 1 / e),
            "train_accuracy": 0.4 + 0.5 * (1 - 1 / e)} for e in range(1, 21)]
RATES = {"layers.2": {"float": 0.16, "emulator": 0.161, "runner": 0.161,
                      "emulator_vs_float": 1.006},
         "layers.4": {"float": 0.64, "emulator": 0.65, "runner": 0.65,
                      "emulator_vs_float": 1.016}}


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
                                    {"a": 1e-9, "b": 2e-6, "c": 4e-4}])
def test_energy_bars_linear_and_log(tmp_path, values):
    assert_png(plots.plot_energy(values, tmp_path / "e.png", reference={"ANN": 5e-7}))


def fake_inputs(with_energy=True):
    verify = {"target": "loihi2", "runner": "lava", "samples": 359, "timesteps": 4,
              "float_accuracy": 0.9833, "quantized_accuracy": 0.9833, "runner_accuracy": 0.9833,
              "accuracy_drop_pp": 0.0, "max_drop_pp": None, "argmax_agreement": 0.997,
              "runner_argmax_agreement": 0.997,
              "exact_match": {"output": 1.0, "layers.2": 1.0, "layers.4": 1.0},
              "spike_rates": RATES, "latency_steps": 3, "passed": True}
    summary = {"model": "mlp", "data": "digits", "timesteps": 4, "seed": 0,
               "checkpoint": "ck", "nir": "model.nir", "nir_agreement": 1.0,
               "nir_accuracy": 0.9833, "total_seconds": 30.0}
    metrics = {"test_accuracy": 0.9833, "train_seconds": 20.0, "history": HISTORY}
    energy = None
    if with_energy:  # the shape of cf2neuro.energy.energy_report's result
        energy = {"targets": {
            "cmos45": {"total_joules_per_inference": 2e-7, "by_kind": {"synops": 5e-8,
                                                                         "macs": 1.5e-7},
                       "ann_joules_per_inference": 4e-7, "snn_vs_ann": 0.5, "measured": True,
                       "assumptions": ["45 nm convention"]},
            "loihi2": {"total_joules_per_inference": 2e-6, "by_kind": {"synops": 1.9e-6},
                       "measured": False, "assumptions": ["Loihi 1 figures as upper bound"]}}}
    return summary, metrics, verify, energy_summary(energy, missing="not installed")


@pytest.mark.parametrize("with_energy", [True, False])
def test_report_folder(tmp_path, with_energy):
    summary, metrics, verify, energy = fake_inputs(with_energy)
    s = spikes()
    report = build_report(summary, metrics, verify, energy, raster_summary(s, 0, 5))
    paths = write_report(report, tmp_path, HISTORY, s,
                         energy["targets"].get("cmos45", {}).get("ann_joules_per_inference"))
    expected = set(PLOT_FILES) if with_energy else set(PLOT_FILES) - {"energy"}
    assert set(report["plots"]) == expected
    for name in expected:
        assert_png(tmp_path / PLOT_FILES[name])
    # report.json: the documented keys, and it is what build_report returned
    saved = json.loads((tmp_path / "report.json").read_text())
    assert set(saved) == set(REPORT_KEYS) and saved == json.loads(json.dumps(report))
    v = saved["verification"]
    for key in ("float_accuracy", "quantized_accuracy", "runner_accuracy", "accuracy_drop_pp",
                "argmax_agreement", "exact_match", "min_exact_match", "latency_steps",
                "spike_rates"):
        assert key in v
    assert saved["energy"]["available"] is with_energy
    assert any("not on Loihi 2 hardware" in a for a in saved["assumptions"])
    assert any("loihi2 per-operation energies are an assumption" in a
               for a in saved["assumptions"]) is with_energy
    # report.html: self-contained, every PNG inline as base64
    page = (tmp_path / "report.html").read_text()
    for name in expected:
        data = base64.b64encode((tmp_path / PLOT_FILES[name]).read_bytes()).decode()
        assert f'src="data:image/png;base64,{data}"' in page
    assert page.count("<img ") == len(expected) and 'src="' + "training_curve" not in page
    md = (tmp_path / "report.md").read_text()
    for name in expected:
        assert f"]({PLOT_FILES[name]})" in md
    assert "98.33 %" in md and "0.00 pp" in md and "3 steps" in md
    if with_energy:
        assert "cmos45" in md and "200 nJ" in md and "SNN / ANN" in md and "0.5" in md
        assert "Energy, loihi2: Loihi 1 figures as upper bound" in md
    else:
        assert "No energy estimate: not installed" in md
    assert set(paths) >= {"report.json", "report.md", "report.html"}
