"""The float engine: the zoo against PyTorch, hand traces, peers, back edges, probes."""

import numpy as np
import pytest
import snntorch
import torch

from cf2neuro.errors import BadInputError
from cf2neuro.ir import Engine, FloatNumerics, Graph, run, run_passes, trace_model
from cf2neuro.nn import CFNeuron
from cf2neuro.nn.models import MODELS, build_model
from test_trace import SMALL


def zoo_model(name: str, seed: int = 0):
    """A small eval-mode zoo model with non-trivial BN statistics and learned θ ≠ 1."""
    torch.manual_seed(seed)
    model = build_model(name, {**SMALL[name], "neuron": {"learn_threshold": True}})
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            c = mod.num_features
            mod.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            mod.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            mod.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            mod.bias.data.copy_(torch.rand(c, generator=gen) * 0.6 - 0.2)
        elif isinstance(mod, CFNeuron) and mod.config.threshold == 1.0:
            # the attention layer keeps its θ = 0.5: its input is a product of
            # integer spikes and a power of two, so any other θ puts u exactly on
            # the staircase's edges, where a rounded 1/θ can flip a spike
            mod.threshold.data.fill_(float(torch.rand((), generator=gen)) * 0.6 + 0.7)
    return model.eval()


def cf_hooks(model):
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, CFNeuron):
            mod.register_forward_hook(lambda m, i, o, name=name: out.__setitem__(name, o))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_model_equals_pytorch_after_all_passes(name):
    model = zoo_model(name)
    g = trace_model(model)  # before the hooks: tracing runs the model once
    spikes = cf_hooks(model)
    x = torch.rand(4, 2, *model.config["input_shape"]) * 2
    with torch.no_grad():
        ref = model(x)
    folded = run_passes(g)
    assert not {"BatchNorm", "Identity"} & {n.op for n in folded.nodes.values()}
    res = Engine(folded).run(x, probes=list(spikes))
    assert res["output"].shape == ref.shape
    assert torch.allclose(res["output"], ref, rtol=0, atol=1e-5)
    for layer, s in spikes.items():
        assert torch.equal(res[layer], s), layer
    assert sum(bool(s.any()) for s in spikes.values()) >= len(spikes) // 2  # not silent
    # unfolded, the layer schedule computes exactly what PyTorch computes
    assert torch.equal(Engine(g).run(x, schedule="layer")["output"], ref)


def test_step_and_layer_schedules_agree():
    model = zoo_model("resnet-small")
    x = torch.rand(3, 2, 1, 8, 8) * 2
    e = Engine(run_passes(trace_model(model)))
    probes = ["layers.2.cf2", "v:layers.2.cf2"]
    a, b = e.run(x, probes, schedule="layer"), e.run(x, probes, schedule="step")
    assert torch.allclose(a["output"], b["output"], atol=1e-5, rtol=0)
    assert torch.equal(a["layers.2.cf2"], b["layers.2.cf2"])
    assert torch.allclose(a["v:layers.2.cf2"], b["v:layers.2.cf2"], atol=1e-5, rtol=0)


def single(op, params=None, attrs=None, shape=(1,), dt=1.0) -> Graph:
    g = Graph({"dt": dt})
    g.add_node("x", "Input", attrs={"shape": list(shape)})
    g.add_node("n", op, ["x"], {k: np.asarray(v, np.float32) for k, v in (params or {}).items()},
               attrs)
    g.add_node("out", "Output", ["n"])
    return g


def column(values):
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1, 1)


def test_cf_neuron_hand_trace_with_membrane_probe():
    g = single("CFNeuron", attrs={"threshold": 0.5, "beta": 0.5, "max_spikes": 2,
                                  "signed": True})
    res = run(g, column([1.25, 0.0, -1.5, 0.125]), probes=["v:n"])
    # u = 1.25 -> n 2, v .25; u = .125 -> 0; u = -1.4375 -> -2, v -.4375; u = -.09375 -> 0
    assert res["output"].flatten().tolist() == [2, 0, -2, 0]
    assert res["v:n"].flatten().tolist() == [0.25, 0.125, -0.4375, -0.09375]


def test_lif_equals_snntorch_leaky():
    x = torch.rand(30, 4, 5) * 0.8
    for reset in ("subtract", "zero"):
        beta, thr, dt = 0.75, 0.9, 1e-3
        tau = dt / (1 - beta)
        g = single("LIF", {"tau": tau, "r": tau / dt, "v_leak": 0.0, "v_threshold": thr},
                   {"reset": reset}, (5,), dt)
        res = run(g, x, probes=["v:n"])
        peer = snntorch.Leaky(beta=beta, threshold=thr, reset_mechanism=reset,
                              reset_delay=False)
        mem = peer.reset_mem()
        spk, mems = [], []
        for t in range(30):
            s, mem = peer(x[t], mem)
            spk.append(s)
            mems.append(mem)
        assert torch.equal(res["output"], torch.stack(spk)), reset
        assert torch.allclose(res["v:n"], torch.stack(mems), atol=1e-6)
        assert 0 < res["output"].mean() < 1


