"""Command-line values out of range: refused before any work, exit 2, one line, no file."""

import math

import numpy as np
import pytest
from .catalogue_helpers import cli_refuses
from .checks import cf2neuro, nothing_partial, refused

from cf2neuro.errors import ConfigError
from cf2neuro.train import TrainConfig, train

TRAIN = ["train", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("option, value, words", [
    ("--batch-size", "0", ["--batch-size", ">= 1", "'0'"]),
    ("--batch-size", "-3", ["--batch-size", ">= 1"]),
    ("--batch-size", "two", ["--batch-size", "whole number"]),
    ("--lr", "nan", ["--lr", "finite", "> 0"]),
    ("--lr", "inf", ["--lr", "finite"]),
    ("--lr", "0", ["--lr", "> 0"]),
    ("--lr", "-1e-3", ["--lr", "> 0"]),
    ("--epochs", "0", ["--epochs", ">= 1"]),
    ("--epochs", "-1", ["--epochs", ">= 1"]),
    ("--timesteps", "0", ["--timesteps", ">= 1"]),
    ("--pn-lambda", "nan", ["--pn-lambda", "finite"]),
    ("--pn-lambda", "-0.5", ["--pn-lambda", ">= 0"]),
])
def test_train_refuses_an_option_out_of_range(option, value, words, tmp_path, capsys):
    out = tmp_path / "ck"
    cli_refuses(capsys, [*TRAIN, "--out", out, f"{option}={value}"], *words)
    assert not out.exists()


@pytest.mark.parametrize("argv, words", [
    (["run", "{ck}", "--inputs", "{x}", "--out", "{o}", "--timeout", "0"], ["--timeout", "> 0"]),
    (["run", "{ck}", "--inputs", "{x}", "--out", "{o}", "--timeout", "nan"], ["--timeout"]),
    (["run", "{ck}", "--inputs", "{x}", "--out", "{o}", "--timeout", "-5"], ["--timeout"]),
    (["run", "{ck}", "--inputs", "{x}", "--out", "{o}", "--dt", "nan"], ["--dt", "finite"]),
    (["export", "{ck}", "--out", "{o}.nir", "--dt", "0"], ["--dt", "> 0"]),
    (["export", "{ck}", "--out", "{o}.onnx", "--timesteps", "0"], ["T >= 1"]),
    (["energy", "{ck}", "--data", "digits", "--limit", "0", "--report", "{o}", "--quiet"],
     ["--limit", ">= 1"]),
    (["verify", "{ck}", "--target", "loihi2", "--data", "digits", "--runner", "emulator",
      "--limit", "0", "--report", "{o}"], ["--limit", ">= 1"]),
    (["verify", "{ck}", "--target", "loihi2", "--data", "digits", "--runner", "emulator",
      "--timeout", "0", "--report", "{o}"], ["--timeout", "> 0"]),
    (["verify", "{ck}", "--target", "loihi2", "--data", "digits", "--runner", "emulator",
      "--timeout", "nan", "--report", "{o}"], ["--timeout", "finite"]),
    (["verify", "{ck}", "--target", "loihi2", "--data", "digits", "--runner", "emulator",
      "--max-drop", "nan", "--report", "{o}"], ["--max-drop", "finite"]),
    (["verify", "{ck}", "--target", "loihi2", "--data", "digits", "--runner", "emulator",
      "--max-drop", "inf", "--report", "{o}"], ["--max-drop", "finite"]),
])
def test_other_commands_refuse_an_option_out_of_range(argv, words, mlp_ckpt, tmp_path,
                                                      capsys):
    x = tmp_path / "x.npz"
    np.savez(x, x=np.zeros((4, 2, 1, 8, 8), np.float32))
    out = tmp_path / "out"
    argv = [a.format(ck=mlp_ckpt, x=x, o=out) for a in argv]
    cli_refuses(capsys, argv, *words)
    nothing_partial(out, out.with_suffix(".nir"), out.with_suffix(".onnx"))
    assert not (out / "verify.json").exists()


@pytest.mark.parametrize("change, words", [
    ({"batch_size": 0}, ["batch_size (--batch-size)", ">= 1", "pass a valid value"]),
    ({"lr": math.nan}, ["lr", "finite"]),
    ({"epochs": 0}, ["epochs", ">= 1"]),
    ({"timesteps": True}, ["timesteps", "int"]),
    ({"weight_decay": -1.0}, ["weight_decay", ">= 0"]),
    ({"loss": "mse"}, ["loss", "'ce' or 'tet'"]),
    ({"neuron": [1]}, ["neuron", "dict"]),
])
def test_the_python_api_refuses_the_same_values(change, words, tmp_path):
    with pytest.raises(ConfigError) as e:
        train(TrainConfig(**change), tmp_path / "ck", progress=False)
    for w in words:
        assert w in str(e.value)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize("option", ["hidden=[10000000,10000000]", "hidden=[1000000000]"])
def test_a_model_too_big_for_memory_is_refused_with_its_size(option, tmp_path, capsys):
    out = tmp_path / "ck"
    err = cli_refuses(capsys, [*TRAIN, "--out", out, "--model-option", option],
                      "parameters", "GiB", "nothing was allocated", "--model-option")
    assert "available" in err
    assert not out.exists()


def test_too_many_channels_for_the_batch_is_refused_with_its_size(tmp_path, capsys):
    out = tmp_path / "ck"
    cli_refuses(capsys, [*TRAIN, "--out", out, "--model", "vgg-small", "--model-option",
                         "channels=[100000]", "--batch-size", "4096"],
                "--batch-size 4096", "GiB")
    assert not out.exists()


def test_through_the_shell_a_zero_batch_is_one_line(tmp_path):
    out = tmp_path / "ck"
    refused(cf2neuro(*TRAIN, "--out", out, "--batch-size", "0"), "--batch-size", ">= 1")
    nothing_partial(out / "model.safetensors")
    assert not out.exists()
