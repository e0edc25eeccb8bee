"""Training on digits, checkpoints, resume, the CLI contract and DDP on CPU."""

import json
import os
import subprocess
import sys

import pytest
import torch

from cf2neuro.checkpoint import load_checkpoint, load_train_state, save_checkpoint
from cf2neuro.cli import main as cli
from cf2neuro.errors import CheckpointError, ConfigError
from cf2neuro.train import TrainConfig, train

FAST = dict(epochs=2, lr=2e-2)


def weights(directory):
    model, _, _ = load_checkpoint(directory)
    return model.state_dict()


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    metrics = train(TrainConfig(epochs=8, lr=2e-2), out, progress=False)
    return out, metrics


def test_short_digits_run_learns_well_above_chance(trained):
    _, metrics = trained
    history = metrics["history"]
    assert len(history) == 8
    assert metrics["test_accuracy"] > 0.85  # chance is 0.10
    assert history[-1]["test_accuracy"] > history[0]["test_accuracy"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_checkpoint_round_trip(trained):
    out, metrics = trained
    for name in ("model.safetensors", "config.json", "metrics.json",
                 "train_state.safetensors"):
        assert (out / name).is_file()
    model, config, saved = load_checkpoint(out)
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert config["model"]["name"] == "mlp" and config["train"]["epochs"] == 8
    # the reloaded model reproduces the recorded test accuracy
    from cf2neuro.data import load_dataset
    from cf2neuro.train import evaluate

    bundle = load_dataset("digits", seed=0)
    cfg = TrainConfig.from_dict(config["train"])
    assert evaluate(model, bundle, cfg, torch.device("cpu")) == metrics["test_accuracy"]


def test_seed_makes_cpu_training_reproducible(tmp_path):
    train(TrainConfig(seed=3, **FAST), tmp_path / "a", progress=False)
    train(TrainConfig(seed=3, **FAST), tmp_path / "b", progress=False)
    train(TrainConfig(seed=4, **FAST), tmp_path / "c", progress=False)
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))


