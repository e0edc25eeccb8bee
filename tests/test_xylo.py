"""The Xylo back end (issue 15): the emulator is bit-exact with XyloSim, and what Xylo cannot
hold is refused with the reason.

Against REAL XyloSim (rockpool 3.1.0 + xylosim 0.1.3 in cf2neuro's isolated runtime):
quantized random networks (a hidden CF layer with recurrent weights and a readout, several
seeds), networks in Xylo's integer form with every field random (saturation, dashes 0..15,
thresholds up to 32767, membrane biases), and a small trained MLP (8 features, 8 classes)
must agree spike for spike and state for state: hidden spikes, Vmem and Isyn, readout Isyn,
Vmem and spikes, and the output. Without the runtime those tests skip with the command that
makes it; under CI (CI set) that is a failure.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from cf2neuro.backends.xylo import numerics as xn
from cf2neuro.backends.xylo.lower import input_raster, roles, xylo_spec
from cf2neuro.backends.xylo.runner import run_spec, run_xylosim
from cf2neuro.errors import (BadInputError, RunnerTimeoutError, RuntimeMissingError,
                             UnsupportedError)
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.quant import format_report, quantize
from cf2neuro.runners import RunRequest, get_runner
from cf2neuro.runners.emulator import emulate
from leftovers import leftovers



def _f32(a):
    return np.asarray(a, np.float32)


def mlp(seed=0, n_in=6, h=12, o=3, rec=True, bias=True, beta=0.5, k=31, signed=False,
        reset="subtract") -> Graph:
    """Input -> Linear -> CF (+ recurrent Linear) -> Linear readout -> Output, float."""
    rng = np.random.default_rng(seed)
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [n_in]})
    p = {"weight": _f32(rng.normal(0, .6, (h, n_in)))}
    if bias:
        p["bias"] = _f32(rng.normal(0, .1, h))
    g.add_node("fc1", "Linear", ["x"], params=p)
    if rec:
        g.add_node("sum", "Add", ["fc1", "rec"])
    g.add_node("cf", "CFNeuron", ["sum" if rec else "fc1"], attrs={
        "threshold": 1.0, "beta": beta, "max_spikes": k, "signed": signed, "reset": reset})
    if rec:
        g.add_node("rec", "Linear", ["cf"], params={"weight": _f32(rng.normal(0, .3, (h, h)))})
    g.add_node("fc2", "Linear", ["cf"], params={"weight": _f32(rng.normal(0, .5, (o, h))),
                                                "bias": _f32(rng.normal(0, .1, o))})
    g.add_node("y", "Output", ["fc2"])
    return g.validate()


def raw_xylo_graph(seed, n_in=5, h=12, o=3) -> Graph:
    """A graph already in Xylo's integer form, every field random (saturation included)."""
    rng = np.random.default_rng(seed)
    ints = lambda lo, hi, n: [int(v) for v in rng.integers(lo, hi, n)]  # noqa: E731
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [n_in]})
    g.add_node("fc1", "Linear", ["x"], params={
        "weight": np.zeros((h, n_in), np.float32),
        "weight_mant": rng.integers(-128, 128, (h, n_in)).astype(np.int16),
        "bias_int": rng.integers(-128, 128, h).astype(np.int16)},
        attrs={"fixed_point": {"role": "input", "weight_shift": int(rng.integers(0, 8))}})
    g.add_node("sum", "Add", ["fc1", "rec"])
    reset = rng.integers(0, 40, h)
    vth = np.exp(rng.uniform(0, np.log(32767), h)).astype(int) + 1
    g.add_node("cf", "CFNeuron", ["sum"],
               params={"bias_mant": rng.integers(-3000, 3000, h).astype(np.int16)},
               attrs={"threshold": 1.0, "beta": 0.5, "max_spikes": 31, "signed": False,
                      "fixed_point": {"role": "hidden", "vth": [int(v) for v in vth],
                                      "dash_syn": ints(0, 16, h), "dash_mem": ints(0, 16, h),
                                      "reset_weight": [int(v) for v in reset],
                                      "weight_shift_rec": int(rng.integers(0, 8)),
                                      "max_spikes": 31}})
    wr = rng.integers(-128, 128, (h, h))
    wr[np.arange(h), np.arange(h)] = np.clip(wr.diagonal(), reset - 128, 127)
    g.add_node("rec", "Linear", ["cf"], params={"weight": np.zeros((h, h), np.float32),
                                                "weight_mant": wr.astype(np.int16)},
               attrs={"fixed_point": {"role": "recurrent"}})
    g.add_node("fc2", "Linear", ["cf"], params={
        "weight": np.zeros((o, h), np.float32),
        "weight_mant": rng.integers(-128, 128, (o, h)).astype(np.int16),
        "bias_int": rng.integers(-1000, 1000, o)},
        attrs={"fixed_point": {"role": "readout", "weight_shift": int(rng.integers(0, 8)),
                               "dash_syn": 1, "dash_mem": ints(0, 16, o),
                               "vth": ints(1, 32768, o)}})
    g.add_node("y", "Output", ["fc2"])
    g.meta["fixed_point"] = {"target": "xylo", "backend": "xylo", "input_scale": 1.0,
                             "input_bits": 4, "input_signed": False, "latency": 1,
                             "output_scale": 1.0}
    return g.validate()


