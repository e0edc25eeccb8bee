"""Target ``loihi`` against nengo-loihi's Loihi 1 emulator, bit for bit.

cf2neuro's emulator (the loihi2 back end's integer numerics) and nengo-loihi's
`EmulatorInterface` (its own integer arithmetic of Loihi 1, in the isolated
runtime) run the same quantized graphs: spike for spike, membrane for membrane,
on random and trained reset-to-zero LIF/IF networks. Where Loihi 1 computes
something else, a test pins the difference down (leaky CF state, weight
exponents below -1, the 22-bit synaptic accumulator).

Without a Python 3.10/3.11 to build the runtime the tests skip with the
install command; under CI (CI set) that is a failure.
"""

from __future__ import annotations

import numpy as np
import pytest

from cf2neuro.errors import RuntimeMissingError, RunnerTimeoutError, UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.quant import quantize
from cf2neuro.runners import RunRequest
from cf2neuro.runners.emulator import emulate

NEURONS = ("CFNeuron", "LIF", "IF", "CubaLIF")


def _run(q, x, probes, stats=None):
    from cf2neuro.backends.loihi2.nengo_loihi_runner import run_nengo_loihi

    return run_nengo_loihi(q, x, probes=probes, stats=stats)


def _assert_same(q, x, stats=None) -> dict:
    """Emulator == nengo-loihi on output, every neuron's spikes and membranes; the probes."""
    neurons = [n.name for n in q if n.op in NEURONS]
    probes = neurons + [f"v:{n}" for n in neurons]
    emu = emulate(q, x, probes=probes)
    stats = {} if stats is None else stats
    got = _run(q, x, probes, stats)
    assert got["latency"] == emu["latency"]
    for p in ["output", *probes]:
        np.testing.assert_array_equal(got[p], np.asarray(emu[p]), err_msg=p)
    assert all(np.asarray(emu[n]).sum() > 0 for n in neurons), "a layer never spiked"
    assert not stats.get("warnings") and not stats.get("notes"), stats
    return emu


# --- graphs --------------------------------------------------------------------------

def _full(shape, v):
    return np.full(shape, v, np.float32)


def _neuron(g: Graph, name: str, src: str, shape, beta: float, thr=1.0, op=None):
    """A reset-to-zero LIF (beta < 1) or IF (beta = 1) with unit input gain."""
    dt = g.meta["dt"]
    if op == "CubaLIF":
        g.add_node(name, "CubaLIF", [src], params={  # unit gain: r = 1/(a_syn·a_mem)
            "tau_syn": _full(shape, 5 * dt), "tau_mem": _full(shape, dt / (1 - beta)),
            "r": _full(shape, 5 / (1 - beta)), "v_leak": _full(shape, 0),
            "v_threshold": _full(shape, thr)})
    elif beta < 1:
        g.add_node(name, "LIF", [src], params={
            "tau": _full(shape, dt / (1 - beta)), "r": _full(shape, 1 / (1 - beta)),
            "v_leak": _full(shape, 0), "v_threshold": _full(shape, thr)})
    else:
        g.add_node(name, "IF", [src], params={"r": _full(shape, 1), "v_threshold":
                                              _full(shape, thr)})


def _mlp(seed: int, n_in=20, hidden=(24, 16), betas=(0.9, 1.0), op=None) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [n_in]})
    prev, width = "x", n_in
    for i, (h, beta) in enumerate(zip(hidden, betas)):
        g.add_node(f"fc{i}", "Linear", [prev], params={
            "weight": rng.normal(0, 0.6, (h, width)).astype(np.float32),
            "bias": rng.normal(0.1, 0.1, h).astype(np.float32)})
        _neuron(g, f"n{i}", f"fc{i}", (h,), beta, op=op)
        prev, width = f"n{i}", h
    g.add_node("fc_out", "Linear", [prev], params={
        "weight": rng.normal(0, 0.6, (5, width)).astype(np.float32),
        "bias": rng.normal(0, 0.1, 5).astype(np.float32)})
    g.add_node("y", "Output", ["fc_out"])
    return g.validate()


def _spikes(seed: int, shape, p=0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.float32)


