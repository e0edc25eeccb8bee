"""`train --target NAME` sets what the target's neurons must be ([training] of its file)."""

import json
import shutil

import pytest

from cf2neuro.cli import main as cli
from cf2neuro.targets import TARGETS_DIR, TargetError, load_target
from cf2neuro.targets.training import constrain
from cf2neuro.train import TrainConfig


def test_loihi_training_is_binary_unsigned_and_resets_to_zero(tmp_path, capsys):
    out = tmp_path / "ck"
    assert cli(["train", "--epochs", "1", "--target", "loihi", "--encoding", "poisson",
                "--out", str(out), "--quiet"]) == 0
    neuron = json.loads((out / "config.json").read_text())["train"]["neuron"]
    assert neuron == {"signed": False, "max_spikes": 1, "reset": "zero"}
    changes = json.loads((out / "metrics.json").read_text())["target_changes"]
    assert "neuron signed: True -> False" in changes
    assert any(c.startswith("because Loihi sends binary spikes") for c in changes)


def toy_target(tmp_path, monkeypatch, training: str):
    d = tmp_path / "targets"
    d.mkdir()
    text = (TARGETS_DIR / "loihi2.toml").read_text().replace('name = "loihi2"', 'name = "toy"')
    (d / "toy.toml").write_text(text + "\n[training]\n" + training)
    monkeypatch.setenv("CF2NEURO_TARGETS", str(d))
    return "toy"


@pytest.mark.parametrize("given, want, changed", [({"max_spikes": 8}, 3, True),
                                                  ({"max_spikes": 2}, 2, False),
                                                  ({}, 1, False)])
def test_an_upper_bound_caps_only_what_exceeds_it(given, want, changed, tmp_path, monkeypatch):
    name = toy_target(tmp_path, monkeypatch, 'reason = "r"\nneuron_max = { max_spikes = 3 }\n')
    cfg, changes = constrain(TrainConfig(neuron=given, target=name), name)
    assert cfg.neuron.get("max_spikes", 1) == want
    assert bool(changes) == changed


def test_a_malformed_training_table_is_refused(tmp_path, monkeypatch):
    name = toy_target(tmp_path, monkeypatch, 'neuron = 3\n')
    with pytest.raises(TargetError, match=r"\[training\]"):
        load_target(name)
    shutil.rmtree(tmp_path / "targets")