def emulated_states(q: Graph, x) -> dict:
    """The emulator's output and every state XyloSim records, named as XyloSim names them."""
    rec: dict = {}
    out = Engine(q, xn.XyloNumerics(record=rec)).run(x)["output"].numpy()
    hid, ro = roles(q)["hidden"], roles(q)["readout"]
    st = lambda name, k: np.stack([d[k].numpy() for d in rec[name]])  # noqa: E731
    return {"output": out, "Isyn": st(hid, "i"), "Vmem": st(hid, "v"), "Spikes": st(hid, "n"),
            "Isyn_out": st(ro, "i"), "Vmem_out": st(ro, "v"), "Spikes_out": st(ro, "n")}


def xylosim_states(q: Graph, x) -> dict:
    """XyloSim's recordings aligned like the emulator's (readout one step later), and the output."""
    counts = input_raster(q, x)
    raw = run_spec(xylo_spec(q), np.concatenate([counts, np.zeros_like(counts[:1])], 0))
    T = counts.shape[0]
    out = {k: (v[1:] if k.endswith("_out") else v[:T]) for k, v in raw.items()}
    out["output"] = run_xylosim(q, x)["output"]
    return out


def assert_same_states(q: Graph, x) -> dict:
    emu, sim = emulated_states(q, x), xylosim_states(q, x)
    for k in emu:
        assert emu[k].shape == sim[k].shape, (k, emu[k].shape, sim[k].shape)
        same = emu[k] == sim[k]
        assert same.all(), f"{k}: {(~same).sum()} of {same.size} differ; first at " \
                           f"{np.argwhere(~same)[0].tolist()}"
    return sim


# --- XyloSim's primitives, transcribed (no runtime needed) -----------------------------

def test_decay_is_a_shift_of_at_least_one_unit():
    t = torch.tensor
    x = t([100, 5, 1, 0, -1, -3, -100, 32767, -32768])
    assert xn.decay(x, t(1)).tolist() == [50, 2, 1, 0, -1, -2, -50, 16383, -16384]
    assert xn.decay(x, t(15)).tolist() == [1, 1, 1, 0, -1, -1, -1, 1, -1]
    assert xn.decay(x, t(0)).tolist() == x.tolist()   # dash 0 zeroes the state
    assert xn.wrap16(-t([-32768, 5])).tolist() == [-32768, -5]


def test_neuron_step_by_hand():
    t = lambda *v: torch.tensor(v)  # noqa: E731
    # i = 100 - 50; v = 0 - 0 + 50 = 50 >= 10: 5 spikes, v = 0
    i, v, n = xn.neuron_step(t(100), t(0), t(1), t(0), t(0), t(10), 31)
    assert (i.item(), v.item(), n.item()) == (50, 0, 5)
    # 31 spikes at most; the rest stays in v
    i, v, n = xn.neuron_step(t(32767), t(0), t(15), t(0), t(0), t(1), 31)
    assert (i.item(), v.item(), n.item()) == (32766, 32766 - 31, 31)
    # a readout neuron sends one
    assert xn.neuron_step(t(32767), t(0), t(15), t(0), t(0), t(1), 1)[2].item() == 1
    # dash_mem 0 at -32768: -(-32768) wraps in int16, v stays at the floor
    i, v, n = xn.neuron_step(t(0), t(-32768), t(1), t(0), t(0), t(5), 31)
    assert (v.item(), n.item()) == (-32768, 0)
    # -decay(32000, 15) = -1, + bias 2000: v = sat(32000 + 1999) = 32767
    i, v, n = xn.neuron_step(t(0), t(32000), t(1), t(15), t(2000), t(32767), 31)
    assert v.item() == 0 and n.item() == 1  # v saturated at 32767 = v_th: one spike


