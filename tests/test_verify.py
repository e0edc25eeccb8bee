"""`cf2neuro verify`: the report contract (DESIGN §8) against the real emulator and Lava."""

import json

import pytest
import torch

from cf2neuro.cli import main as cli
from cf2neuro.train import TrainConfig, train

KEYS = {"target", "runner", "samples", "float_accuracy", "quantized_accuracy", "runner_accuracy",
        "accuracy_drop_pp", "argmax_agreement", "exact_match", "passed"}


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    train(TrainConfig(epochs=15, lr=2e-2), out, progress=False)
    return out


def _report(directory):
    return json.loads((directory / "verify.json").read_text())


def test_verify_on_lava_is_bit_exact_with_the_emulator(digits_ckpt, tmp_path, capsys):
    rc = cli(["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits",
              "--runner", "lava", "--limit", "60", "--max-drop", "3", "--report", str(tmp_path)])
    r = _report(tmp_path)
    assert rc == 0 and r["passed"] and KEYS <= set(r)
    assert r["samples"] == 60 and r["runner"] == "lava" and r["target"] == "loihi2"
    # Lava computes exactly what the emulator computes: every spike train, every membrane
    assert set(r["exact_match"]) >= {"output", "layers.2", "layers.4", "v:layers.2", "v:layers.4"}
    assert all(v == 1.0 for v in r["exact_match"].values())
    assert r["runner_accuracy"] == r["quantized_accuracy"]
    assert r["float_accuracy"] > 0.85 and r["argmax_agreement"] > 0.95
    assert abs(r["accuracy_drop_pp"] - 100 * (r["float_accuracy"] - r["quantized_accuracy"])) < 1e-9
    md = (tmp_path / "verify.md").read_text()
    assert "PASSED" in md and "layers.2" in md
    assert "passed" in capsys.readouterr().out


def test_max_drop_gates_the_exit_code(digits_ckpt, tmp_path, capsys):
    # a negative bound cannot hold: the check fails, exit code 1, report still written
    rc = cli(["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits",
              "--runner", "emulator", "--max-drop", "-100", "--report", str(tmp_path)])
    r = _report(tmp_path)
    assert rc == 1 and not r["passed"] and r["samples"] == 359
    assert "FAILED" in capsys.readouterr().out


def test_unknown_target_is_bad_input(digits_ckpt, tmp_path, capsys):
    rc = cli(["verify", str(digits_ckpt), "--target", "truenorth", "--data", "digits",
              "--report", str(tmp_path)])
    assert rc == 2 and "truenorth" in capsys.readouterr().err
    assert not (tmp_path / "verify.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_device_without_a_gpu_is_bad_input(digits_ckpt, tmp_path, capsys):
    rc = cli(["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits",
              "--runner", "emulator", "--device", "cuda", "--report", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "no CUDA GPU" in err and "--device cpu" in err
    assert not (tmp_path / "verify.json").exists()


def test_unknown_device_is_bad_input(digits_ckpt, tmp_path, capsys):
    rc = cli(["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits",
              "--device", "gpu", "--report", str(tmp_path)])
    assert rc == 2 and "unknown device 'gpu'" in capsys.readouterr().err
