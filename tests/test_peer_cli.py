"""The peer options on the command line: `export --for`, `run/verify/energy --from`."""

import json

import numpy as np
import pytest

from cf2neuro.cli import main as cli

ZERO = ["--neuron", "reset=zero", "--neuron", "max_spikes=1", "--neuron", "signed=false"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("peer-cli")
    assert cli(["train", "--epochs", "3", "--out", str(root / "zero"), "--quiet", *ZERO]) == 0
    assert cli(["train", "--epochs", "1", "--out", str(root / "cf"), "--quiet"]) == 0
    return root


def test_export_for_a_peer_refuses_what_it_cannot_run(ckpts, tmp_path, capsys):
    out = tmp_path / "x.nir"
    assert cli(["export", str(ckpts / "cf"), "--out", str(out), "--for", "snntorch"]) == 2
    err = capsys.readouterr().err
    assert "snntorch cannot run this network exactly" in err
    assert "reset by subtraction" in err and "train with --neuron reset=zero" in err
    assert not out.exists()


@pytest.mark.parametrize("peer", ["snntorch", "norse"])
def test_verify_and_energy_read_a_peer_file_as_the_checkpoint(peer, ckpts, tmp_path, capsys):
    """A file written --for PEER, read back --from PEER, verifies like its checkpoint."""
    f = tmp_path / f"{peer}.nir"
    assert cli(["export", str(ckpts / "zero"), "--out", str(f), "--for", peer]) == 0
    assert f"for {peer}" in capsys.readouterr().out
    reports = {}
    for name, src in (("ckpt", [str(ckpts / "zero")]), ("file", [str(f), "--from", peer])):
        r = tmp_path / name
        assert cli(["verify", *src, "--target", "loihi2", "--data", "digits", "--runner",
                    "emulator", "--limit", "120", "--report", str(r)]) == 0
        reports[name] = json.loads((r / "verify.json").read_text())
    a, b = reports["ckpt"], reports["file"]
    assert a["float_accuracy"] == b["float_accuracy"]
    assert abs(a["quantized_accuracy"] - b["quantized_accuracy"]) <= 0.02
    e = tmp_path / "energy"
    assert cli(["energy", str(f), "--from", peer, "--target", "loihi2", "--data", "digits",
                "--limit", "16", "--report", str(e), "--quiet"]) == 0
    assert json.loads((e / "energy.json").read_text())["targets"]["loihi2"][
        "total_joules_per_inference"] > 0


def test_run_from_a_peer(tmp_path, capsys):
    from conftest import require_corpus

    x = np.zeros((1000, 1, 1), np.float32)
    x[:, 0, 0] = np.loadtxt(require_corpus("lif_snntorch.csv"), delimiter=",")[:, 0]
    np.savez(tmp_path / "in.npz", x=x)
    assert cli(["run", str(require_corpus("lif_norse.nir")), "--from", "snntorch",
                "--inputs", str(tmp_path / "in.npz"), "--out", str(tmp_path / "o.npz"),
                "--probe", "v:1"]) == 0
    v = np.load(tmp_path / "o.npz")["v:1"][:, 0, 0]
    assert v.max() > 2  # snnTorch's membrane, 25x Norse's


def test_from_a_checkpoint_is_refused(ckpts, tmp_path, capsys):
    assert cli(["verify", str(ckpts / "zero"), "--from", "snntorch", "--target", "loihi2",
                "--data", "digits", "--report", str(tmp_path / "r")]) == 2
    assert "reads a NIR file" in capsys.readouterr().err
