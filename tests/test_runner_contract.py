"""The runner contract: every registered runner, the same graphs, the same checks.

For each name in `cf2neuro.runners.runner_names()` (generic runners and every
back end's): output and probe shapes, agreement with the independent
reference of its format (float runners with the float engine, fixed-point
runners bit-exact with the emulator), the timeout honoured, a clear
RuntimeMissingError when its runtime is gone, and nothing left behind
(child processes, shared memory, temp dirs). A new runner must say here how
its runtime goes missing (`MISSING`), or this test fails for it.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from cf2neuro.errors import RuntimeMissingError, RunnerTimeoutError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.quant import quantize
from cf2neuro.runners import RunRequest, get_runner, runner_names
from cf2neuro.runners.emulator import emulate
from leftovers import leftovers

T, B = 6, 5


def _graph() -> Graph:
    """A float MLP with graded signed CF spikes and a biased readout (also the Lava tests')."""
    rng = np.random.default_rng(0)
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [6]})
    g.add_node("fc1", "Linear", ["x"],
               params={"weight": rng.normal(0, .5, (8, 6)).astype(np.float32),
                       "bias": rng.normal(0, .1, 8).astype(np.float32)})
    g.add_node("cf1", "CFNeuron", ["fc1"],
               attrs={"threshold": 1.0, "beta": 0.5, "max_spikes": 2, "signed": True})
    g.add_node("fc2", "Linear", ["cf1"],
               params={"weight": rng.normal(0, .5, (3, 8)).astype(np.float32),
                       "bias": rng.normal(0, .1, 3).astype(np.float32)})
    g.add_node("y", "Output", ["fc2"])
    return g.validate()


@pytest.fixture(scope="module")
def graded_case():
    x = np.random.default_rng(4).normal(0, 1, (T, B, 6)).astype(np.float32)
    g = _graph()
    return g, quantize(g, "loihi2", calibration=x), x


@pytest.fixture(scope="module")
def binary_case():
    """The same MLP as Loihi 1 runs it (target loihi): binary spikes in, binary IF-CF, reset 0."""
    x = (np.random.default_rng(4).random((T, B, 6)) < 0.5).astype(np.float32)
    g = _graph()
    g["cf1"].attrs.update(max_spikes=1, signed=False, reset="zero", beta=1.0)
    return g, quantize(g, "loihi", calibration=x), x


@pytest.fixture(scope="module")
def xylo_case():
    """The same MLP as Xylo runs it (target xylo): analog inputs >= 0, unsigned CF, K = 31."""
    x = np.random.default_rng(4).random((T, B, 6)).astype(np.float32)
    g = _graph()
    g["cf1"].attrs.update(max_spikes=31, signed=False)
    return g, quantize(g, "xylo", calibration=x), x


CASES = {"loihi": "binary_case", "xylo": "xylo_case"}  # default target -> case
LATENCY = {"xylo": 1}  # pipeline steps removed; 2 (one a Dense) elsewhere


@pytest.fixture
def case(runner, request):
    """The graded loihi2 case, or the case of the runner's own target (loihi, xylo)."""
    return request.getfixturevalue(CASES.get(runner.default_target, "graded_case"))


def _request(runner, case, **kw) -> RunRequest:
    g, q, x = case
    graph = g if "float" in runner.formats else q
    return RunRequest(graph, x, ("cf1", "v:cf1"), **kw)


def _missing_lava(monkeypatch, tmp_path):
    monkeypatch.setenv("CF2NEURO_LAVA_RUNTIME", str(tmp_path / "no-runtime"))
    monkeypatch.setenv("CF2NEURO_LAVA_PYTHON", str(tmp_path / "no-python3.10"))


def _missing_nengo_loihi(monkeypatch, tmp_path):
    monkeypatch.setenv("CF2NEURO_NENGO_LOIHI_RUNTIME", str(tmp_path / "no-runtime"))
    monkeypatch.setenv("CF2NEURO_NENGO_LOIHI_PYTHON", str(tmp_path / "no-python"))


