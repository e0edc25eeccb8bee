"""The isolated Lava runtime (cf2neuro/backends/loihi2: lava_runtime/ and runtime.py), against REAL Lava.

- finding Python 3.10 (env var honoured, broken candidates skipped, a clear
  error naming what to install) and the runtime's idempotent setup;
- cf2neuro's CF process on hand-computed integer traces (signed graded
  spikes up to K = 4, leak with trunc0, bias with both exponent signs,
  24-bit saturation, firing exactly at threshold, reset between samples);
- Dense / Conv (stride, padding, dilation, groups) / SumPool / Flatten
  layouts and Lava's LIF against a direct numpy computation;
- streaming many samples through one run == one run per sample.

The session fixture creates the runtime (about 1.5 min the first time,
cached in ~/.cache/cf2neuro/lava-runtime-<hash>). Without any Python 3.10 these tests skip,
except under CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import nir
import numpy as np
import pytest

from cf2neuro.backends.loihi2 import runtime
from cf2neuro.errors import RuntimeMissingError

FP = "cf2neuro.fixed_point"


# --- the runtime -------------------------------------------------------------------

def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_env_var_is_honoured(lava_python, monkeypatch):
    stamp = runtime._read_stamp(runtime.runtime_dir())
    base = stamp["base_python"]
    monkeypatch.setenv(runtime.ENV_PYTHON, base)
    assert runtime.find_python310() == Path(base)


def test_broken_env_var_is_an_error_that_says_what_to_do(tmp_path, monkeypatch):
    broken = _script(tmp_path / "python3.10", "echo 'pyenv: python3.10: command not found' >&2\n"
                                              "exit 1")
    monkeypatch.setenv(runtime.ENV_PYTHON, str(broken))
    with pytest.raises(RuntimeMissingError) as e:
        runtime.find_python310()
    msg = str(e.value)
    assert runtime.ENV_PYTHON in msg and str(broken) in msg
    assert "exits with status 1" in msg and "command not found" in msg


def test_a_broken_shim_on_path_is_skipped(lava_python, tmp_path, monkeypatch):
    """A `python3.10` first on PATH that refuses to run (as a pyenv shim does) is passed over."""
    _script(tmp_path / "python3.10", "exit 127")
    monkeypatch.delenv(runtime.ENV_PYTHON, raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = runtime.find_python310()
    assert found != tmp_path / "python3.10"
    ok, _ = runtime._probe(str(found))
    assert ok


def test_no_python310_says_what_to_install(tmp_path, monkeypatch):
    shim = _script(tmp_path / "python3.10", "exit 127")
    wrong = _script(tmp_path / "python-wrong", "echo 3.12; echo /x/python")
    monkeypatch.delenv(runtime.ENV_PYTHON, raising=False)
    monkeypatch.setattr(runtime, "_candidates",
                        lambda: iter([("python3.10 on PATH", str(shim)),
                                      ("usual location", str(wrong))]))
    with pytest.raises(RuntimeMissingError) as e:
        runtime.find_python310()
    msg = str(e.value)
    assert "pyenv install 3.10" in msg and "apt-get install python3.10" in msg
    assert "uv python install 3.10" in msg and runtime.ENV_PYTHON in msg
    assert str(shim) in msg and "is Python 3.12, not 3.10" in msg


def test_setup_is_idempotent(lava_python):
    root = runtime.runtime_dir()
    before = (root / runtime.STAMP).stat().st_mtime_ns
    assert runtime.setup_lava(progress=False) == lava_python
    assert (root / runtime.STAMP).stat().st_mtime_ns == before  # not installed again
    assert runtime._is_ready(root, runtime.lava_package_dir())


def test_a_changed_package_invalidates_the_stamp(lava_python, tmp_path):
    """The stamp is keyed by the package's pyproject: another key is not ready."""
    root = tmp_path / "rt"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python").symlink_to(lava_python)
    pkg = runtime.lava_package_dir()
    good = {"key": runtime._stamp_key(pkg, "3.10"), "python_version": "3.10"}
    (root / runtime.STAMP).write_text(json.dumps(good))
    assert runtime._is_ready(root, pkg)
    (root / runtime.STAMP).write_text(json.dumps({**good, "key": "stale"}))
    assert not runtime._is_ready(root, pkg)


