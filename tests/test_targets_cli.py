"""`cf2neuro targets`, and unknown targets, runners and back ends as clear bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cf2neuro.backends import backend_names, get_backend
from cf2neuro.cli import main
from cf2neuro.errors import BadInputError
from cf2neuro.runners import get_runner, runner_names
from cf2neuro.targets import known_targets, load_target


def _bad(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_targets_lists_every_target_with_backend_limits_and_runners(capsys):
    assert main(["targets", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(known_targets()) >= {"loihi2", "loihi", "cmos45", "onnx"}
    for name, r in rows.items():
        t = load_target(name)
        assert r["backend"] == t.backend and list(r["runners"]) == list(t.runners)
        assert r["limits"] == {k: v.value for k, v in t.resources.items()}
        for runner, state in r["runners"].items():  # availability is the runner's own answer
            assert (state["available"], state["note"]) == get_runner(runner).available()
    assert rows["loihi2"]["numeric"]["weight_bits"] == 8 and rows["onnx"]["numeric"] is None
    assert main(["targets"]) == 0
    text = capsys.readouterr().out
    for name in rows:
        assert f"{name}: " in text
    assert "runner    lava [default]" in text and "back end  loihi2" in text


def test_every_target_names_runners_and_a_back_end_that_exist():
    for name in known_targets():
        t = load_target(name)
        assert set(t.runners) <= set(runner_names()), name
        if t.numeric is not None:
            b = get_backend(t.backend)
            assert b.numerics and b.quantizer, name
    assert set(backend_names()) >= {"loihi2", "onnx"}


def test_unknown_names_are_bad_input(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1, 3), np.float32))
    graph = tmp_path / "g.nir"
    err = _bad(["run", graph, "--runner", "warp", "--inputs", tmp_path / "x.npz",
                "--out", tmp_path / "y.npz"], capsys)
    assert "unknown runner 'warp'" in err and "onnxruntime" in err
    err = _bad(["runtime", "setup", "warp"], capsys)
    assert "unknown runner 'warp'" in err
    with pytest.raises(BadInputError, match="unknown back end 'nope'"):
        get_backend("nope")


def test_a_fixed_point_target_without_a_back_end_is_refused(tmp_path, monkeypatch):
    text = (load_target("loihi2").path and open(load_target("loihi2").path).read())
    bad = "\n".join(line for line in text.splitlines() if not line.startswith("backend"))
    (tmp_path / "chip.toml").write_text(bad.replace('name = "loihi2"', 'name = "chip"'))
    with pytest.raises(BadInputError, match="needs a 'backend'"):
        load_target(tmp_path / "chip.toml")
