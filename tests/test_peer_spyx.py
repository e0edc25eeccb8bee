"""`--from spyx`: Spyx's neurons (fire from the potential carried in, then charge and
subtract) read as CF + self-connection + a one-step Delay.

Spyx needs JAX, which cf2neuro does not install, so the references are Spyx's
own trace of the NIR paper's LIF (lif_spyx.csv) and a hand-written loop of
Spyx's ``LIF.__call__`` (spyx/nn.py) for networks as Spyx's exporter writes
them (``r = β``, unit gain).
"""

import nir
import numpy as np
import torch

from cf2neuro.ir.engine import Engine
from cf2neuro.ir.numerics import FloatNumerics
from cf2neuro.nir import from_nir
from conftest import require_corpus
from interop_log import record

DT = 1e-3


def test_from_spyx_reproduces_its_lif_trace():
    """lif_norse.nir as Spyx ran it: spikes one step after Norse's, V to 1e-6."""
    trace = np.loadtxt(require_corpus("lif_spyx.csv"), delimiter=",")
    g = from_nir(require_corpus("lif_norse.nir"), dt=1e-4, peer="spyx")
    res = Engine(g).run(trace[:, 0].reshape(-1, 1, 1), probes=["v:1", "1"])
    spikes = res["output"][:, 0, 0].numpy()
    v = (res["v:1"] + 0.1 * res["1"])[:, 0, 0].numpy()  # Spyx's V: before the reset
    record("spyx", "Spyx -> cf2neuro", "corpus lif_spyx.csv", flag="--from spyx",
           agreement=float((spikes == trace[:, 2]).mean()), lost="V within 1e-6")
    np.testing.assert_array_equal(spikes, trace[:, 2])
    np.testing.assert_allclose(v, trace[:, 1], rtol=0, atol=1e-6)
    assert np.nonzero(spikes)[0].tolist() == [461, 511, 711, 761]  # Norse: 460, 510, ...


def spyx_export(w1, beta1, w2, beta2):
    """Two Linear -> LIF layers as spyx.nir.to_nir writes them (r = β, θ = 1)."""
    def lif(beta):
        return nir.LIF(tau=DT / (1 - beta), r=beta.copy(), v_leak=np.zeros_like(beta),
                       v_threshold=np.ones_like(beta))
    nodes = {"input": nir.Input(input_type=np.array([w1.shape[1]])),
             "linear": nir.Linear(weight=w1), "LIF": lif(beta1),
             "linear_1": nir.Linear(weight=w2), "LIF_1": lif(beta2),
             "output": nir.Output(output_type=np.array([w2.shape[0]]))}
    order = list(nodes)
    return nir.NIRGraph(nodes, list(zip(order, order[1:])))


def spyx_by_hand(x, w1, beta1, w2, beta2):
    """spyx.nn.LIF: spikes = H(V - θ); V = β·V + x - spikes·θ (hk.DeepRNN chains them)."""
    T, B = x.shape[:2]
    v1, v2 = np.zeros((B, w1.shape[0])), np.zeros((B, w2.shape[0]))
    out = []
    for t in range(T):
        s1 = (v1 - 1.0 > 0).astype(np.float64)
        v1 = beta1 * v1 + x[t] @ w1.T - s1
        s2 = (v2 - 1.0 > 0).astype(np.float64)
        v2 = beta2 * v2 + s1 @ w2.T - s2
        out.append(s2)
    return np.stack(out)


def test_from_spyx_runs_its_export_as_spyx_did():
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0.4, 0.6, (16, 8)), rng.normal(0.5, 0.8, (4, 16))
    beta1, beta2 = rng.uniform(0.6, 0.95, 16), np.full(4, 0.8)
    x = (rng.random((30, 5, 8)) < 0.5).astype(np.float64)
    g = from_nir(spyx_export(w1, beta1, w2, beta2), peer="spyx", dt=DT)
    ours = Engine(g, FloatNumerics(torch.float64)).run(x)["output"].numpy()
    want = spyx_by_hand(x, w1, beta1, w2, beta2)
    record("spyx", "Spyx -> cf2neuro", "random 2-layer LIF (as its exporter writes)",
           flag="--from spyx", agreement=float((ours == want).mean()), lost="none")
    assert want.sum() > 20
    np.testing.assert_array_equal(ours, want)