def test_the_runtime_is_python310_with_lava_and_no_torch(lava_python):
    import subprocess

    code = ("import sys, numpy, lava, nir, cf2neuro_lava.build, cf2neuro_lava.run, "
            "cf2neuro_lava.procs.cf.models; print(sys.version_info[:2] == (3, 10), "
            "numpy.__version__ < '2', 'torch' in sys.modules, 'cf2neuro' in sys.modules)")
    r = subprocess.run([str(lava_python), "-c", code], capture_output=True, text=True,
                       env=runtime.lava_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "False", "False"]


# --- graphs with fixed-point metadata, and numpy references ---------------------------

def fp_meta(**fields) -> dict:
    return {FP: fields}


def graph(nodes: dict, edges: list, **graph_fp) -> nir.NIRGraph:
    meta = {"dt": 1e-4, "cf2neuro.order": json.dumps(list(nodes))}  # as cf2neuro writes it
    if graph_fp:
        meta[FP] = graph_fp
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def inp(*shape):
    return nir.Input(input_type={"input": np.array(shape)})


def out(*shape):
    return nir.Output(output_type={"output": np.array(shape)})


def dense(w, exp=0, nmb=8, **extra):
    w = np.asarray(w)
    return nir.Linear(weight=w.astype(np.float32),
                      metadata=fp_meta(weight_mant=w.astype(np.int16), weight_exp=exp,
                                       num_message_bits=nmb, **extra))


def conv(w, in_shape, stride=1, padding=0, dilation=1, groups=1, nmb=8):
    w = np.asarray(w)

    def pair(v):
        return np.array([v, v] if np.isscalar(v) else list(v))
    return nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=w.astype(np.float32),
                      stride=pair(stride), padding=pair(padding), dilation=pair(dilation),
                      groups=groups, bias=np.zeros(w.shape[0], np.float32),
                      metadata=fp_meta(weight_mant=w.astype(np.int16), num_message_bits=nmb))


def sumpool(k, s, nmb=8):
    return nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([s, s]),
                         padding=np.array([0, 0]), metadata=fp_meta(num_message_bits=nmb))


def cf(shape, vth, dv=0, bias_mant=0, bias_exp=0, K=1, signed=True):
    shape = tuple(np.atleast_1d(shape))
    z = np.zeros(shape)
    return nir.LIF(tau=np.ones(shape), r=np.ones(shape), v_leak=z, v_threshold=np.ones(shape),
                   v_reset=z, metadata={"cf2neuro.neuron": "circulate_firing",
                                        **fp_meta(bias_mant=np.broadcast_to(
                                            np.asarray(bias_mant, np.int32), shape).copy(),
                                            vth=vth, dv=dv, bias_exp=bias_exp, max_spikes=K,
                                            signed=signed)})


def lava_dense_weights(w):
    """Lava's Dense legalization: sign mode from the matrix, 8-bit clip, LSB dropped if mixed."""
    w = np.asarray(w, np.int64)
    if w.min() >= 0:
        return np.clip(w, 0, 255)
    if w.max() <= 0:
        return -np.clip(-w, 0, 255)
    return (np.clip(w, -256, 255) >> 1) << 1


def np_dense(s, w, exp=0, nmb=8):
    s = np.asarray(s, np.int64)
    if nmb == 0:
        s = (s != 0).astype(np.int64)
    a = s @ lava_dense_weights(w).T
    return a << exp if exp >= 0 else a >> -exp


def np_conv(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, nmb=8):
    """Cross-correlation as PyTorch defines it, with explicit loops; x [N, C, H, W]."""
    x = np.asarray(x, np.int64)
    if nmb == 0:
        x = (x != 0).astype(np.int64)
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), np.int64)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, co, ho, wo), np.int64)
    per = co // groups
    for o in range(co):
        g = o // per
        for i in range(ho):
            for j in range(wo):
                for ci in range(cg):
                    for u in range(kh):
                        for v in range(kw):
                            y[:, o, i, j] += w[o, ci, u, v] * xp[:, g * cg + ci, i * sh + u * dh,
                                                                 j * sw + v * dw]
    return (y + (1 << 23)) % (1 << 24) - (1 << 23)