def test_cuba_lif_equals_snntorch_synaptic():
    alpha, beta, thr, dt = 0.5, 0.75, 1.0, 1e-3
    tau_syn, tau_mem = dt / (1 - alpha), dt / (1 - beta)
    g = single("CubaLIF", {"tau_syn": tau_syn, "tau_mem": tau_mem, "r": tau_mem / dt,
                           "v_leak": 0.0, "v_threshold": thr, "w_in": tau_syn / dt},
               {"reset": "subtract"}, (6,), dt)
    x = torch.rand(25, 3, 6) * 0.4
    res = run(g, x, probes=["v:n"])
    peer = snntorch.Synaptic(alpha=alpha, beta=beta, threshold=thr, reset_delay=False)
    syn, mem = peer.reset_mem()
    spk = []
    for t in range(25):
        s, syn, mem = peer(x[t], syn, mem)
        spk.append(s)
    assert torch.equal(res["output"], torch.stack(spk)) and res["output"].any()


def test_li_and_if_hand_traces():
    li = single("LI", {"tau": 4.0, "r": 2.0, "v_leak": 1.0})  # dt = 1: a = 1/4
    v = run(li, column([2.0, 0.0]))["output"].flatten().tolist()
    assert v == [0.25 * 1 + 0.25 * 2 * 2, 0.75 * 1.25 + 0.25]
    if_ = single("IF", {"r": 0.5, "v_threshold": 1.0}, {"reset": "zero"})
    res = run(if_, column([1.0, 1.0, 1.0, 1.0, 1.0]), probes=["v:n"])
    # v > θ is strict: 0.5, 1.0 (no spike), 1.5 -> spike, reset to 0
    assert res["output"].flatten().tolist() == [0, 0, 1, 0, 0]
    assert res["v:n"].flatten().tolist() == [0.5, 1.0, 0.0, 0.5, 1.0]


def recurrent(w_rec: float) -> Graph:
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [1]})
    g.add_node("sum", "Add", ["x", "rec"])
    g.add_node("cf", "CFNeuron", ["sum"], attrs={"threshold": 1.0, "beta": 1.0,
                                                 "signed": False})
    g.add_node("rec", "Scale", ["cf"], {"scale": np.float32(w_rec)})
    g.add_node("out", "Output", ["cf"])
    return g


def test_back_edge_delivers_the_previous_step():
    x = torch.tensor([1.0, 0, 0, 0, 0.5, 0.5]).reshape(-1, 1, 1)
    res = run(recurrent(1.0), x, probes=["sum"])
    # a spike re-enters one step later and keeps itself alive
    assert res["output"].flatten().tolist() == [1, 1, 1, 1, 1, 1]
    assert res["sum"].flatten().tolist() == [1, 1, 1, 1, 1.5, 1.5]
    manual, v, prev = [], 0.0, 0.0
    for t in range(6):
        u = v + x[t].item() + (-0.5) * prev
        prev = float(u >= 1)
        v = u - prev
        manual.append(prev)
    assert run(recurrent(-0.5), x)["output"].flatten().tolist() == manual
    with pytest.raises(BadInputError, match="back edges"):
        run(recurrent(1.0), x, schedule="layer")


def test_probe_and_input_errors():
    e = Engine(single("CFNeuron", shape=(3,)))
    with pytest.raises(BadInputError, match="no node named 'nope'"):
        e.run(torch.zeros(2, 1, 3), probes=["nope"])
    with pytest.raises(BadInputError, match="no membrane"):
        e.run(torch.zeros(2, 1, 3), probes=["v:out"])
    with pytest.raises(BadInputError, match=r"\[T, B, 3\]"):
        e.run(torch.zeros(2, 3))
    out = e.run(np.ones((2, 4, 3), np.float64), probes=["n", "x"])
    assert out["n"].shape == out["x"].shape == (2, 4, 3) and out["n"].dtype == torch.float32


def test_numerics_are_pluggable_per_op():
    class Counting(FloatNumerics):
        calls = 0

        def linear(self, node, graph):
            base = super().linear(node, graph)

            def counted(x):
                Counting.calls += 1
                return base(x)
            return counted
    model = zoo_model("mlp")
    g = run_passes(trace_model(model))
    x = torch.rand(3, 2, 1, 8, 8)
    a = Engine(g, Counting()).run(x, schedule="step")["output"]
    assert Counting.calls == 3 * 3  # three Linear layers, three steps
    assert torch.allclose(a, Engine(g)(x), atol=1e-6)
    double = Engine(g, FloatNumerics(torch.float64))(x)
    assert double.dtype == torch.float64 and torch.allclose(double.float(), a, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_engine_runs_on_cuda():
    model = zoo_model("vgg-small")
    x = torch.rand(3, 2, 1, 8, 8)
    g = run_passes(trace_model(model))
    out = Engine(g, FloatNumerics(device="cuda"))(x)
    assert out.is_cuda and torch.allclose(out.cpu(), Engine(g)(x), atol=1e-4)
