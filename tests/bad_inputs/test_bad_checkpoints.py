"""Checkpoints and train states that cannot be used: refused with the file and the fix."""

import shutil

import numpy as np
import pytest
import torch
from .catalogue_helpers import cli_refuses, spoiled
from .checks import cf2neuro, nothing_partial, refused

from cf2neuro.checkpoint import load_checkpoint
from cf2neuro.errors import CheckpointError
from cf2neuro.train import TrainConfig, train


def _scale(key, factor):
    return lambda s: {**s, key: s[key] * factor}


CONFIGS = {  # name: (spoil config.json, words of the message)
    "a list": (dict(raw_config="[1, 2]"), ["config.json", "JSON list", "re-create"]),
    "not JSON": (dict(raw_config="{not json"), ["config.json", "not valid JSON"]),
    "no model": (dict(config=lambda c: {k: v for k, v in c.items() if k != "model"}),
                 ["config.json", "no model section"]),
    "model a string": (dict(config=lambda c: {**c, "model": "mlp"}),
                       ["config.json", "'model' section is not an object"]),
    "hidden a string": (dict(config=lambda c: {**c, "model": {**c["model"], "hidden": "abc"}}),
                        ["config.json", "hidden must be a list of positive ints"]),
    "train a list": (dict(config=lambda c: {**c, "train": [1]}),
                     ["config.json", "'train' section is not an object"]),
    "data an int": (dict(config=lambda c: {**c, "data": 5}),
                    ["config.json", "'data' section"]),
    "train batch_size 0": (dict(config=lambda c: {**c, "train": {**c["train"], "batch_size": 0}}),
                           ["config.json", "batch_size", ">= 1"]),
    "huge hidden": (dict(config=lambda c: {**c, "model": {**c["model"],
                                                           "hidden": [10 ** 7, 10 ** 7]}}),
                    ["config.json", "GiB", "nothing was allocated"]),
    "shapes differ": (dict(config=lambda c: {**c, "model": {**c["model"], "hidden": [128, 256]}}),
                      ["model.safetensors", "layers.1.weight", "[256, 64]", "[128, 64]"]),
    "NaN weights": (dict(weights=_scale("layers.1.weight", float("nan"))),
                    ["model.safetensors", "layers.1.weight", "NaN or infinite"]),
    "Inf weights": (dict(weights=lambda s: {**s, "layers.3.bias": s["layers.3.bias"] + np.inf}),
                    ["model.safetensors", "layers.3.bias", "NaN or infinite"]),
    "integer weights": (dict(weights=lambda s: {k: (v * 100).to(torch.int32) for k, v in s.items()
                                                if v.is_floating_point()}),
                        ["model.safetensors", "torch.int32", "float32"]),
    "a tensor missing": (dict(weights=lambda s: {k: v for k, v in s.items()
                                                 if k != "layers.5.bias"}),
                         ["model.safetensors", "missing", "layers.5.bias"]),
}


READERS = [(case, command) for case in CONFIGS for command in ("export", "verify")
           if (case, command) != ("train batch_size 0", "export")]  # export reads no train options


@pytest.mark.parametrize("case,command", READERS)
def test_a_bad_checkpoint_is_refused_by_every_reader(case, command, mlp_ckpt, tmp_path, capsys):
    spoil, words = CONFIGS[case]
    ck = spoiled(mlp_ckpt, tmp_path / "ck", **spoil)
    out = tmp_path / "out"
    argv = {"export": ["export", ck, "--out", out / "m.nir"],
            "verify": ["verify", ck, "--target", "loihi2", "--data", "digits", "--runner",
                       "emulator", "--limit", "8", "--report", out]}[command]
    err = cli_refuses(capsys, argv, *words)
    assert "passed" not in err
    nothing_partial(out / "m.nir", out / "verify.json")


def test_the_python_api_gets_the_same_checkpoint_error(mlp_ckpt, tmp_path):
    ck = spoiled(mlp_ckpt, tmp_path / "ck", **CONFIGS["NaN weights"][0])
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(ck)


def test_through_the_shell_nan_weights_never_pass_verify(mlp_ckpt, tmp_path, no_leftovers):
    ck = spoiled(mlp_ckpt, tmp_path / "ck", **CONFIGS["NaN weights"][0])
    res = cf2neuro("verify", ck, "--target", "loihi2", "--data", "digits", "--runner",
                   "emulator", "--limit", "8", "--report", tmp_path / "r")
    err = refused(res, "layers.1.weight", "NaN")
    assert "passed" not in res.stdout + err
    nothing_partial(tmp_path / "r" / "verify.json")


@pytest.fixture(scope="module")
def other_state(tmp_path_factory):
    """The train state of a narrower MLP (another model)."""
    ck = tmp_path_factory.mktemp("other") / "ck"
    train(TrainConfig(epochs=1, model_options={"hidden": [32]}), ck, progress=False)
    return ck / "train_state.safetensors"


def test_resume_with_the_train_state_of_another_model(mlp_ckpt, other_state, tmp_path, capsys):
    ck = spoiled(mlp_ckpt, tmp_path / "ck")
    shutil.copy(other_state, ck / "train_state.safetensors")
    before = (ck / "model.safetensors").read_bytes()
    cli_refuses(capsys, ["train", "--epochs", "2", "--quiet", "--resume", "--out", ck],
                "cannot resume", "train_state.safetensors", "another model", "without --resume")
    assert (ck / "model.safetensors").read_bytes() == before  # nothing overwritten


def test_resume_with_a_garbled_train_state(mlp_ckpt, tmp_path, capsys):
    ck = spoiled(mlp_ckpt, tmp_path / "ck")
    data = (ck / "train_state.safetensors").read_bytes()
    (ck / "train_state.safetensors").write_bytes(data[: len(data) // 2])
    cli_refuses(capsys, ["train", "--epochs", "2", "--quiet", "--resume", "--out", ck],
                "cannot resume", "train_state.safetensors")


def test_resume_with_a_config_that_is_a_list(mlp_ckpt, tmp_path, capsys):
    ck = spoiled(mlp_ckpt, tmp_path / "ck", raw_config="[]")
    cli_refuses(capsys, ["train", "--epochs", "2", "--quiet", "--resume", "--out", ck],
                "config.json", "JSON list")


def test_a_pickle_payload_never_executes(mlp_ckpt, tmp_path, capsys):
    """A weights file replaced by a pickle that would write a file when unpickled."""
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ck = spoiled(mlp_ckpt, tmp_path / "ck")
    (ck / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    (ck / "train_state.safetensors").write_bytes(pickle.dumps(Payload()))
    cli_refuses(capsys, ["export", ck, "--out", tmp_path / "m.nir"], "model.safetensors")
    cli_refuses(capsys, ["train", "--epochs", "2", "--quiet", "--resume", "--out", ck],
                "model.safetensors")
    assert not marker.exists()