def test_saturating_delivery_keeps_xylosims_order():
    rng = np.random.default_rng(0)
    lo, hi = xn.STATE_MIN, xn.STATE_MAX
    for _ in range(3):
        b, n = 6, 8
        groups = [(torch.tensor(rng.integers(0, 16, (b, 5))),
                   torch.tensor(rng.integers(-128, 128, (n, 5)) << int(rng.integers(0, 8)))),
                  (torch.tensor(rng.integers(0, 32, (b, 9)) * (rng.random((b, 9)) < .5)),
                   torch.tensor(rng.integers(-128, 128, (n, 9)) << int(rng.integers(0, 8))))]
        start = torch.tensor(rng.integers(lo, hi + 1, (b, n)))
        want = start.clone()
        for bb in range(b):  # XyloLayer.cpp deliver_spikes: one spike at a time, in order
            for kk in range(n):
                s = int(start[bb, kk])
                for x, w in groups:
                    for j in range(x.shape[1]):
                        for _ in range(int(x[bb, j])):
                            s = min(max(s + int(w[kk, j]), lo), hi)
                want[bb, kk] = s
        groups = [(x, xn.weights(w)) for x, w in groups]
        assert torch.equal(xn.accumulate(start, groups), want)
        assert torch.equal(xn.accumulate(start, groups, chunk=7), want)  # chunked alike


# --- quantizer and checker ---------------------------------------------------------------

def test_quantized_fields_fit_xylo_and_the_self_reset_is_the_threshold():
    x = np.random.default_rng(1).uniform(0, 1, (6, 8, 6)).astype(np.float32)
    q = quantize(mlp(), "xylo", calibration=x)
    spec = xylo_spec(q)  # checked against Xylo's fields
    fp = q["cf"].attrs["fixed_point"]
    assert fp["vth"] == fp["reset_weight"] << fp["weight_shift_rec"]
    assert fp["dash_syn"] == 1 and fp["dash_mem"] == 0
    assert spec["weights_in"].shape == (6 + 1, 12)   # the bias channel
    assert np.all(np.diag(spec["weights_rec"]) <= 127 - fp["reset_weight"])
    assert q.meta["fixed_point"]["latency"] == 1 and q.meta["fixed_point"]["input_bits"] == 4
    assert "vth" in format_report(q)
    betas = {0.75: 2, 0.875: 3, 1.0: 15, 0.3: 1}
    for beta, dash in betas.items():
        qb = quantize(mlp(beta=beta, k=1), "xylo", calibration=x)
        assert qb["cf"].attrs["fixed_point"]["dash_syn"] == dash
        notes = " ".join(qb["cf"].meta["quant"]["notes"])
        assert "up to 31 spikes" in notes
        assert ("beta" in notes) == (beta in (1.0, 0.3))


def test_negative_inputs_are_reported_and_clip_to_zero():
    x = np.random.default_rng(1).normal(0, 1, (4, 8, 6)).astype(np.float32)
    q = quantize(mlp(), "xylo", calibration=x)
    assert "negative input values clip to 0" in q.meta["fixed_point"]["notes"]
    assert emulate(q, x)["output"].shape == (4, 8, 3)


def test_the_emulated_network_tracks_the_float_cf_network():
    """Feed-forward, K = 31: the mapping is the CF neuron but for rounding (numerics.py)."""
    agree = []
    for seed in range(3):
        g = mlp(seed, h=40, rec=False)
        x = np.random.default_rng(seed).uniform(0, 1, (10, 40, 6)).astype(np.float32)
        q = quantize(g, "xylo", calibration=x)
        e = emulate(q, x, probes=["cf"])
        agree.append((Engine(g).run(x, probes=["cf"])["cf"].numpy() == e["cf"]).mean())
        w = q["fc2"].params["weight_mant"].astype(np.int64)
        exact = e["cf"] @ w.T + q["fc2"].params["bias_int"]
        assert np.abs(e["output"] - exact).max() <= 1  # the readout decode: within one unit
    assert np.mean(agree) >= 0.97, agree


