"""Signals and faults during Lava runs: a clear end within seconds, nothing left behind.

Real Lava runs of a small MLP on the whole digits test set (a few seconds);
the faults are real signals sent to real processes.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .checks import lava_processes, new_leftovers, nothing_partial, snapshot


@pytest.fixture(scope="module")
def lava_job(mlp_ckpt, lava_python, tmp_path_factory):
    """(argv of a `cf2neuro run --runner lava` that takes a few seconds, its out file)."""
    from cf2neuro.verify import test_inputs

    d = tmp_path_factory.mktemp("faults")
    x, _ = test_inputs(mlp_ckpt)
    x = np.concatenate([x.numpy()] * 8, axis=1)  # ~2,900 samples: well over 10 s of Lava
    np.savez(d / "x.npz", x=x)
    out = d / "out.npz"
    return [sys.executable, "-m", "cf2neuro", "run", str(mlp_ckpt), "--runner", "lava",
            "--inputs", str(d / "x.npz"), "--out", str(out)], out


def _start(argv, env=None):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        mine = [p for p in lava_processes() if _ppid(p) == proc.pid]
        if mine:
            return proc, mine[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("the Lava runtime never started")


def _ppid(pid: int) -> int:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _workers(runtime: int, least: int = 2) -> list[int]:
    """Lava's process-model processes (forks of the runtime: its command line), not helpers
    such as multiprocessing's resource tracker; waits until `least` of them run."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        kids = [p for p in lava_processes() if _ppid(p) == runtime and _forked(p)]
        if len(kids) >= least:
            return kids
        time.sleep(0.05)
    pytest.fail("Lava started no process models")


def _forked(pid: int) -> bool:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
    return b"cf2neuro_lava" in cmd and b"resource_tracker" not in cmd


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stop_signal_ends_the_run_cleanly_with_128_plus_signal(sig, lava_job):
    argv, out = lava_job
    before = snapshot()
    proc, runtime = _start(argv)
    _workers(runtime)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {signal.Signals(sig).name}" in err and "Traceback" not in err
    nothing_partial(out)
    assert not new_leftovers(before)


@pytest.mark.parametrize("how", ["kill -9 a worker", "stop a worker"])
def test_a_dead_or_stopped_lava_process_is_noticed_within_seconds(how, lava_job):
    argv, out = lava_job
    before = snapshot()
    proc, runtime = _start(argv)
    victim = _workers(runtime)[-1]
    time.sleep(0.5)  # into the run itself
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL if how.startswith("kill") else signal.SIGSTOP)
    _, err = proc.communicate(timeout=60)
    noticed = time.monotonic() - t0
    assert proc.returncode == 2 and "Traceback" not in err, err
    assert ("killed by SIGKILL" if how.startswith("kill") else "is stopped") in err, err
    assert noticed < 10, f"noticed after {noticed:.1f} s (the watchdog is minutes)"
    nothing_partial(out)
    assert not new_leftovers(before)


def test_a_runtime_that_hangs_before_it_is_ready_is_killed_with_its_group(
        mlp_ckpt, tmp_path, monkeypatch):
    """An interpreter that never reports ready (here a real process that just sleeps)."""
    from cf2neuro.backends.loihi2.lower import write_lava_nir
    from cf2neuro.backends.loihi2.runner import run_nir
    from cf2neuro.checkpoint import checkpoint_graph
    from cf2neuro.errors import RunnerError
    from cf2neuro.quant import quantize

    graph = tmp_path / "g.nir"
    write_lava_nir(quantize(checkpoint_graph(mlp_ckpt), "loihi2"), graph)
    hang = tmp_path / "hung-python"
    hang.write_text("#!/bin/sh\nsleep 600 &\nexec sleep 600\n")  # a child too: the group dies
    hang.chmod(0o755)
    monkeypatch.setenv("CF2NEURO_LAVA_START_TIMEOUT", "2")
    stats, t0 = {}, time.monotonic()
    with pytest.raises(RunnerError, match="did not start within 2 s"):
        run_nir(graph, np.zeros((4, 2, 64), np.int64), python=hang, stats=stats)
    assert time.monotonic() - t0 < 10
    pgid = stats["runtime_pid"]
    alive = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pgid]
    assert not alive, f"processes of the hung runtime left: {alive}"


def _pgid(pid: int) -> int:
    """The process group of a live process (-1 for a zombie: dead, awaiting its reaper)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return -1
    return -1 if fields[0] == "Z" else int(fields[2])