def np_sumpool(x, k, s):
    n, c, h, wd = x.shape
    ho, wo = (h - k) // s + 1, (wd - k) // s + 1
    y = np.zeros((n, c, ho, wo), np.int64)
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = x[:, :, i * s:i * s + k, j * s:j * s + k].sum(axis=(2, 3))
    return y


def trunc0(x):
    return np.sign(x) * (np.abs(x) >> 12)


def np_cf(a, vth, dv=0, bias=0, K=1, signed=True):
    """a [T, B, ...] -> (spikes [T, B, ...], final v [B, ...]), from zero state."""
    v = np.zeros(a.shape[1:], np.int64)
    spikes = []
    for at in np.asarray(a, np.int64):
        v = np.clip(trunc0(v * (4096 - dv)) + at + bias, -(2 ** 23 - 1), 2 ** 23 - 1)
        n = np.clip(np.sign(v) * (np.abs(v) // vth), -K if signed else 0, K)
        v = v - n * vth
        spikes.append(n)
    return np.stack(spikes), v


def np_lava_lif(a, du, dv, vth, bias):
    """Lava's PyLifModelBitAcc transcribed: a [T, B, ...] -> (spikes, final v)."""
    u = np.zeros(a.shape[1:], np.int64)
    v = np.zeros(a.shape[1:], np.int64)
    half = 2 ** 23
    spikes = []
    for at in np.asarray(a, np.int64):
        cur = trunc0(u * (4096 - (du + 1))) + (at << 6)
        u = np.where(cur > half, cur - 2 * half, cur)
        u = np.where(u <= -half, cur + 2 * half, u)
        v = np.clip(trunc0(v * (4096 - dv)) + u + bias, -(half - 1), half - 1)
        s = v > (vth << 6)
        v = np.where(s, 0, v)
        spikes.append(s.astype(np.int64))
    return np.stack(spikes), v


def run(lava_python, tmp_path, g: nir.NIRGraph, x, probes=(), **kw):
    from cf2neuro.backends.loihi2.runner import run_nir

    path = tmp_path / f"g{len(list(tmp_path.glob('*.nir')))}.nir"
    nir.write(path, g)
    return run_nir(path, x, probes, python=lava_python, **kw)


# --- the CF process on hand-computed traces ---------------------------------------------

# Branch A: 4 signed CF neurons, K = 4, per-neuron vth / dv / bias; a = x[:4] exactly
# (weight 2, weight_exp -1). Branch B: 3 binary CF neurons (K = 1, unsigned) at the
# 24-bit limits; a = x[4:]. Two samples of 4 steps stream through one run.
A_IN = np.array([
    [[25, 13, 0, 0], [5, 0, 0, 0]],
    [[-47, 0, 0, 0], [5, 0, 0, 0]],
    [[3, -20, 0, 0], [5, 0, 0, 0]],
    [[100, 0, -40, 0], [5, 0, 0, 0]],
])  # [T, B, 4]
A_SPIKES = np.array([
    [[2, 1, 0, 0], [0, 0, 0, 0]],
    [[-4, 0, 1, -1], [1, 0, 1, -1]],
    [[0, -2, 0, -1], [0, 0, 0, -1]],
    [[4, 0, -1, -1], [1, 0, 1, -1]],
])
A_V = np.array([[61, -1, -1, -1], [0, 0, 7, -1]])
BIG = 9_000_000      # beyond the 24-bit state: v saturates at 2^23 - 1
TH = 2 ** 22
B_IN = np.array([
    [[BIG, -BIG, TH], [0, 0, 0]],
    [[BIG, 0, TH], [0, 0, 0]],
    [[0, TH, TH], [0, 0, 0]],
    [[0, 0, TH], [0, 0, 0]],
])
B_SPIKES = np.array([
    [[1, 0, 1], [0, 0, 0]],
    [[1, 0, 1], [0, 0, 0]],
    [[0, 0, 1], [0, 0, 0]],
    [[0, 0, 1], [0, 0, 0]],
])
B_V = np.array([[2 ** 23 - 1 - TH, -(2 ** 23 - 1) + TH, 0], [0, 0, 0]])
W_OUT = np.array([[2, -4, 6, 0], [0, 2, 2, -2]])


def hand_graph():
    pick_a = np.zeros((4, 7), int)
    pick_a[np.arange(4), np.arange(4)] = 2
    pick_b = np.zeros((3, 7), int)
    pick_b[np.arange(3), 4 + np.arange(3)] = 2
    nodes = {
        "in": inp(7),
        "fa": dense(pick_a, exp=-1, nmb=24),
        "cfa": cf(4, vth=np.array([10, 8, 16, 5]), dv=np.array([0, 2048, 1024, 0]),
                  bias_mant=[0, 0, 3, -7], bias_exp=np.array([0, 0, 2, -1]), K=4),
        "fo": dense(W_OUT, nmb=4),
        "out": out(2),
        "fb": dense(pick_b, exp=-1, nmb=24),
        "cfb": cf(3, vth=TH, K=1, signed=False),
    }
    edges = [("in", "fa"), ("fa", "cfa"), ("cfa", "fo"), ("fo", "out"), ("in", "fb"),
             ("fb", "cfb")]
    return graph(nodes, edges)


def test_cf_process_matches_hand_computed_traces(lava_python, tmp_path):
    x = np.concatenate([A_IN, B_IN], axis=2)
    stats: dict = {}
    res = run(lava_python, tmp_path, hand_graph(), x, ["cfa", "v:cfa", "cfb", "v:cfb"],
              stats=stats)
    assert int(res["latency"]) == 2
    np.testing.assert_array_equal(res["cfa"], A_SPIKES)
    np.testing.assert_array_equal(res["v:cfa"], A_V)
    np.testing.assert_array_equal(res["cfb"], B_SPIKES)
    np.testing.assert_array_equal(res["v:cfb"], B_V)
    # graded, signed payloads reach the readout as values (num_message_bits > 0)
    np.testing.assert_array_equal(res["output"], np.einsum("oi,tbi->tbo", W_OUT, A_SPIKES))
    assert stats["steps"] == 2 * 4 + 2 and stats["compile_s"] > 0


def test_hand_traces_agree_with_the_numpy_reference():
    """The literal traces above are the CF equation (guards the test's own arithmetic)."""
    bias_a = np.array([0, 0, 3 << 2, -7 >> 1])
    s, v = np_cf(A_IN, np.array([10, 8, 16, 5]), np.array([0, 2048, 1024, 0]), bias_a, K=4)
    np.testing.assert_array_equal(s, A_SPIKES)
    np.testing.assert_array_equal(v, A_V)
    s, v = np_cf(B_IN, TH, K=1, signed=False)
    np.testing.assert_array_equal(s, B_SPIKES)
    np.testing.assert_array_equal(v, B_V)


# --- layouts against numpy ------------------------------------------------------------

def test_conv_pool_flatten_dense_layouts_match_numpy(lava_python, tmp_path):
    rng = np.random.default_rng(1)
    T, B = 3, 2
    x = rng.integers(0, 3, (T, B, 2, 9, 8))           # binary input port: 2 counts as 1
    w1 = rng.integers(-9, 10, (4, 2, 3, 2))           # non-square kernel
    w2 = rng.integers(-9, 10, (4, 2, 2, 2))           # grouped, dilated
    wf = rng.integers(-60, 61, (5, 4 * 2 * 3)) * 2
    s1 = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 1), groups=1)
    s2 = dict(stride=(1, 1), padding=(0, 1), dilation=(1, 2), groups=2)
    nodes = {
        "in": inp(2, 9, 8),
        "c1": conv(w1, (2, 9, 8), nmb=0, **s1),
        "n1": cf((4, 5, 7), vth=12, dv=1024, K=2),
        "c2": conv(w2, (4, 5, 7), nmb=3, **s2),
        "n2": cf((4, 4, 7), vth=9, K=3),
        "pool": sumpool(2, 2, nmb=3),
        "flat": nir.Flatten(input_type={"input": np.array([4, 2, 3])}, start_dim=0, end_dim=-1),
        "fc": dense(wf, exp=1, nmb=8),
        "out": out(5),
    }
    order = list(nodes)
    g = graph(nodes, list(zip(order, order[1:])))
    probes = ["c1", "n1", "c2", "n2", "pool", "flat", "v:n2"]
    res = run(lava_python, tmp_path, g, x, probes)

    def flat(a):
        return a.reshape(T * B, *a.shape[2:])

    def unflat(a):
        return a.reshape(T, B, *a.shape[1:])

    c1 = unflat(np_conv(flat(x), w1, nmb=0, **s1))
    n1, _ = np_cf(c1, 12, 1024, K=2)
    c2 = unflat(np_conv(flat(n1), w2, nmb=3, **s2))
    n2, v2 = np_cf(c2, 9, K=3)
    pool = unflat(np_sumpool(flat(n2), 2, 2))
    fl = pool.reshape(T, B, -1)
    o = np_dense(fl, wf, exp=1)
    for key, want in [("c1", c1), ("n1", n1), ("c2", c2), ("n2", n2), ("pool", pool),
                      ("flat", fl), ("v:n2", v2), ("output", o)]:
        np.testing.assert_array_equal(res[key], want, err_msg=key)
    assert int(res["latency"]) == 4
    assert np.abs(n1).max() == 2 and np.abs(n2).max() == 3  # graded, signed payloads in play