@pytest.mark.parametrize("edit, match", [
    (lambda g: g["cf"].attrs.update(signed=True), "signed=false"),
    (lambda g: g["cf"].attrs.update(reset="zero"), "reset=subtract"),
    (lambda g: None, "16 input channels"),
    (lambda g: g["cf"].attrs.update(threshold=2.0) or g["fc2"].params.update(
        weight=np.zeros((9, 12), np.float32), bias=np.zeros(9, np.float32)), "readout neurons"),
])
def test_what_xylo_cannot_hold_is_refused_with_the_way_out(edit, match):
    g = mlp(n_in=16 if match == "16 input channels" else 6)
    edit(g)
    with pytest.raises(UnsupportedError, match=match) as e:
        quantize(g.validate(), "xylo")
    assert "'" in str(e.value)  # the node is named


def test_sizes_layers_and_ops_xylo_lacks_are_refused():
    with pytest.raises(UnsupportedError, match="1000 hidden neurons"):
        quantize(mlp(h=1001, rec=False, n_in=4), "xylo")
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [1, 4, 4]})
    g.add_node("conv", "Conv2d", ["x"], params={"weight": np.ones((2, 1, 3, 3), np.float32)})
    g.add_node("cf", "CFNeuron", ["conv"], attrs={"signed": False})
    g.add_node("y", "Output", ["cf"])
    with pytest.raises(UnsupportedError, match="no convolution"):
        quantize(g.validate(), "xylo")
    g = mlp(rec=False)
    g.add_node("cf2", "CFNeuron", ["fc2"], attrs={"signed": False})
    g["y"].inputs = ["cf2"]
    with pytest.raises(UnsupportedError, match="exactly one hidden CF layer"):
        quantize(g.validate(), "xylo")


def test_the_runner_refuses_graphs_for_other_targets_before_any_work():
    g = mlp(rec=False)
    runner = get_runner("xylosim")
    with pytest.raises(BadInputError, match="fixed graphs; this one is float"):
        runner.run(RunRequest(g, np.zeros((2, 1, 6), np.float32)))
    with pytest.raises(UnsupportedError, match="target xylo"):
        runner.run(RunRequest(quantize(g, "loihi2"), np.zeros((2, 1, 6), np.float32)))
    q = quantize(g, "xylo")
    with pytest.raises(BadInputError, match=r"\[T, B, 6\]"):
        runner.run(RunRequest(q, np.zeros((2, 1, 5), np.float32)))
    for other in ("lava", "onnxruntime"):  # other targets' runners refuse it up front
        with pytest.raises(UnsupportedError, match="quantized for target xylo"):
            get_runner(other).refuse(q)


def test_a_missing_runtime_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("CF2NEURO_XYLO_RUNTIME", str(tmp_path / "none"))
    monkeypatch.setenv("CF2NEURO_XYLO_PYTHON", str(tmp_path / "no-python"))
    runner = get_runner("xylosim")
    ok, note = runner.available()
    assert not ok and "install" in note.lower()
    q = quantize(mlp(), "xylo")
    with pytest.raises(RuntimeMissingError, match="install"):
        runner.run(RunRequest(q, np.zeros((2, 1, 6), np.float32)))


# --- against XyloSim ----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_emulator_equals_xylosim_on_quantized_networks(xylo_python, seed):
    rec, bias = seed != 1, seed != 2
    g = mlp(seed, n_in=5 + seed, h=20 + 10 * seed, o=2 + seed, rec=rec, bias=bias,
            beta=(0.5, 0.75, 0.9, 1.0)[seed])
    x = np.random.default_rng(seed).uniform(0, 1, (12, 6, 5 + seed)).astype(np.float32)
    q = quantize(g, "xylo", calibration=x)
    sim = assert_same_states(q, x)
    assert sim["Spikes"].max() > 1  # multi-spike steps happened
    probes = ["cf", "v:cf", "fc1", "v:fc2"] + (["rec"] if rec else [])
    e = emulate(q, x, probes=probes)
    r = run_xylosim(q, x, probes=probes)
    for p in probes:
        np.testing.assert_array_equal(e[p], r[p], err_msg=p)