def _one_layer(w: np.ndarray, thr: float, bias: float = 0.0) -> Graph:
    """Input -> Linear -> IF -> Linear readout: one synapse whose encoding is under test."""
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [w.shape[1]]})
    g.add_node("fc", "Linear", ["x"], params={"weight": w.astype(np.float32),
                                              "bias": _full(w.shape[0], bias)})
    _neuron(g, "n", "fc", (w.shape[0],), 1.0, thr)
    g.add_node("out", "Linear", ["n"], params={"weight": np.ones((2, w.shape[0]), np.float32)})
    g.add_node("y", "Output", ["out"])
    return g.validate()


def cf_as_lif(g: Graph, dt: float = 1e-3) -> Graph:
    """Binary reset-to-zero CF layers as the LIF/IF they are (tau = dt/(1-beta), r = 1/(1-beta)).

    What target loihi would quantize if it ran such CF layers as Lava's (Loihi's) LIF.
    """
    g = g.copy()
    g.meta["dt"] = dt
    for n in list(g):
        if n.op != "CFNeuron":
            continue
        a = n.attrs
        assert a["max_spikes"] == 1 and not a["signed"] and a["reset"] == "zero"
        thr = np.broadcast_to(np.asarray(n.params.get("threshold", a["threshold"]),
                                         np.float32), n.shape).copy()
        beta = float(a["beta"])
        n.op, n.attrs = ("LIF" if beta < 1 else "IF"), {"reset": "zero"}
        n.params = ({"tau": _full(n.shape, dt / (1 - beta)), "r": _full(n.shape, 1 / (1 - beta)),
                     "v_leak": _full(n.shape, 0), "v_threshold": thr} if beta < 1 else
                    {"r": _full(n.shape, 1), "v_threshold": thr})
    return g.validate()


# --- bit for bit ------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_lif_and_if_networks_match(nengo_loihi_python, seed):
    q = quantize(_mlp(seed), "loihi", calibration=_spikes(50 + seed, (12, 16, 20)))
    assert [q[n].op for n in ("n0", "n1")] == ["LIF", "IF"]
    _assert_same(q, _spikes(100 + seed, (12, 16, 20)))


def test_cuba_lif_current_decay_matches(nengo_loihi_python):
    q = quantize(_mlp(7, op="CubaLIF", betas=(0.9, 0.8)), "loihi",
                 calibration=_spikes(8, (20, 8, 20)))
    assert 0 < q["n0"].attrs["fixed_point"]["du"] < 4095  # Loihi's u decays with offset 1
    _assert_same(q, _spikes(9, (20, 8, 20), 0.5))


def test_recurrent_and_conv_networks_match(nengo_loihi_python):
    rng = np.random.default_rng(2)
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [2, 7, 6]})
    g.add_node("conv", "Conv2d", ["x"], attrs={"padding": [1, 1]}, params={
        "weight": rng.normal(0, .5, (3, 2, 3, 3)).astype(np.float32),
        "bias": rng.normal(0.1, .1, 3).astype(np.float32)})
    _neuron(g, "n1", "conv", (3, 7, 6), 0.5)
    g.add_node("fl", "Flatten", ["n1"], attrs={"start_dim": 0, "end_dim": -1})
    g.add_node("fin", "Linear", ["fl"], params={"weight": rng.normal(0, .3, (12, 126))
                                                .astype(np.float32)})
    g.add_node("add", "Add", ["fin", "frec"])
    _neuron(g, "n2", "add", (12,), 0.75)
    g.add_node("frec", "Linear", ["n2"], params={"weight": rng.normal(0, .4, (12, 12))
                                                 .astype(np.float32)})
    g.add_node("fo", "Linear", ["n2"], params={"weight": rng.normal(0, .4, (3, 12))
                                               .astype(np.float32)})
    g.add_node("y", "Output", ["fo"])
    g.validate()
    q = quantize(g, "loihi", calibration=_spikes(3, (10, 6, 2, 7, 6), 0.4))
    _assert_same(q, _spikes(4, (16, 5, 2, 7, 6), 0.4))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Quick reset-to-zero binary CF-MLPs on digits, spike-encoded: {beta: (graph, cal, x)}."""
    from cf2neuro.checkpoint import checkpoint_graph
    from cf2neuro.train import TrainConfig, train
    from cf2neuro.verify import calibration_inputs, test_inputs

    out = {}
    for beta in (0.5, 1.0):
        ckpt = tmp_path_factory.mktemp(f"loihi-beta{beta}")
        neuron = {"reset": "zero", "max_spikes": 1, "signed": False, "beta": beta}
        train(TrainConfig(epochs=3, encoding="poisson", target="loihi", neuron=neuron), ckpt,
              progress=False)
        x, labels = test_inputs(ckpt, limit=64)
        out[beta] = checkpoint_graph(ckpt), calibration_inputs(ckpt), x.numpy(), labels
    return out


def test_trained_if_cf_network_matches(nengo_loihi_python, trained):
    """beta = 1: a binary reset-to-zero CF layer is Loihi's IF with its state x64, exactly."""
    g, cal, x, _ = trained[1.0]
    q = quantize(g, "loihi", calibration=cal)
    assert {n.attrs["fixed_point"]["dv"] for n in q if n.op in NEURONS} == {0}
    _assert_same(q, x)


