"""`export --for norse` and `--from norse`, against Norse 1.1.0 itself.

cf2neuro -> NIR -> Norse: random and trained CF networks (K = 1, unsigned,
reset to zero) run spike for spike in Norse's ``from_nir``, which ignores r
(cf2neuro folds it into the weights) and defaults to dt = 1e-3 (cf2neuro
restates tau for it). Norse -> NIR -> cf2neuro (``--from norse``): LIFBox
and IAF networks, random and trained, run as the Norse model ran, although
Norse's exporter writes dt·tau (its own importer then runs them wrongly:
pinned).
"""

import nir
import numpy as np
import pytest
import torch

import norse
import norse.torch as nt
from norse.torch.utils.export_nir import to_nir as norse_to_nir
from norse.torch.utils.import_nir import from_nir as norse_from_nir

from cf2neuro.errors import UnsupportedError
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nir import export_graph, from_nir
from cf2neuro.nn.models import build_model
from conftest import require_corpus
from interop_log import agreement, record
from peer_torch import assert_cf_layers_match, refused_export, run_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
T, B = 20, 6
EXACT = {"threshold": 0.5, "reset": "zero", "max_spikes": 1, "signed": False}


def norse_step(net, x, state):
    return net(x, state)


def cf_graph(name, beta, train_steps=0, offset=0.05, **cfg):
    torch.manual_seed(0)
    model = build_model(name, {"timesteps": 4, **cfg, "neuron": {**EXACT, "beta": beta}})
    for m in model.modules():  # strong enough that every layer fires
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.weight.data = m.weight.data * 3 + offset
    if train_steps:  # a few surrogate-gradient steps on a random task: trained weights
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        data = torch.rand(B, 4, *cfg["input_shape"], generator=torch.Generator().manual_seed(7))
        for _ in range(train_steps):
            loss = ((model(data).float().mean() - 0.3) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return run_passes(trace_model(model))


def assert_same_spikes(g, path, x, network, batched=True):
    layers = [n.name for n in g.nodes.values() if n.op == "CFNeuron"]
    net = norse_from_nir(nir.read(path))  # Norse's defaults: dt = 1e-3
    mods = {n: getattr(net, n.replace(".", "_")) for n in layers}
    theirs = run_module(net, x, mods, norse_step, lambda net: None, batched)
    assert_cf_layers_match("norse", "cf2neuro -> Norse", network, "export --for norse", g,
                           theirs, x, batched)


@pytest.mark.parametrize("train_steps", [0, 10])
@pytest.mark.parametrize("beta", [0.5, 0.9, 1.0])
def test_for_norse_mlp_runs_spike_for_spike(beta, train_steps, tmp_path):
    g = cf_graph("mlp", beta, train_steps, input_shape=[16], hidden=[32, 24])
    ng = export_graph(g, tmp_path / "m.nir", peer="norse")
    assert ng["dt"] == 1e-3
    written = nir.read(tmp_path / "m.nir")
    for name in ("layers.2", "layers.4"):  # r is folded into the weights: Norse ignores it
        node = written.nodes[name]
        assert isinstance(node, nir.IF if beta == 1 else nir.LIF)
        np.testing.assert_array_equal(node.r, 1.0)
    x = torch.rand(T, B, 16, generator=torch.Generator().manual_seed(1)) * 2
    assert_same_spikes(g, tmp_path / "m.nir", x,
                       f"{'trained' if train_steps else 'random'} MLP, beta={beta}")
    # and cf2neuro reads the file back as the same network
    back = Engine(from_nir(tmp_path / "m.nir")).run(x)
    torch.testing.assert_close(back["output"], Engine(g).run(x)["output"], rtol=0, atol=1e-5)


def test_for_norse_conv_net_runs_spike_for_spike_unbatched(tmp_path):
    """Norse builds NIR's per-sample Flatten dims as torch dims: one sample at a time."""
    g = cf_graph("vgg-small", 0.8, offset=0.0, input_shape=[1, 8, 8], channels=[4, 8],
                 fc_hidden=[8])
    export_graph(g, tmp_path / "c.nir", peer="norse")
    x = torch.rand(T, 3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2
    assert_same_spikes(g, tmp_path / "c.nir", x, "random conv net", batched=False)


@pytest.mark.parametrize("neuron, why", [
    ({"reset": "subtract"}, "reset by subtraction"),
    ({"max_spikes": 2}, "graded spikes"),
    ({"signed": True}, "negative spikes"),
])
def test_for_norse_refuses_what_it_cannot_run(neuron, why, tmp_path):
    reason = refused_export("norse", {**EXACT, **neuron}, why, tmp_path)
    record("norse", "cf2neuro -> Norse", f"CF with {why}", flag="export --for norse",
           refused=reason)


def test_for_norse_refuses_average_pooling(tmp_path):
    g = cf_graph("vgg-small", 0.8, input_shape=[1, 8, 8], channels=[4, "A"], fc_hidden=[8])
    with pytest.raises(UnsupportedError, match="average pooling.*SumPool2d") as e:
        export_graph(g, tmp_path / "p.nir", peer="norse")
    record("norse", "cf2neuro -> Norse", "float net with AvgPool2d", flag="export --for norse",
           refused=str(e.value))


# --- Norse -> NIR -> cf2neuro -------------------------------------------------------

DT = 1e-3  # Norse's default step, on export and import


def norse_net(kind, trained):
    torch.manual_seed(0)
    if kind == "lifbox":
        cell = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((32,), 200.0),
                                                 v_leak=torch.zeros(32),
                                                 v_th=torch.full((32,), 0.3)), dt=DT)
    else:
        cell = nt.IAFCell(nt.IAFParameters(v_th=torch.full((32,), 1.0)), dt=DT)
    out = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.full((5,), 100.0),
                                            v_leak=torch.zeros(5), v_th=torch.full((5,), 0.2)),
                        dt=DT)
    net = nt.SequentialState(torch.nn.Linear(10, 32), cell, torch.nn.Linear(32, 5), out)
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data = m.weight.data * 3 + 0.1
    if trained:
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        data = torch.rand(10, 4, 10, generator=torch.Generator().manual_seed(5)) * 2
        for _ in range(10):
            state, outs = None, []
            for t in range(10):
                o, state = net(data[t], state)
                outs.append(o)
            loss = ((torch.stack(outs).sum(0) - 2.0) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def run_norse(net, x):
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = net(x[t], state)
            outs.append(o)
    return torch.stack(outs)


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("kind", ["lifbox", "iaf"])
def test_from_norse_runs_its_export_as_the_norse_model_ran(kind, trained, tmp_path):
    net = norse_net(kind, trained)
    path = tmp_path / f"{kind}.nir"
    nir.write(path, norse_to_nir(net, torch.randn(1, 10), dt=DT))
    assert norse.__version__ == "1.1.0"
    x = torch.rand(T, B, 10, generator=torch.Generator().manual_seed(1)) * 2
    theirs = run_norse(net, x)
    g = from_nir(path, peer="norse")  # dt·tau read back as tau, Norse's dt 1e-3
    ours = Engine(g).run(x)
    assert 0.02 < float(theirs.mean()) < 0.9
    record("norse", "Norse -> cf2neuro", f"{'trained' if trained else 'random'} {kind}",
           flag="--from norse", agreement=agreement({"o": theirs}, {"o": ours["output"]}, ["o"]),
           lost="none")
    assert torch.equal(ours["output"], theirs)


def test_norse_runs_its_own_export_wrongly(tmp_path):
    """Pinned (Norse 1.1.0): its exporter writes tau = dt/tau_mem_inv = dt·tau, which its
    importer reads as tau: a different network; and its Input keeps the batch dimension
    ([1, 10]), so nir 1.0.8's ``nir.read`` refuses the file it wrote. Workaround:
    ``cf2neuro run FILE --from norse``, which reads both as the Norse model meant."""
    net = norse_net("lifbox", False)
    exported = norse_to_nir(net, torch.randn(1, 10), dt=DT)
    np.testing.assert_allclose(exported.nodes["1"].tau, DT / 200.0)  # dt·tau, not 5 ms
    nir.write(tmp_path / "n.nir", exported)
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(tmp_path / "n.nir")
    x = torch.rand(T, B, 10, generator=torch.Generator().manual_seed(1)) * 2
    reread = norse_from_nir(exported, dt=DT)
    assert not torch.equal(run_norse(reread, x), run_norse(net, x))
    record("norse", "Norse -> Norse", "its own export", bug="exporter writes dt*tau; Input "
           "keeps the batch dim (nir.read refuses)", lost="workaround: cf2neuro --from norse")


def test_from_norse_reproduces_its_lif_trace():
    trace = np.loadtxt(require_corpus("lif_norse.csv"), delimiter=",")
    g = from_nir(require_corpus("lif_norse.nir"), dt=1e-4, peer="norse")
    res = Engine(g).run(trace[:, 0].reshape(-1, 1, 1), probes=["v:1"])
    np.testing.assert_allclose(res["v:1"][:, 0, 0].numpy(), trace[:, 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(res["output"][:, 0, 0].numpy(), trace[:, 2])
    record("norse", "Norse -> cf2neuro", "corpus lif_norse.csv", flag="--from norse",
           agreement=float((res["output"][:, 0, 0].numpy() == trace[:, 2]).mean()),
           lost="membrane within 1e-6")
