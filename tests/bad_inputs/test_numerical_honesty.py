"""verify never says "passed" over garbage, and says what looks wrong even when it passes."""

import json

import numpy as np
import pytest
from .catalogue_helpers import spoiled
from .checks import cf2neuro

from cf2neuro.cli import main as cli
from cf2neuro.quant.report import quantization_warnings, silence_warnings

VERIFY = ["verify", "--target", "loihi2", "--data", "digits", "--limit", "32"]


def _verify(ck, report, *extra, runner="emulator"):
    return cli([str(a) for a in [VERIFY[0], ck, *VERIFY[1:], "--runner", runner, "--report",
                                 report, *extra]])


def _silent(s):
    """The first layer's weights 10^4 times smaller: no CF layer reaches its threshold."""
    return {**s, "layers.1.weight": s["layers.1.weight"] * 1e-4,
            "layers.1.bias": s["layers.1.bias"] * 1e-4}


def test_a_run_that_fires_nothing_says_so_in_the_output_and_the_report(mlp_ckpt, tmp_path):
    ck = spoiled(mlp_ckpt, tmp_path / "ck", weights=_silent)
    res = cf2neuro(*VERIFY[:1], ck, *VERIFY[1:], "--runner", "emulator", "--report",
                   tmp_path / "r")
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr
    assert "layer layers.2 fires no spike in the emulator run" in res.stderr
    report = json.loads((tmp_path / "r" / "verify.json").read_text())
    assert any("layers.4 fires no spike" in w for w in report["warnings"])
    md = (tmp_path / "r" / "verify.md").read_text()
    assert "## Warnings" in md and "fires no spike" in md
    assert "fires no spike" in (tmp_path / "r" / "verify.html").read_text()


def test_weights_beyond_the_format_are_named(mlp_ckpt, tmp_path, capsys):
    """Weights 10^5 times larger: the threshold no longer has the resolution it needs."""
    ck = spoiled(mlp_ckpt, tmp_path / "ck",
                 weights=lambda s: {**s, "layers.3.weight": s["layers.3.weight"] * 1e5})
    _verify(ck, tmp_path / "r")
    warnings = json.loads((tmp_path / "r" / "verify.json").read_text())["warnings"]
    assert any(w.startswith("node layers.4: vth = ") for w in warnings), warnings


def test_clipping_and_silence_warnings_name_the_node():
    records = [{"node": "fc1", "op": "Linear", "clipped_fraction": 0.001},
               {"node": "fc2", "op": "Linear", "clipped_fraction": 0.25},
               {"node": "cf", "op": "CFNeuron", "bias_clipped_fraction": 0.5, "notes": ["x"]}]
    out = quantization_warnings(records)
    assert len(out) == 3 and "node cf: x" in out
    assert any("fc2: 25.0% of its weights saturate" in w for w in out)
    assert any("cf: 50.0% of its biases saturate" in w for w in out)
    assert not any("fc1" in w for w in out)  # the calibration's own 0.1 % is by design
    rates = {"a": {"float": 0.1, "emulator": 0.0}, "b": {"float": 0.1, "emulator": 0.2}}
    assert silence_warnings(rates) == [
        "layer a fires no spike in the emulator run (the float model fires 0.1 per neuron "
        "and step); every later layer sees no input. Check the inputs' scale and the "
        "thresholds"]


def test_a_runner_that_disagrees_with_the_emulator_fails_verify(mlp_ckpt, tmp_path, capsys,
                                                                 monkeypatch):
    pytest.importorskip("onnxruntime")
    from cf2neuro.backends.onnx.runner import OnnxRuntimeRunner

    real = OnnxRuntimeRunner.run

    def off_by_one(self, request):
        res = real(self, request)
        res.outputs["output"] = np.asarray(res.outputs["output"]).copy()
        res.outputs["output"][0, 0, 0] += 1
        return res

    monkeypatch.setattr(OnnxRuntimeRunner, "run", off_by_one)
    assert _verify(mlp_ckpt, tmp_path / "r", runner="onnxruntime") == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "passed" not in out
    report = json.loads((tmp_path / "r" / "verify.json").read_text())
    assert not report["passed"] and report["exact_match"]["output"] < 1


def test_an_accuracy_drop_beyond_max_drop_fails_verify(mlp_ckpt, tmp_path, capsys):
    """A bound no run can meet (quantized must beat float by 100 pp) fails: exit 1."""
    assert _verify(mlp_ckpt, tmp_path / "r", "--max-drop", "-100") == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "passed" not in out