def test_trained_leaky_network_matches(nengo_loihi_python, trained):
    """beta = 0.5: target loihi quantizes the binary reset-to-zero CF layers as the LIF they
    are (Lava's LIF, what Loihi runs), exactly as cf_as_lif states them, and matches."""
    g, cal, x, labels = trained[0.5]
    q = quantize(g, "loihi", calibration=cal)
    assert {n.op for n in q if n.op in NEURONS} == {"LIF"}
    by_hand = quantize(cf_as_lif(g), "loihi", calibration=cal)
    for n in q:
        if n.op == "LIF":
            assert n.attrs["fixed_point"] == by_hand[n.name].attrs["fixed_point"]
    emu = _assert_same(q, x)
    acc = float((np.asarray(emu["output"]).mean(0).argmax(-1) == np.asarray(labels)).mean())
    assert acc > 0.5


def test_nir_corpus_graphs_match(nengo_loihi_python):
    """Third-party NIR graphs (the NIR paper's): lif_norse on its reference input spikes on
    Norse's own steps on nengo-loihi too; the Braille CubaLIF nets (recurrent, with bias)."""
    from conftest import require_corpus

    from cf2neuro.nir import from_nir

    ref = np.loadtxt(require_corpus("lif_norse.csv"), delimiter=",")  # input, v, spike
    x = ref[:, 0].astype(np.float32).reshape(-1, 1, 1)
    q = quantize(from_nir(require_corpus("lif_norse.nir"), dt=1e-4), "loihi", calibration=x)
    got = _run(q, x, ["1"])
    np.testing.assert_array_equal(np.flatnonzero(got["1"]), np.flatnonzero(ref[:, 2]))
    _assert_same(q, x)
    for name in ("braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"):
        g = from_nir(require_corpus(name), dt=1e-4)
        x = _spikes(0, (40, 8, *g[g.inputs[0]].shape))
        _assert_same(quantize(g, "loihi", calibration=x), x)


# --- Loihi 1 semantics where they differ ---------------------------------------------------

def _emu_and_loihi(q, x, stats):
    emu = emulate(q, x, probes=["n", "v:n"])
    got = _run(q, x, ["n", "v:n"], stats)
    return emu, got


def test_refractory_delay_one_is_none(nengo_loihi_python):
    """nengo-loihi counts refract_delay down in the spike step: 1 lets a neuron fire every step
    (Lava's LIF has no refractory period); 2 would silence the next step."""
    from cf2neuro.backends.loihi2.nengo_loihi_runner import _drive, loihi1_plan

    q = quantize(_one_layer(np.full((3, 4), 0.1), 1.0, bias=1.5), "loihi",
                 calibration=_spikes(0, (4, 2, 4)))
    x = np.zeros((6, 1, 4), np.int8)
    assert np.asarray(emulate(q, x, probes=["n"])["n"]).all()  # fires every step
    plan, arrays, _ = loihi1_plan(q)
    arrays["x"], plan["record"] = x, ["s:n"]
    for refract, want in ((1, [1] * 6), (2, [1, 0] * 3)):
        for b in plan["blocks"]:
            b["refract"] = refract
        spikes = _drive(plan, arrays, 60, {})["s:n"][:, 0, 0]
        assert spikes.tolist() == want, refract


# The back end's arithmetic (Lava's) against Loihi 1's where they part: quantized for loihi2
# (weight_exp -8..7, binary here), whatever range target loihi allows.