def test_lava_lif_matches_its_numpy_transcription(lava_python, tmp_path):
    rng = np.random.default_rng(2)
    T, B = 6, 2
    x = rng.integers(-20, 60, (T, B, 3))
    bias_mant = np.array([0, 5, -3])
    nodes = {
        "in": inp(3),
        "f": dense(2 * np.eye(3, dtype=int), exp=-1, nmb=16),
        "lif": nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                       v_threshold=np.ones(3), v_reset=np.zeros(3),
                       metadata=fp_meta(bias_mant=bias_mant.astype(np.int32), bias_exp=1,
                                        du=1024, dv=512, vth=10)),
        "fo": dense(np.array([[1, 2, -3]]) * 2, nmb=0),
        "out": out(1),
    }
    order = list(nodes)
    res = run(lava_python, tmp_path, graph(nodes, list(zip(order, order[1:]))), x,
              ["lif", "v:lif"])
    s, v = np_lava_lif(x, 1024, 512, 10, bias_mant << 1)
    assert s.any()
    np.testing.assert_array_equal(res["lif"], s)
    np.testing.assert_array_equal(res["v:lif"], v)
    np.testing.assert_array_equal(res["output"], np_dense(s, np.array([[2, 4, -6]]), nmb=0))


# --- streaming -----------------------------------------------------------------------

