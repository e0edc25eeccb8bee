"""`verify --workers N` and torchrun: sharded runner runs give the report of one run (issue 12).

Real runtimes only (Lava in its isolated runtime, onnxruntime): a shard's
arrays are merged along the sample axis, so the report must not change.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bad_inputs.checks import lava_processes  # the catalogue's scan, independent of the runner

from cf2neuro.cli import main as cli
from cf2neuro.errors import ConfigError, RunnerTimeoutError
from cf2neuro.shards import merge, run_sharded, split
from cf2neuro.train import TrainConfig, train

SAME = ("exact_match", "float_accuracy", "quantized_accuracy", "runner_accuracy",
        "accuracy_drop_pp", "argmax_agreement", "runner_argmax_agreement", "spike_rates",
        "latency_steps", "passed", "samples")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mlp_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp")
    train(TrainConfig(epochs=1), out, progress=False)
    return out


def _verify(ckpt, out, runner, *extra) -> dict:
    argv = ["verify", str(ckpt), "--target", "loihi2", "--data", "digits", "--runner", runner,
            "--limit", "41", "--report", str(out), *extra]
    assert cli(argv) == 0
    return json.loads((out / "verify.json").read_text())


def _same(a: dict, b: dict) -> None:
    for key in SAME:
        assert a[key] == b[key], key


@pytest.mark.parametrize("runner", ["lava", "onnxruntime", "emulator"])
def test_two_workers_give_the_report_of_one(mlp_ckpt, tmp_path, runner, request):
    if runner == "lava":
        request.getfixturevalue("lava_python")
    one = _verify(mlp_ckpt, tmp_path / "one", runner)
    two = _verify(mlp_ckpt, tmp_path / "two", runner, "--workers", "2")
    _same(one, two)
    assert one["workers"] == 1 and two["workers"] == 2
    assert all(v == 1.0 for v in two["exact_match"].values())


def test_torchrun_ranks_give_the_report_of_one_process(mlp_ckpt, tmp_path, lava_python):
    one = _verify(mlp_ckpt, tmp_path / "one", "lava")
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "cf2neuro", "verify",
           str(mlp_ckpt), "--target", "loihi2", "--data", "digits", "--runner", "lava",
           "--limit", "41", "--workers", "2", "--report", str(tmp_path / "ranks")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = json.loads((tmp_path / "ranks" / "verify.json").read_text())
    _same(one, ranks)
    assert ranks["ranks"] == 2 and ranks["workers"] == 2
    assert r.stdout.count("report:") == 1  # rank 0 alone reports


def test_a_shard_that_times_out_stops_the_others(mlp_ckpt, lava_python):
    """Shard 2 times out; shard 1 (a long run) is stopped, not waited for, and the error
    is shard 2's (not shard 1's, which fails only because it was stopped)."""
    from cf2neuro.backends.loihi2.runner import run_lava
    from cf2neuro.checkpoint import checkpoint_graph
    from cf2neuro.quant import quantize
    from cf2neuro.verify import calibration_inputs

    q = quantize(checkpoint_graph(mlp_ckpt), "loihi2", calibration=calibration_inputs(mlp_ckpt))
    x = np.random.default_rng(0).random((4, 2, 1, 8, 8)).astype(np.float32)
    long = np.repeat(x, 2000, axis=1)  # a minute or more of Lava steps

    def run(part: slice) -> dict:
        if part.start == 1:
            time.sleep(5)  # let the long shard's runtime start first
            return run_lava(q, x, timeout=1e-6, progress=False)
        return run_lava(q, long, progress=False)

    before = lava_processes()
    shm = set(os.listdir("/dev/shm"))
    t0 = time.monotonic()
    with pytest.raises(RunnerTimeoutError, match=r"shard 2 of 2 .*did not finish within"):
        run_sharded(run, 2, workers=2)
    assert time.monotonic() - t0 < 30  # the long shard was stopped, not run to its end
    time.sleep(0.2)
    assert lava_processes() <= before, "Lava processes left"
    assert set(os.listdir("/dev/shm")) <= shm, "shared memory left"


def test_verify_timeout_with_workers_is_one_clear_error(mlp_ckpt, tmp_path, capsys,
                                                       lava_python):
    argv = ["verify", str(mlp_ckpt), "--target", "loihi2", "--data", "digits", "--runner",
            "lava", "--limit", "20", "--workers", "2", "--timeout", "1e-6",
            "--report", str(tmp_path / "r")]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shard" in err and "did not finish" in err, err
    assert not (tmp_path / "r" / "verify.json").exists()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_below_one_is_bad_input(mlp_ckpt, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        cli(["verify", str(mlp_ckpt), "--target", "loihi2", "--data", "digits",
             "--workers", value, "--report", str(tmp_path)])
    assert e.value.code == 2 and "--workers" in capsys.readouterr().err


def test_the_api_refuses_zero_workers(mlp_ckpt):
    from cf2neuro.verify import verify

    with pytest.raises(ConfigError, match="--workers must be a whole number >= 1"):
        verify(mlp_ckpt, "loihi2", "digits", workers=0)


def test_split_and_merge_along_the_sample_axis():
    assert split(10, 3) == [slice(0, 3), slice(3, 6), slice(6, 10)]
    assert split(2, 5) == [slice(0, 1), slice(1, 2)]  # never an empty shard
    full = {"output": np.arange(24).reshape(2, 4, 3), "v:a": np.arange(8).reshape(4, 2),
            "latency": np.int64(1)}
    shards = [{"output": full["output"][:, s], "v:a": full["v:a"][s], "latency": np.int64(1)}
              for s in split(4, 2)]
    merged = merge(shards, final_membranes=True)
    for k in full:
        np.testing.assert_array_equal(merged[k], full[k])


def test_watchdog_default_grows_with_the_network(tmp_path):
    """The default Lava timeout comes from the graph's measured cost: bigger nets, more time."""
    from cf2neuro.backends.loihi2.lower import write_lava_nir
    from cf2neuro.backends.loihi2.runner import default_timeout, graph_cost
    from cf2neuro.ir.passes import run_passes
    from cf2neuro.ir.trace import trace_model
    from cf2neuro.nn.models import build_model
    from cf2neuro.quant import quantize

    x = np.random.default_rng(0).random((4, 8, 1, 8, 8)).astype(np.float32)
    costs = {}
    for name in ("mlp", "vgg-small"):
        g = run_passes(trace_model(build_model(name, {"timesteps": 4})))
        write_lava_nir(quantize(g, "loihi2", calibration=x), tmp_path / f"{name}.nir")
        costs[name] = graph_cost(tmp_path / f"{name}.nir")
    mlp, vgg = costs["mlp"], costs["vgg-small"]
    assert mlp["conv_calls"] == 0 and mlp["synapses"] == 64 * 256 + 256 * 256 + 256 * 10
    # vgg-small: convolve2d calls of its 4 Convs (C_out·C_in) and 2 sum pools (C each)
    assert vgg["conv_calls"] == 32 + 32 * 32 + 64 * 32 + 64 * 64 + 32 + 64
    start = default_timeout(0, {"processes": 0})  # the start-up allowance, steps apart
    assert start == 120
    assert default_timeout(400, vgg) - start > 5 * (default_timeout(400, mlp) - start)
    assert default_timeout(4000, vgg) - start == pytest.approx(
        10 * (default_timeout(400, vgg) - start))  # linear in the steps