def _missing_xylo(monkeypatch, tmp_path):
    monkeypatch.setenv("CF2NEURO_XYLO_RUNTIME", str(tmp_path / "no-runtime"))
    monkeypatch.setenv("CF2NEURO_XYLO_PYTHON", str(tmp_path / "no-python"))


def _missing_module(name):
    def remove(monkeypatch, tmp_path):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now fails
    return remove


# How each runner's runtime goes missing (None: it has no runtime beyond torch).
MISSING = {"reference": None, "emulator": None, "lava": _missing_lava,
           "onnxruntime": _missing_module("onnxruntime"), "nengo-loihi": _missing_nengo_loihi,
           "xylosim": _missing_xylo}


@pytest.fixture(params=runner_names())
def runner(request):
    name = request.param
    if name == "lava":
        request.getfixturevalue("lava_python")  # builds the runtime (CI) or skips (no 3.10)
    if name == "nengo-loihi":
        request.getfixturevalue("nengo_loihi_python")
    if name == "xylosim":
        request.getfixturevalue("xylo_python")
    return get_runner(name)


def test_every_runner_declares_its_contract(runner):
    assert runner.name in MISSING, f"say in MISSING how runner {runner.name}'s runtime goes missing"
    assert set(runner.formats) <= {"float", "fixed"} and runner.formats
    ok, note = runner.available()
    assert ok, note


def test_shapes_probes_and_agreement_with_the_reference(runner, case):
    g, q, x = case
    before = leftovers()
    res = runner.run(_request(runner, case))
    assert res.outputs["output"].shape == (T, B, 3)
    assert res.probes["cf1"].shape == (T, B, 8)
    membrane = res.probes["v:cf1"]
    assert membrane.shape in ((T, B, 8), (B, 8))  # a trace, or the final state only
    assert res.timings["total"] > 0
    if "float" in runner.formats:  # float: the float engine is the reference
        ref = Engine(g).run(x, probes=["cf1", "v:cf1"])
        np.testing.assert_allclose(res.outputs["output"], ref["output"].numpy(), atol=1e-4)
        assert (res.probes["cf1"] == ref["cf1"].numpy()).mean() >= 0.999
    else:  # fixed point: bit-exact with the emulator, latency reported
        emu = emulate(q, x, probes=["cf1", "v:cf1"])
        np.testing.assert_array_equal(res.outputs["output"], emu["output"])
        np.testing.assert_array_equal(res.probes["cf1"], emu["cf1"])
        trace = emu["v:cf1"]
        np.testing.assert_array_equal(membrane, trace if membrane.ndim == 3 else trace[-1])
        assert res.latency == emu["latency"] == LATENCY.get(runner.default_target, 2)
    time.sleep(0.1)
    after = leftovers()
    assert after[0] <= before[0], f"child processes left: {after[0] - before[0]}"
    assert after[1] <= before[1], f"shared memory left: {after[1] - before[1]}"
    assert after[2] <= before[2], f"temp dirs left: {after[2] - before[2]}"


def test_timeout_is_honoured(runner, case):
    g, q, x = case
    big = np.repeat(x, 400, axis=1)  # long enough that no runner beats the clock
    before = leftovers()
    t0 = time.monotonic()
    with pytest.raises(RunnerTimeoutError, match="timeout"):
        runner.run(RunRequest(g if "float" in runner.formats else q, big, ("cf1",),
                              timeout=1e-6))
    assert time.monotonic() - t0 < 30
    time.sleep(0.1)
    after = leftovers()
    assert after[0] <= before[0] and after[1] <= before[1] and after[2] <= before[2]


def test_missing_runtime_is_a_clear_error(runner, case, monkeypatch, tmp_path):
    remove = MISSING[runner.name]
    if remove is None:
        return  # torch only: nothing that can go missing beside cf2neuro itself
    remove(monkeypatch, tmp_path)
    ok, note = runner.available()
    assert not ok and note
    with pytest.raises(RuntimeMissingError) as e:
        runner.run(_request(runner, case))
    assert "install" in str(e.value).lower() or "python 3.10" in str(e.value).lower()
