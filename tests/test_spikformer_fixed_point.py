"""Spikformer in Loihi 2 fixed point: attention on the emulator and onnxruntime, refused on Lava.

References: the integer attention against a numpy einsum of the spikes the
emulator itself produced (and the float model's attention of those spikes),
onnxruntime against the emulator bit for bit, the float reference for the
accuracy, and brute-force loops for the attention's operation counts.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cf2neuro.cli import main as cli
from cf2neuro.errors import UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.quant import quantize
from cf2neuro.runners import RunRequest, get_runner
from cf2neuro.runners.emulator import emulate


def _attention_graph(seed=0, tokens=6, dim=8, heads=2, scale=0.25) -> Graph:
    """x [tokens, 4] -> token-wise Linear -> CF for Q, K, V -> Attention -> CF -> readout."""
    rng = np.random.default_rng(seed)
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [tokens, 4]})
    for name in "qkv":
        g.add_node(f"{name}_fc", "Linear", ["x"],
                   {"weight": rng.normal(0, 1.2, (dim, 4)).astype(np.float32),
                    "bias": rng.normal(0.2, 0.3, dim).astype(np.float32)})
        g.add_node(name, "CFNeuron", [f"{name}_fc"], attrs={"threshold": 1.0, "beta": 0.5,
                                                           "max_spikes": 2, "signed": True})
    g.add_node("attn", "Attention", ["q", "k", "v"], attrs={"heads": heads, "scale": scale})
    g.add_node("a", "CFNeuron", ["attn"], attrs={"threshold": 1.0, "beta": 0.5,
                                                  "max_spikes": 1, "signed": True})
    g.add_node("p", "Permute", ["a"], attrs={"perm": [1, 0]})
    g.add_node("m", "Mean", ["p"], attrs={"dims": [1]})
    g.add_node("head", "Linear", ["m"], {"weight": rng.normal(0, 1, (3, dim)).astype(np.float32)})
    g.add_node("out", "Output", ["head"])
    return g.validate()


def test_integer_attention_is_the_exact_product_of_the_spikes():
    g = _attention_graph()
    x = torch.rand(5, 7, 6, 4) * 2
    q = quantize(g, "loihi2", calibration=x)
    shift = q["attn"].attrs["fixed_point"]["shift"]
    assert shift > 0 and q.meta["fixed_point"]["latency"] == 0
    res = emulate(q, x, probes=["q", "k", "v", "attn", "a", "m"])
    qs, ks, vs = (np.asarray(res[n], np.int64) for n in "qkv")
    assert np.abs(qs).max() == 2 and np.abs(ks).max() >= 1  # graded spikes flow
    # Independent reference: per head, Q·Kᵀ·V by einsum over the emulator's spikes.
    h = lambda t: t.reshape(*t.shape[:-1], 2, -1)  # noqa: E731  [.., N, H, d]
    prod = np.einsum("tbnha,tbmha,tbmhc->tbnhc", h(qs), h(ks), h(vs)).reshape(qs.shape)
    assert np.array_equal(np.asarray(res["attn"]), prod << shift)
    # ... which is the float model's attention (scale s) at the integer scale 2^shift / s.
    from cf2neuro.dynamics import spiking_attention
    fl = spiking_attention(*(torch.as_tensor(t, dtype=torch.float64) for t in (qs, ks, vs)),
                           2, 0.25).numpy()
    assert np.allclose(fl * 2.0 ** shift / 0.25, np.asarray(res["attn"]), rtol=0, atol=1e-6)
    # Mean sends the token sum; its 1/N is in the readout's scale, not rounded anywhere.
    assert np.array_equal(np.asarray(res["m"]), np.asarray(res["a"]).sum(2))
    assert q["m"].attrs["fixed_point"] == {"sum_of": 6}


def test_lava_refuses_the_graph_before_any_work_naming_the_attention():
    q = quantize(_attention_graph(), "loihi2", calibration=torch.rand(2, 3, 6, 4))
    why = json.loads(q.meta["fixed_point"]["runner_refusals"])["lava"]
    assert "'attn'" in why and "emulator or onnxruntime" in why
    t0 = __import__("time").perf_counter()
    with pytest.raises(UnsupportedError, match="runner 'lava' cannot run this graph.*attn"):
        get_runner("lava").run(RunRequest(q, np.random.rand(2, 3, 6, 4)))
    assert __import__("time").perf_counter() - t0 < 1.0  # no Lava runtime was started


@pytest.fixture(scope="module")
def spikformer_ckpt(tmp_path_factory):
    from cf2neuro.train import TrainConfig, train

    ckpt = tmp_path_factory.mktemp("spikformer")
    train(TrainConfig(model="spikformer", epochs=6), ckpt, progress=False)
    return ckpt


def test_trained_spikformer_verifies_on_onnxruntime_bit_exact(spikformer_ckpt, tmp_path):
    """verify: float vs quantized accuracy, emulator == onnxruntime on every neuron probe."""
    assert cli(["verify", str(spikformer_ckpt), "--target", "loihi2", "--data", "digits",
                "--runner", "onnxruntime", "--limit", "120", "--max-drop", "5",
                "--report", str(tmp_path / "r")]) == 0
    r = json.loads((tmp_path / "r" / "verify.json").read_text())
    assert r["float_accuracy"] > 0.6, r["float_accuracy"]  # it learned something
    assert set(r["exact_match"].values()) == {1.0}
    assert any("attn" in p for p in r["exact_match"])
    assert r["accuracy_drop_pp"] <= 5.0 and r["passed"]


def test_verify_and_run_on_lava_exit_2_with_the_reason(spikformer_ckpt, tmp_path, capsys):
    assert cli(["verify", str(spikformer_ckpt), "--target", "loihi2", "--data", "digits",
                "--runner", "lava", "--report", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Attention" in err and "emulator or onnxruntime" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_energy_counts_the_attention_products(spikformer_ckpt, tmp_path):
    """Counts against brute-force loops over the spikes; priced, and said to be assumed."""
    from cf2neuro.energy import energy_report
    from cf2neuro.energy.counts import _attention_counts

    rng = np.random.default_rng(1)
    qkv = [torch.as_tensor(rng.choice([-1, 0, 0, 1, 2], (2, 3, 4, 6)), dtype=torch.float64)
           for _ in range(3)]
    g = Graph()
    node = g.add_node("attn", "Attention", ["q", "k", "v"], attrs={"heads": 2, "scale": 1.0})
    rec = _attention_counts(node, qkv, "spike", B=3)
    q, k, v = (t.numpy().reshape(2, 3, 4, 2, 3) for t in qkv)
    for t in range(2):
        syn = 0
        for b in range(3):
            for hd in range(2):
                m = k[t, b, :, hd].T @ v[t, b, :, hd]
                syn += sum((k[t, b, n, hd, a] != 0) * (v[t, b, n, hd, c] != 0)
                           for n in range(4) for a in range(3) for c in range(3))
                syn += sum((q[t, b, n, hd, a] != 0) * (m[a, c] != 0)
                           for n in range(4) for a in range(3) for c in range(3))
        assert rec["synops"][t] == pytest.approx(syn / 3)
    assert rec["dense_macs"][0] == 2 * 4 * 3 * 3 * 2
    rep = energy_report(spikformer_ckpt, targets=["loihi2", "cmos45"], limit=20, progress=False)
    for name in ("loihi2", "cmos45"):
        t = rep["targets"][name]
        assert any("attention products" in a for a in t["assumptions"])
        assert t["by_layer"]["blocks.0.ssa.attn"]["total"] > 0


def test_the_onnx_file_of_a_quantized_spikformer_is_integer_only(spikformer_ckpt, tmp_path):
    out = tmp_path / "spk.onnx"
    assert cli(["export", str(spikformer_ckpt), "--target", "loihi2", "--out", str(out)]) == 0
    code = ("import onnx, sys; m = onnx.load(sys.argv[1]); "
            "print(sorted({n.op_type for n in m.graph.node} & {'MatMul', 'Einsum'}))")
    ops = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                         check=True).stdout
    assert "MatMul" in ops  # the attention and token-wise dense products, in int64