def test_resume_from_a_stopped_run_matches_an_uninterrupted_one(tmp_path):
    cfg = TrainConfig(epochs=3, lr=2e-2, pn_lambda=0.1)
    full = train(cfg, tmp_path / "full", progress=False)
    stopped = tmp_path / "stopped"
    with pytest.raises(_Stop):
        train(cfg, stopped, progress=False, on_epoch=_stop_after(1))
    assert json.loads((stopped / "metrics.json").read_text())["epochs"] == 1
    resumed = train(cfg, stopped, resume=True, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert same_weights(weights(stopped), weights(tmp_path / "full"))


class _Stop(Exception):
    pass


def _stop_after(n):
    def hook(epoch):
        if epoch >= n:
            raise _Stop
    return hook


def test_resume_refuses_a_different_model(tmp_path):
    train(TrainConfig(epochs=1), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="differ"):
        train(TrainConfig(epochs=2, timesteps=6), tmp_path, resume=True, progress=False)


# --- broken checkpoints ------------------------------------------------------------

@pytest.fixture
def checkpoint_copy(trained, tmp_path):
    src, _ = trained
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


def test_truncated_weights_are_refused(checkpoint_copy):
    path = checkpoint_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(checkpoint_copy)


def test_flipped_byte_is_refused(checkpoint_copy):
    path = checkpoint_copy / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(checkpoint_copy)


def test_garbage_weights_without_hash_are_refused(checkpoint_copy):
    config = json.loads((checkpoint_copy / "config.json").read_text())
    del config["weights_sha256"]
    (checkpoint_copy / "config.json").write_text(json.dumps(config))
    (checkpoint_copy / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(checkpoint_copy)


def _same(a, b):
    """Equal values of exactly the same types, recursively (tensors bit for bit)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_train_state_round_trip_keeps_types_without_pickle(trained, tmp_path):
    model, config, metrics = load_checkpoint(trained[0])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    model(torch.rand(4, 2, 1, 8, 8)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "epoch": 3,
             "scale": float("inf"), "nothing": None}
    save_checkpoint(tmp_path, model, config, metrics, state)
    back = load_train_state(tmp_path)
    assert _same(state, back)
    assert all(isinstance(k, int) for k in back["optimizer"]["state"])  # Adam's param ids
    raw = (tmp_path / "train_state.safetensors").read_bytes()  # safetensors: u64 + JSON header
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert "tree" in header["__metadata__"]


def test_broken_config_and_train_state(checkpoint_copy):
    (checkpoint_copy / "train_state.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot resume"):
        train(TrainConfig(epochs=9), checkpoint_copy, resume=True, progress=False)
    (checkpoint_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(checkpoint_copy)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


# --- the command line ----------------------------------------------------------------

def test_cli_train_contract(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["train", "--model", "mlp", "--data", "digits", "--epochs", "2",
                "--timesteps", "3", "--seed", "1", "--out", str(out), "--quiet",
                "--neuron", "max_spikes=2", "--model-option", "hidden=[64]"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["hidden"] == [64] and config["model"]["neuron"]["max_spikes"] == 2
    assert config["model"]["timesteps"] == 3
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv,needle", [
    (["train", "--model", "nope", "--out", "X"], "unknown model"),
    (["train", "--data", "cifar10", "--data-root", "/nonexistent", "--out", "X"], "cifar10"),
    (["train", "--neuron", "beta=7", "--out", "X"], "beta"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, needle, tmp_path, capsys):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_runs_as_a_module(tmp_path):
    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "cf2neuro", "train", "--epochs", "1",
                           "--out", str(out), "--quiet"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model.safetensors").is_file()


# --- DDP -------------------------------------------------------------------------------

def test_two_process_ddp_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", "29517", "-m", "cf2neuro", "train", "--epochs", "4", "--lr", "0.02",
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["test_accuracy"] > 0.6
    # each rank trained on half of the 1437 training images per epoch
    assert proc.stdout.count("test accuracy") == 1


def test_event_frames_train_end_to_end(tmp_path):
    # N-MNIST files in the original 40-bit event format, binned into 4 frames
    import data_files as df

    root = tmp_path / "data" / "nmnist"
    for split, n in (("Train", 6), ("Test", 3)):
        for i in range(n):
            digit = i % 2
            events = [(3 + digit * 20 + (k % 5), 5 + k % 7, 10 * k, k % 2) for k in range(40)]
            df.write_nmnist_bin(root / split / str(digit) / f"{i:05d}.bin", events)
    metrics = train(TrainConfig(data="nmnist", data_root=str(tmp_path / "data"), epochs=2,
                                batch_size=4, data_options={"frames": 4},
                                model_options={"hidden": [16]}), tmp_path / "out",
                    progress=False)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["data"]["input_shape"] == [2, 34, 34] and config["data"]["kind"] == "frames"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_each_zoo_network_has_its_default_learning_rate(tmp_path):
    """lr None takes the model's default (deep networks stall at 1e-2) and is recorded."""
    import json

    from cf2neuro.nn.models import DEFAULT_LR, default_lr, model_names

    assert set(DEFAULT_LR) == set(model_names())
    assert default_lr("resnet19") == default_lr("vgg11") == default_lr("spikformer") == 1e-3
    assert default_lr("mlp") == 1e-2
    train(TrainConfig(epochs=1), tmp_path / "a", progress=False)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["lr"] == 1e-2
    train(TrainConfig(epochs=1, lr=3e-3), tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["lr"] == 3e-3


def test_train_refuses_up_front_what_the_target_cannot_run(tmp_path, capsys):
    """--target loihi sets its neurons (binary, unsigned, reset to zero: test_train_target);
    what training cannot change, analog pixels as inputs, is refused before any step."""
    out = tmp_path / "run"
    assert cli(["train", "--target", "loihi", "--epochs", "1", "--out", str(out),
                "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--target loihi" in err and "--encoding poisson" in err and "Nothing was trained" in err
    assert not (out / "model.safetensors").exists()
    assert cli(["train", "--target", "loihi", "--epochs", "1", "--out", str(out), "--quiet",
                "--encoding", "poisson"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["target"] == "loihi"
