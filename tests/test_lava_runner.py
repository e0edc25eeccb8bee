"""The ``lava`` runner (cf2neuro.backends.loihi2.runner) with REAL Lava: API, errors and guards.

Every run must leave nothing behind, whether it succeeds, fails inside a
Lava process model (Lava itself would deadlock) or is killed by the
watchdog: no process of the run's process group alive, none of the
shared-memory segments it created (the runtime logs their names) left in
/dev/shm. The checks look at that run only, so concurrent runs elsewhere
do not disturb them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nir
import numpy as np
import pytest

from cf2neuro import api
from cf2neuro.backends.loihi2.runner import run_lava, run_nir
from cf2neuro.errors import BadInputError, RunnerError
from test_lava_runtime import cf, dense, graph, inp, mlp_graph, out
from test_runner_contract import _graph as _float_mlp


def _group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`: the runtime and its forks."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def assert_nothing_left(stats: dict) -> None:
    """No process of the run alive, none of its shared-memory segments in /dev/shm."""
    assert stats["runtime_pid"] > 0
    deadline = time.monotonic() + 5
    while _group_alive(stats["runtime_pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(stats["runtime_pid"]), "a process of the Lava run is still alive"
    left = [n for n in stats["shm_segments"] if (Path("/dev/shm") / n).exists()]
    assert not left, f"shared memory left in /dev/shm: {left}"


def _write(tmp_path, g, name="g.nir") -> Path:
    path = tmp_path / name
    nir.write(path, g)
    return path


def test_runner_is_registered():
    from cf2neuro.runners import get_runner, runner_names

    assert "lava" in runner_names()
    assert get_runner("lava").formats == ("fixed",)


def test_success_leaves_nothing_behind(lava_python, tmp_path):  # noqa: F811
    g, _ = mlp_graph(np.random.default_rng(0))
    x = np.random.default_rng(1).integers(-4, 4, (4, 2, 6))
    stats: dict = {}
    res = run_nir(_write(tmp_path, g), x, ["cf1", "v:cf1"], python=lava_python, stats=stats)
    assert_nothing_left(stats)
    assert stats["shm_segments"]  # Lava made its channels, and its stop() removed them
    assert res["output"].shape == (4, 2, 3) and res["output"].dtype == np.int64
    assert res["cf1"].shape == (4, 2, 5) and res["v:cf1"].shape == (2, 5)
    assert int(res["latency"]) == 2
    assert stats["processes"] == 7 and stats["steps"] == 10  # source, 3 layers, 3 recorders


def test_a_failing_process_model_fails_fast_and_cleanly(lava_python, tmp_path):  # noqa: F811
    """vth = 0 reaches the CF process model, which raises: Lava alone would hang forever."""
    nodes = {"in": inp(3), "f": dense(2 * np.eye(3, dtype=int)), "n": cf(3, vth=0),
             "fo": dense(2 * np.ones((1, 3), int)), "out": out(1)}
    order = list(nodes)
    path = _write(tmp_path, graph(nodes, list(zip(order, order[1:]))))
    t0 = time.perf_counter()
    stats: dict = {}
    with pytest.raises(RunnerError) as e:
        run_nir(path, np.ones((3, 2, 3), int), python=lava_python, timeout=120, stats=stats)
    assert time.perf_counter() - t0 < 60  # the runtime's own guard, not the watchdog
    assert_nothing_left(stats)
    assert stats["shm_segments"]
    msg = str(e.value)
    assert "PyCFNeuronModelFixed of process n failed" in msg and "vth must be in" in msg
    assert "Traceback" in msg and "check_parameters" in msg  # the runtime's stderr tail


def test_a_timed_out_run_is_killed_with_everything_it_made(lava_python, tmp_path):  # noqa: F811
    g, _ = mlp_graph(np.random.default_rng(0))
    x = np.zeros((10, 4000, 6), int)  # 40,000 steps: far longer than the timeout
    t0 = time.perf_counter()
    stats: dict = {}
    with pytest.raises(RunnerError) as e:
        run_nir(_write(tmp_path, g), x, python=lava_python, timeout=8, stats=stats)
    assert time.perf_counter() - t0 < 30
    assert_nothing_left(stats)
    msg = str(e.value)
    assert "did not finish within 8 s" in msg and "was killed" in msg
    unlinked = int(msg.split(" shared-memory segments unlinked")[0].rsplit(" ", 1)[1])
    assert unlinked > 0  # the run had started: its segments were found and removed


def test_graphs_the_builder_rejects_are_bad_input(lava_python, tmp_path):  # noqa: F811
    plain = graph({"in": inp(3), "f": nir.Linear(weight=np.ones((2, 3))), "out": out(2)},
                  [("in", "f"), ("f", "out")])
    stats: dict = {}
    with pytest.raises(BadInputError, match="has no 'cf2neuro.fixed_point' metadata"):
        run_nir(_write(tmp_path, plain, "plain.nir"), np.ones((2, 1, 3), int),
                python=lava_python, stats=stats)
    assert_nothing_left(stats)
    g, _ = mlp_graph(np.random.default_rng(0))
    path = _write(tmp_path, g)
    with pytest.raises(BadInputError, match="probe 'nope': no node named 'nope'"):
        run_nir(path, np.ones((2, 1, 6), int), ["nope"], python=lava_python)
    with pytest.raises(BadInputError, match=r"inputs x must be \[T, B, 6\]"):
        run_nir(path, np.ones((2, 1, 5), int), python=lava_python)
    with pytest.raises(BadInputError, match="outside the graph's input payload"):
        run_nir(path, np.full((2, 1, 6), 9), python=lava_python)


def test_bad_arguments_are_caught_before_lava_starts(tmp_path):
    g, _ = mlp_graph(np.random.default_rng(0))
    path = _write(tmp_path, g)
    with pytest.raises(BadInputError, match="integer inputs"):
        run_nir(path, np.ones((2, 1, 6), np.float32))
    with pytest.raises(BadInputError, match="does not exist"):
        run_nir(tmp_path / "missing.nir", np.ones((2, 1, 6), int))
    with pytest.raises(BadInputError, match="timeout must be > 0"):
        run_nir(path, np.ones((2, 1, 6), int), timeout=0)


# --- the registered runner on cf2neuro graphs --------------------------------------------

def _float_nir(tmp_path, g) -> Path:
    from cf2neuro.nir import write_nir

    path = tmp_path / "float.nir"
    write_nir(g, path)
    return path


def test_api_run_with_lava_equals_the_emulator(lava_python, tmp_path):  # noqa: F811
    """A float graph through `cf2neuro run --runner lava`: quantized, run, aligned."""
    from cf2neuro.cli import main

    g = _float_mlp()
    x = np.random.default_rng(1).normal(0, 1, (5, 3, 6)).astype(np.float32)
    stats: dict = {}
    from cf2neuro.quant import quantize

    with pytest.raises(BadInputError, match="quantize it first"):  # runners never quantize
        run_lava(g, x)
    q = quantize(g, "loihi2", calibration=x)
    direct = run_lava(q, x, ["cf1", "v:cf1"], stats=stats)
    assert_nothing_left(stats)
    emu = api.run(_float_nir(tmp_path, g), runner="emulator", inputs=x, probes=["cf1", "v:cf1"])
    for key in ("output", "cf1"):
        np.testing.assert_array_equal(direct[key], emu[key], err_msg=key)
    np.testing.assert_array_equal(direct["v:cf1"], emu["v:cf1"][-1])
    assert int(direct["latency"]) == int(emu["latency"]) == 2
    assert np.abs(direct["cf1"]).max() == 2  # graded, signed spikes crossed Lava

    # the float graph through the face: quantized on the fly, the same integers
    face = api.run(_float_nir(tmp_path, g), runner="lava", inputs=x, probes=["cf1"])
    np.testing.assert_array_equal(face["output"], direct["output"])

    # the quantized graph as a NIR file through the CLI (the file's integers are used as is)
    from cf2neuro.nir import write_nir

    write_nir(q, tmp_path / "q.nir")
    np.savez(tmp_path / "in.npz", x=x)
    rc = main(["run", str(tmp_path / "q.nir"), "--runner", "lava", "--inputs",
               str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz"), "--probe", "cf1"])
    assert rc == 0
    with np.load(tmp_path / "out.npz") as res:
        np.testing.assert_array_equal(res["output"], direct["output"])
        np.testing.assert_array_equal(res["cf1"], direct["cf1"])
        assert int(res["latency"]) == 2
