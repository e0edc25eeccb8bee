"""The main job on the embedded default, through the command line."""

import base64
import json

import matplotlib.image as mpimg
import numpy as np
from test_report import html_tables, md_tables

from cf2neuro.cli import main as cli
from cf2neuro.report import PLOT_FILES, REPORT_KEYS, format_joules, format_percent


def test_demo_trains_digits_and_reports(tmp_path, capsys, lava_python):
    # lava_python: the demo verifies on Lava, so without a runtime (outside CI) this skips
    out = tmp_path / "demo"
    assert cli(["demo", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["test_accuracy"] > 0.95
    assert (out / "checkpoint" / "model.safetensors").is_file()
    # exported to NIR, read back, and every test prediction unchanged
    assert (out / "model.nir").is_file()
    assert summary["nir_agreement"] == 1.0
    assert summary["nir_accuracy"] == summary["test_accuracy"]
    # quantized for loihi2 and verified on Lava over the whole test set
    v = json.loads((out / "verify" / "verify.json").read_text())
    assert v["runner"] == "lava" and v["samples"] == 359 and v["passed"]
    assert all(rate == 1.0 for rate in v["exact_match"].values())
    assert v["accuracy_drop_pp"] <= 1.0 and v["argmax_agreement"] >= 0.98
    printed = capsys.readouterr().out
    assert f"{summary['test_accuracy']:.4f}" in printed and str(out) in printed
    assert "100.00 % of test predictions equal" in printed
    # the report folder: plots, report.md, report.html (plots inline), report.json
    rep_dir = out / "report"
    assert str(rep_dir / "report.html") in printed
    report = json.loads((rep_dir / "report.json").read_text())
    assert set(report) == set(REPORT_KEYS) and report["passed"]
    assert report["verification"]["runner_accuracy"] == v["runner_accuracy"]
    assert report["verification"]["min_exact_match"] == 1.0
    assert len(report["training"]["history"]) == report["training"]["epochs"] > 1
    page = (rep_dir / "report.html").read_text()
    for name, file in report["plots"].items():
        png = rep_dir / file
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        image = mpimg.imread(png)
        assert not np.all(image == image[0, 0]), f"{name} is blank"
        assert base64.b64encode(png.read_bytes()).decode() in page
    assert set(report["plots"]) >= set(PLOT_FILES) - {"energy"}
    md = (rep_dir / "report.md").read_text()
    assert "## Assumptions" in md and md_tables(md) == html_tables(page)
    numbers = dict(md_tables(md)[0][1:])
    assert numbers["test accuracy, float (PyTorch)"] == format_percent(v["float_accuracy"])
    assert numbers["test accuracy, lava runner"] == format_percent(v["runner_accuracy"])
    # every stage's report is written three ways: json, md, html
    for stem, directory in (("verify", out / "verify"), ("energy", out / "energy")):
        for suffix in (".json", ".md", ".html"):
            assert (directory / f"{stem}{suffix}").is_file(), (stem, suffix)
    assert "calibrated on 256 samples of the training split" in (
        out / "verify" / "verify.md").read_text()
    # energy per target (cf2neuro.energy), with the loihi2 constants flagged as assumed
    energy = report["energy"]
    assert energy["available"] and "energy" in report["plots"]
    assert set(energy["targets"]) >= {"cmos45", "loihi2"}
    assert all(t["joules_per_inference"] > 0 for t in energy["targets"].values())
    for name, t in energy["targets"].items():  # one formatter: the CLI, report.md, energy.md
        text = format_joules(t["joules_per_inference"])
        assert numbers[f"energy per inference, {name}"] == text and text in printed
        assert f"| {name} | {text} |" in (out / "energy" / "energy.md").read_text()
    assert energy["targets"]["loihi2"]["measured"] is False
    assert 0 < energy["snn_vs_ann_cmos45"] < 10
    assert (out / "energy" / "energy.json").is_file()
    assert summary["total_seconds"] < 180