@pytest.mark.parametrize("seed", range(3))
def test_emulator_equals_xylosim_on_random_integer_configurations(xylo_python, seed):
    """Every Xylo field random: int16 saturation, dash 0..15, large thresholds, v biases."""
    q = raw_xylo_graph(seed)
    x = np.random.default_rng(seed).integers(0, 16, (15, 6, 5))
    sim = assert_same_states(q, x)
    assert (np.abs(sim["Isyn"]) == 32767).any() or (sim["Vmem"] == -32768).any()


def test_trained_mlp_on_xylosim(xylo_python):
    """A CF-MLP trained on digits pooled to 8 features (classes 0..7), unsigned, K = 1."""
    from sklearn.datasets import load_digits

    from cf2neuro.ir.trace import trace_model
    from cf2neuro.nn.models.mlp import SpikingMLP

    d = load_digits()
    keep = d.target < 8
    feats = (d.images[keep] / 16.0).reshape(-1, 2, 4, 4, 2).mean((2, 4)).reshape(-1, 8)
    y = d.target[keep]
    idx = np.random.default_rng(0).permutation(len(y))
    tr, te = idx[:1100], idx[1100:]
    T = 4
    torch.manual_seed(0)
    model = SpikingMLP(input_shape=(8,), num_classes=8, timesteps=T, hidden=(32,),
                       neuron={"signed": False, "max_spikes": 1})
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs = torch.tensor(feats, dtype=torch.float32)[None].expand(T, -1, -1)
    for _ in range(40):
        for i in range(0, len(tr), 128):
            b = torch.as_tensor(tr[i:i + 128])
            loss = torch.nn.functional.cross_entropy(model(xs[:, b]).mean(0),
                                                     torch.as_tensor(y[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    g = trace_model(model, input_shape=[8])
    x = xs[:, te].numpy()
    q = quantize(g, "xylo", calibration=xs[:, tr[:200]].numpy())
    sim = assert_same_states(q, x)
    acc = lambda out: float((out.sum(0).argmax(-1) == y[te]).mean())  # noqa: E731
    float_acc, xylo_acc = acc(Engine(g).run(x)["output"].numpy()), acc(sim["output"])
    # what Xylo changes on purpose: inputs on its 0..15 count grid, up to 31 spikes a step
    s = q.meta["fixed_point"]["input_scale"]
    as_xylo = g.copy()
    as_xylo[roles(q)["hidden"]].attrs["max_spikes"] = 31
    grid_acc = acc(Engine(as_xylo).run(np.clip(np.round(x * s), 0, 15) / s)["output"].numpy())
    print(f"trained MLP on {len(te)} samples: float {float_acc:.3f}; float on Xylo's input grid "
          f"with K = 31 {grid_acc:.3f}; XyloSim {xylo_acc:.3f}")
    assert float_acc > 0.6 and xylo_acc >= float_acc - 0.08
    assert abs(xylo_acc - grid_acc) <= 0.02  # the integer mapping itself costs ~nothing


def test_train_for_xylo_then_verify_on_xylosim(xylo_python, tmp_path):
    """The whole path: train --target xylo on digits-rows (8 channels, 8 steps, 8 classes),
    then verify: emulator and XyloSim agree on every probe; the drop stays small."""
    from cf2neuro.train import TrainConfig, train
    from cf2neuro.verify import test_inputs, verify

    ckpt = tmp_path / "ckpt"
    train(TrainConfig(model="mlp", data="digits-rows", model_options={"hidden": [48]},
                      target="xylo", epochs=20), ckpt, progress=False)
    rep = verify(ckpt, target="xylo", data="digits-rows", runner="xylosim",
                 report_dir=tmp_path / "report")
    print(f"digits-rows on xylo: float {rep['float_accuracy']:.3f}, XyloSim "
          f"{rep['runner_accuracy']:.3f}, exact match {rep['exact_match']}")
    assert rep["exact_match"] and min(rep["exact_match"].values()) == 1.0
    assert rep["float_accuracy"] > 0.5 and rep["accuracy_drop_pp"] <= 5
    assert rep["runner_accuracy"] == rep["quantized_accuracy"]
    x, _ = test_inputs(ckpt, "digits-rows", limit=40)
    from cf2neuro.checkpoint import source_graph
    q = quantize(source_graph(ckpt), "xylo", calibration=x)
    assert_same_states(q, np.asarray(x))


def test_runner_contract(xylo_python):
    """As tests/test_runner_contract.py asks of every runner, on a graph quantized for xylo."""
    g = mlp(3, n_in=6, h=8, o=3)
    x = np.random.default_rng(4).uniform(0, 1, (6, 5, 6)).astype(np.float32)
    q = quantize(g, "xylo", calibration=x)
    runner = get_runner("xylosim")
    assert runner.available() == (True, "")
    before = leftovers()
    res = runner.run(RunRequest(q, x, ("cf", "v:cf")))
    assert res.outputs["output"].shape == (6, 5, 3) and res.probes["cf"].shape == (6, 5, 8)
    assert res.latency == 1 and res.timings["total"] > 0
    emu = emulate(q, x, probes=["cf", "v:cf"])
    for k in ("cf", "v:cf"):
        np.testing.assert_array_equal(res.probes[k], emu[k])
    np.testing.assert_array_equal(res.outputs["output"], emu["output"])
    with pytest.raises(BadInputError, match="cannot probe"):
        runner.run(RunRequest(q, x, ("nope",)))
    t0 = time.monotonic()
    with pytest.raises(RunnerTimeoutError, match="timeout"):
        runner.run(RunRequest(q, np.repeat(x, 400, axis=1), ("cf",), timeout=1e-6))
    big = np.repeat(np.repeat(x, 40, axis=0), 500, axis=1)  # the watchdog kills a started run
    with pytest.raises(RunnerTimeoutError, match="killed"):
        runner.run(RunRequest(q, big, timeout=1.5))
    assert time.monotonic() - t0 < 30
    time.sleep(0.1)
    after = leftovers()
    assert after[0] <= before[0] and after[2] <= before[2]


def test_cli_runs_a_nir_file_on_xylosim(xylo_python, tmp_path):
    from cf2neuro.cli import main
    from cf2neuro.nir.export import write_nir

    write_nir(mlp(5, rec=False), tmp_path / "g.nir")
    x = np.random.default_rng(5).uniform(0, 1, (5, 3, 6)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    outs = {}
    for runner in ("xylosim", "emulator"):
        assert main(["run", str(tmp_path / "g.nir"), "--runner", runner, "--target", "xylo",
                     "--inputs", str(tmp_path / "x.npz"), "--probe", "cf",
                     "--out", str(tmp_path / f"{runner}.npz")]) == 0
        outs[runner] = np.load(tmp_path / f"{runner}.npz")
    for k in ("output", "cf", "latency"):
        np.testing.assert_array_equal(outs["xylosim"][k], outs["emulator"][k])


def test_a_saved_quantized_graph_runs_the_same(tmp_path):
    from cf2neuro.ir.serialize import load_graph, save_graph

    x = np.random.default_rng(2).uniform(0, 1, (5, 3, 6)).astype(np.float32)
    q = quantize(mlp(), "xylo", calibration=x)
    back = load_graph(save_graph(q, tmp_path / "q.safetensors"))
    np.testing.assert_array_equal(emulate(back, x)["output"], emulate(q, x)["output"])
    assert {k: v.tolist() for k, v in xylo_spec(back).items()} == \
        {k: v.tolist() for k, v in xylo_spec(q).items()}


def test_energy_is_the_published_dynamic_power_times_the_inference_time():
    """Energy model xylo: 291 uW (Bos & Muir 2024, measured on Xylo Audio 2) x T x 1 ms."""
    from cf2neuro.energy.counts import Counts
    from cf2neuro.energy.models import energy

    e = energy(Counts(timesteps=8, samples=1), "xylo")
    assert e["total_joules_per_inference"] == pytest.approx(291e-6 * 8 * 1e-3)
    assert e["measured"] is True
    assert any("2406.15112" in v["source"] for v in e["sources"].values())
    assert any("does not scale" in a for a in e["assumptions"])
