"""The main job on the embedded default, through the command line."""

import json

from cf2neuro.cli import main as cli


def test_demo_trains_digits_and_reports(tmp_path, capsys):
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
