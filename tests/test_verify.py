"""`cf2neuro verify`: the report contract (DESIGN §8) against the real emulator and Lava."""

import json

import pytest
import torch
from test_report import float_verify, html_tables, md_tables

from cf2neuro.cli import main as cli
from cf2neuro.report import VerifyRecord, format_percent, format_pp, write_report
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


def _table(tables, header0):
    """The first table whose header starts with `header0`, as {first cell: other cells}."""
    rows = next(t for t in tables if t[0][0] == header0)
    return {row[0]: row[1:] for row in rows[1:]}


def assert_same_numbers(directory):
    """verify.json, verify.md and verify.html say the same: the md and html tables are equal
    cell for cell, and each cell is the json value, formatted."""
    r = _report(directory)
    md = (directory / "verify.md").read_text()
    page = (directory / "verify.html").read_text()
    tables = md_tables(md)
    assert tables and tables == html_tables(page)
    acc = _table(tables, "")
    assert acc["float reference"][0] == format_percent(r["float_accuracy"])
    assert acc[f"{r['runner']} runner"] == [format_percent(r["runner_accuracy"]),
                                            format_percent(r["runner_argmax_agreement"])]
    rates = _table(tables, "layer")
    for layer, x in r["spike_rates"].items():
        assert rates[layer][0] == f"{x['float']:.4f}" and f"{x['runner']:.4f}" in rates[layer]
    if r["quantized"]:
        assert acc["quantized (emulator)"] == [format_percent(r["quantized_accuracy"]),
                                               format_percent(r["argmax_agreement"])]
        exact = _table(tables, "probe")
        assert exact == {p: [format_percent(v)] for p, v in r["exact_match"].items()}
        drop = format_pp(r["accuracy_drop_pp"])
        assert f"**{drop}**" in md and f"<strong>{drop}</strong>" in page
        assert f"calibrated on {r['calibration']['samples']} samples of the training split" in md
    else:
        agree = _table(tables, "probe")
        assert {p: v[0] for p, v in agree.items()} == {
            p: format_percent(v, 3) for p, v in r["spike_agreement"].items()}
        assert "no quantization" in md and "emulator" not in tables[0][0]
    verdict = "PASSED" if r["passed"] else "FAILED"
    assert f"**{verdict}**" in md and f"<strong>{verdict}</strong>" in page


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
    assert_same_numbers(tmp_path)
    assert "passed" in capsys.readouterr().out


def test_max_drop_gates_the_exit_code(digits_ckpt, tmp_path, capsys):
    # a negative bound cannot hold: the check fails, exit code 1, report still written
    rc = cli(["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits",
              "--runner", "emulator", "--max-drop", "-100", "--report", str(tmp_path)])
    r = _report(tmp_path)
    assert rc == 1 and not r["passed"] and r["samples"] == 359
    assert "FAILED" in capsys.readouterr().out
    assert_same_numbers(tmp_path)
    assert "(bound -100.0 pp)" in (tmp_path / "verify.md").read_text()


def test_a_float_target_is_verified_and_reported_without_quantizing(digits_ckpt, tmp_path,
                                                                     capsys):
    """cmos45 has no fixed point: the reference runner against the float model, no emulator."""
    rc = cli(["verify", str(digits_ckpt), "--target", "cmos45", "--data", "digits",
              "--limit", "100", "--report", str(tmp_path)])
    r = _report(tmp_path)
    assert rc == 0 and r["passed"] and not r["quantized"] and "calibration" not in r
    assert_same_numbers(tmp_path)
    md = (tmp_path / "verify.md").read_text()
    assert "## Flipped spikes" in md and "quantized (emulator)" not in md
    out = capsys.readouterr().out
    assert "no quantization" in out and "verify.html" in out


def test_float_target_report_lists_its_flips_with_margins(tmp_path):
    """A float runner that flipped two spikes at a threshold: both listed with their margins."""
    record = VerifyRecord.from_json(float_verify())
    paths = write_report(record, tmp_path)
    assert set(paths) == {"verify.json", "verify.md", "verify.html"}
    assert _report(tmp_path) == float_verify()
    assert_same_numbers(tmp_path)
    md = (tmp_path / "verify.md").read_text()
    flips = next(t for t in md_tables(md) if t[0][0] == "probe" and "margin (θ)" in t[0])
    assert flips == [["probe", "step", "sample", "neuron", "reference", "runner", "margin (θ)"],
                     ["layers.2", "2", "41", "17", "1", "0", "1.19e-07"],
                     ["layers.2", "3", "41", "17", "0", "1", "2.5e-08"]]
    assert "2 spikes listed" in md and "no quantization" in md
    assert "| layers.2 | 99.998 % | 99.72 % |" in md
    assert "<td class=\"r\">1.19e-07</td>" in (tmp_path / "verify.html").read_text()
    none = write_report(VerifyRecord.from_json(float_verify(flips=[])), tmp_path / "none")
    assert "No spike differs from the float reference." in open(none["verify.md"]).read()


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


@pytest.mark.parametrize("runner", ["emulator", "lava", "onnxruntime"])
def test_verify_timeout_stops_every_runner(digits_ckpt, tmp_path, capsys, runner, request):
    """--timeout bounds the target runner, whichever it is: exit 2, a one-line reason, no report."""
    if runner == "lava":
        request.getfixturevalue("lava_python")
    argv = ["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits", "--runner",
            runner, "--timeout", "1e-6", "--report", str(tmp_path / "r")]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "timeout" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r" / "verify.json").exists()


def test_a_refused_target_without_a_fallback_is_refused_in_energy(digits_ckpt, tmp_path,
                                                                  monkeypatch):
    """loihi prices a refused model on its loihi2 form only because its file says so."""
    from cf2neuro.energy import energy_report
    from cf2neuro.errors import UnsupportedError
    from cf2neuro.targets import load_target

    text = open(load_target("loihi").path).read()
    (tmp_path / "strict.toml").write_text(
        text.replace('name = "loihi"', 'name = "strict"').replace(
            'fallback_quantization = "loihi2"', ""))
    monkeypatch.setenv("CF2NEURO_TARGETS", str(tmp_path))
    with pytest.raises(UnsupportedError, match="binary spikes only"):
        energy_report(digits_ckpt, targets="strict", limit=20, progress=False)
    rep = energy_report(digits_ckpt, targets="loihi", limit=20, progress=False)
    assert rep["targets"]["loihi"]["deployable"] is False


def test_data_overrides_replace_the_checkpoints_encoding(digits_ckpt, tmp_path, capsys):
    """verify reads the encoding from the checkpoint; --encoding poisson replaces it."""
    from cf2neuro.errors import ConfigError
    from cf2neuro.verify import test_inputs

    x, _ = test_inputs(digits_ckpt, limit=20)
    assert not set(x.unique().tolist()) <= {0.0, 1.0}  # direct: analog pixels
    xp, _ = test_inputs(digits_ckpt, limit=20, overrides={"encoding": "poisson"})
    assert set(xp.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="cannot override"):
        test_inputs(digits_ckpt, overrides={"seed": 3})
    assert cli(["verify", str(digits_ckpt), "--target", "loihi2", "--data", "digits",
                "--runner", "emulator", "--limit", "40", "--encoding", "poisson",
                "--report", str(tmp_path / "p")]) in (0, 1)
    r = _report(tmp_path / "p")
    assert r["samples"] == 40 and r["exact_match"]["output"] == 1.0