def mlp_graph(rng, n_in=6, h=5, o=3):
    w1 = rng.integers(-60, 61, (h, n_in)) * 2
    w2 = rng.integers(-60, 61, (o, h)) * 2
    nodes = {"in": inp(n_in), "fc1": dense(w1, exp=1, nmb=3),
             "cf1": cf(h, vth=150, dv=1024, bias_mant=rng.integers(-40, 40, h), bias_exp=1, K=3),
             "fc2": dense(w2, nmb=3, bias_int=np.array([5, -7, 0])), "out": out(o)}
    order = list(nodes)
    return graph(nodes, list(zip(order, order[1:])), latency=2, input_bits=3,
                 input_signed=True), (w1, w2)


def test_streaming_with_resets_equals_one_run_per_sample(lava_python, tmp_path):
    rng = np.random.default_rng(3)
    g, (w1, w2) = mlp_graph(rng)
    x = rng.integers(-4, 4, (5, 3, 6))
    probes = ["cf1", "v:cf1", "fc1"]
    together = run(lava_python, tmp_path, g, x, probes)
    for b in range(x.shape[1]):
        alone = run(lava_python, tmp_path, g, x[:, b:b + 1], probes)
        for key in ["output", "cf1", "fc1"]:
            np.testing.assert_array_equal(together[key][:, b:b + 1], alone[key], err_msg=key)
        np.testing.assert_array_equal(together["v:cf1"][b:b + 1], alone["v:cf1"])
    a1 = np_dense(x, w1, exp=1)
    bias = (np.asarray(g.nodes["cf1"].metadata[FP]["bias_mant"]).astype(np.int64) << 1)
    s1, v1 = np_cf(a1, 150, 1024, bias, K=3)
    np.testing.assert_array_equal(together["cf1"], s1)
    np.testing.assert_array_equal(together["v:cf1"], v1)
    np.testing.assert_array_equal(together["output"], np_dense(s1, w2) + np.array([5, -7, 0]))
