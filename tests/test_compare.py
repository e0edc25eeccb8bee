"""`cf2neuro compare`: each target's row equals what `verify` and `energy` say on their own."""

import json

import pytest

from cf2neuro.cli import main as cli
from cf2neuro.compare import compare
from cf2neuro.energy import energy_report
from cf2neuro.verify import verify


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp") / "ck"
    assert cli(["train", "--epochs", "2", "--out", str(d), "--quiet"]) == 0
    return d


def test_rows_match_verify_and_energy_run_alone(ckpt):
    r = compare(ckpt, data="digits", targets=["loihi2", "cmos45", "loihi"], limit=24)
    rows = r["targets"]
    assert rows["loihi"]["deployable"] is False and "signed" in rows["loihi"]["reason"]
    for name in ("loihi2", "cmos45"):
        row = rows[name]
        alone = verify(ckpt, target=name, data="digits", runner=row["runner"], limit=24)
        assert row["float_accuracy"] == alone["float_accuracy"]
        fixed = alone.get("quantized", True)
        assert row["target_accuracy"] == (alone["quantized_accuracy"] if fixed
                                          else alone["runner_accuracy"])
        probes = alone["exact_match"] if fixed else alone["spike_agreement"]
        assert row["exact_match"] == min(probes.values())
        assert row["latency_steps"] == alone["latency_steps"]
        e = energy_report(ckpt, targets=[name], data="digits", limit=24, progress=False)
        assert row["joules_per_inference"] == pytest.approx(
            e["targets"][name]["total_joules_per_inference"])
    assert rows["cmos45"]["exact_match"] == 1.0  # the reference against itself


def test_the_cli_writes_the_report(ckpt, tmp_path, capsys):
    assert cli(["compare", str(ckpt), "--data", "digits", "--target", "loihi2,onnx",
                "--limit", "16", "--report", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "loihi2 via" in out and "onnx via onnxruntime" in out
    saved = json.loads((tmp_path / "r" / "compare.json").read_text())
    assert set(saved["targets"]) == {"loihi2", "onnx"}
    assert "| loihi2 |" in (tmp_path / "r" / "compare.md").read_text()