def test_weight_exponent_below_minus_one_rounds_each_weight(nengo_loihi_python):
    """Loihi 1 shifts each weight (lossy below shift_bits + weight_exp = 0), Lava the sum:
    the same for weight_exp >= -1 (mixed signs), different below."""
    rng = np.random.default_rng(0)
    x = _spikes(1, (10, 8, 200), 0.5)
    for thr, exact in ((20.0, True), (40.0, False)):
        q = quantize(_one_layer(rng.normal(0, 0.6, (30, 200)), thr), "loihi2", calibration=x)
        e = q["fc"].attrs["fixed_point"]["weight_exp"]
        stats: dict = {}
        emu, got = _emu_and_loihi(q, x, stats)
        same = np.array_equal(got["v:n"], np.asarray(emu["v:n"]))
        assert (e >= -1) == exact and same == exact, (thr, e)
        assert (stats["weights_changed_by_encoding"] > 0) == (not exact)


def test_synaptic_accumulator_wraps_at_22_bits(nengo_loihi_python):
    """nengo-loihi wraps a step's synaptic input at 22 bits signed (Q_BITS = 21, in u units,
    i.e. |a| < 2^15 mantissa units); cf2neuro (Lava) keeps 32 bits."""
    w = np.abs(np.random.default_rng(0).normal(1, 0.1, (8, 64)))
    x = np.ones((6, 4, 64), np.float32)
    q = quantize(_one_layer(w, 1.0), "loihi2", calibration=x)
    assert q.meta["fixed_point"]["input_bits"] == 0
    stats: dict = {}
    emu, got = _emu_and_loihi(q, x, stats)
    assert stats["warnings"].get("Overflow in q0", 0) > 0
    assert not np.array_equal(got["n"], np.asarray(emu["n"]))


# --- the runner ------------------------------------------------------------------------

def test_runner_contract(nengo_loihi_python):
    from cf2neuro.backends.loihi2.nengo_loihi_runner import NengoLoihiRunner

    q = quantize(_mlp(3), "loihi", calibration=_spikes(5, (8, 8, 20)))
    x = _spikes(6, (8, 5, 20))
    runner = NengoLoihiRunner()
    assert runner.available() == (True, "")
    res = runner.run(RunRequest(q, x, ("n0", "v:n1", "fc_out")))
    emu = emulate(q, x, probes=["n0", "v:n1", "fc_out"])
    assert res.latency == emu["latency"] == 3 and res.timings["total"] > 0
    for k in ("n0", "v:n1", "fc_out"):
        np.testing.assert_array_equal(res.probes[k], np.asarray(emu[k]))
    np.testing.assert_array_equal(res.outputs["output"], np.asarray(emu["output"]))
    with pytest.raises(RunnerTimeoutError, match="timeout"):
        runner.run(RunRequest(q, np.repeat(x, 50, axis=1), (), timeout=1e-6))


def test_refuses_what_loihi1_cannot_run(nengo_loihi_python):
    from cf2neuro.backends.loihi2.nengo_loihi_runner import loihi1_plan
    from test_runner_contract import _graph  # graded signed CF spikes, analog input

    x = np.random.default_rng(0).normal(0, 1, (4, 3, 6)).astype(np.float32)
    with pytest.raises(UnsupportedError, match="binary input spikes"):
        loihi1_plan(quantize(_graph(), "loihi2", calibration=x))
    g = _graph()  # binary, but reset by subtraction: target loihi takes it, Loihi 1 does not
    g["cf1"].attrs.update(max_spikes=1, signed=False)
    q = quantize(g, "loihi", calibration=_spikes(0, (4, 3, 6)))
    with pytest.raises(UnsupportedError, match="reset to zero"):
        loihi1_plan(q)


def test_missing_runtime_is_a_clear_error(monkeypatch, tmp_path):
    from cf2neuro.backends.loihi2.nengo_loihi_runner import NengoLoihiRunner

    monkeypatch.setenv("CF2NEURO_NENGO_LOIHI_RUNTIME", str(tmp_path / "no-runtime"))
    monkeypatch.setenv("CF2NEURO_NENGO_LOIHI_PYTHON", str(tmp_path / "no-python"))
    runner = NengoLoihiRunner()
    ok, note = runner.available()
    assert not ok and "install" in note.lower()
    q = quantize(_mlp(0), "loihi", calibration=_spikes(0, (4, 2, 20)))
    with pytest.raises(RuntimeMissingError, match="(?i)install"):
        runner.run(RunRequest(q, _spikes(1, (4, 2, 20))))
