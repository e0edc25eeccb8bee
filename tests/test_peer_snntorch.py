"""`export --for snntorch` and `--from snntorch`, against snnTorch 1.0.0 itself.

cf2neuro -> NIR -> snnTorch: random and trained CF networks (K = 1,
unsigned, reset to zero: what snnTorch's importer builds) run spike for
spike in snnTorch's ``import_from_nir``, MLPs and a conv + pool net, β < 1
and β = 1; anything else is refused with the reason. snnTorch -> NIR ->
cf2neuro (``--from snntorch``): Leaky, RLeaky and Synaptic networks, random
and trained, and the NIR paper's snnTorch files, spike for spike.
"""

import nir
import numpy as np
import pytest
import torch

import nirtorch  # noqa: F401  snnTorch's NIR code needs it and does not declare it
import snntorch as snn
import snntorch.utils
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir

from cf2neuro.checkpoint import checkpoint_graph
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.numerics import FloatNumerics
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nir import export_graph, from_nir
from cf2neuro.nn.models import build_model
from cf2neuro.train import TrainConfig, train
from conftest import require_corpus
from interop_log import agreement, record
from peer_torch import assert_cf_layers_match, refused_export, run_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch
T, B = 20, 6
EXACT = {"threshold": 0.5, "reset": "zero", "max_spikes": 1, "signed": False}


def snn_step(net, x, state):
    return net(x), state


def run_snntorch(path, x, layers, batched=True):
    net = import_from_nir(nir.read(path))
    mods = {n: getattr(net, n.replace(".", "_")) for n in layers}
    return run_module(net, x, mods, snn_step, snntorch.utils.reset, batched)


def cf_graph(name, beta, **cfg):
    torch.manual_seed(0)
    model = build_model(name, {"timesteps": 4, **cfg, "neuron": {**EXACT, "beta": beta}})
    for m in model.modules():  # strong enough that every layer fires
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.weight.data = m.weight.data * 3 + 0.05
    return run_passes(trace_model(model))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("zero")
    train(TrainConfig(epochs=2, neuron={**EXACT, "threshold": 1.0},
                      model_options={"hidden": [32]}), ckpt, progress=False)
    return checkpoint_graph(ckpt)


def cf_layers(g):
    return [n.name for n in g.nodes.values() if n.op == "CFNeuron"]


FOR = "export --for snntorch"


def assert_same_spikes(g, path, x, network, batched=True):
    theirs = run_snntorch(path, x, cf_layers(g), batched)
    assert_cf_layers_match("snntorch", "cf2neuro -> snnTorch", network, FOR, g, theirs, x,
                           batched)


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_for_snntorch_mlp_runs_spike_for_spike(beta, tmp_path):
    """β = 1 goes out as a LIF with tau = dt·2^60: snnTorch's nir.IF is broken."""
    g = cf_graph("mlp", beta, input_shape=[16], hidden=[32, 24])
    export_graph(g, tmp_path / "m.nir", peer="snntorch")
    x = torch.rand(T, B, 16, generator=torch.Generator().manual_seed(1)) * 2
    assert_same_spikes(g, tmp_path / "m.nir", x, f"random MLP, beta={beta}")


def test_for_snntorch_conv_net_runs_spike_for_spike_unbatched(tmp_path):
    """snnTorch's Flatten bug: an image network runs one sample at a time."""
    g = cf_graph("vgg-small", 0.8, input_shape=[1, 8, 8], channels=[4, "A", 8, "A"],
                 fc_hidden=[8])
    export_graph(g, tmp_path / "c.nir", peer="snntorch")
    x = torch.rand(T, 3, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2
    assert_same_spikes(g, tmp_path / "c.nir", x, "random conv + avg pool net", batched=False)


def test_snntorch_flattens_the_batch_of_an_image_input(tmp_path):
    """The pinned bug (snnTorch 1.0.0): a batch through its imported Flatten fails."""
    assert snn.__version__ == "1.0.0"
    g = cf_graph("mlp", 0.5, input_shape=[1, 4, 4], hidden=[8])
    export_graph(g, tmp_path / "f.nir", peer="snntorch")
    net = import_from_nir(nir.read(tmp_path / "f.nir"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        net(torch.ones(3, 1, 4, 4))
    record("snntorch", "cf2neuro -> snnTorch", "image input, batched", flag=FOR,
           bug="its importer builds NIR's per-sample Flatten dims as torch dims and flattens "
               "the batch", lost="workaround: run the imported network one sample at a time")


def test_for_snntorch_a_trained_network_runs_spike_for_spike(trained, tmp_path):
    export_graph(trained, tmp_path / "t.nir", peer="snntorch")
    from cf2neuro.data import load_dataset

    test = load_dataset("digits").test
    x = torch.stack([test[i][0] for i in range(8)]).unsqueeze(0).expand(T, -1, -1, -1, -1)
    assert_same_spikes(trained, tmp_path / "t.nir", x.contiguous(), "trained MLP (digits)",
                       batched=False)


@pytest.mark.parametrize("neuron, why", [
    ({"reset": "subtract"}, "reset by subtraction"),
    ({"max_spikes": 3}, "graded spikes"),
    ({"signed": True}, "negative spikes"),
])
def test_for_snntorch_refuses_what_it_cannot_run(neuron, why, tmp_path):
    reason = refused_export("snntorch", {**EXACT, **neuron}, why, tmp_path)
    record("snntorch", "cf2neuro -> snnTorch", f"CF with {why}", flag=FOR, refused=reason)


# --- snnTorch -> NIR -> cf2neuro ---------------------------------------------------

def full(n, v):
    return torch.full((n,), float(v))


def snn_net(kind, trained=False):
    """Per-neuron tensors throughout: snnTorch's exporter needs every field shaped alike."""
    torch.manual_seed(0)
    out = snn.Leaky(beta=full(5, 0.8), threshold=full(5, 1.0), init_hidden=True, output=True,
                    reset_mechanism="zero")
    if kind == "leaky":
        hidden = snn.Leaky(beta=torch.rand(32) * 0.5 + 0.45, threshold=full(32, 0.7),
                           init_hidden=True, reset_mechanism="zero")
    elif kind == "rleaky":
        hidden = snn.RLeaky(beta=full(32, 0.9), threshold=full(32, 1.0), linear_features=32,
                            init_hidden=True, reset_mechanism="zero")
    else:  # synaptic
        hidden = snn.Synaptic(alpha=full(32, 0.7), beta=full(32, 0.85), threshold=full(32, 1.0),
                              init_hidden=True, reset_mechanism="zero")
        out = snn.Synaptic(alpha=full(5, 0.6), beta=full(5, 0.9), threshold=full(5, 1.0),
                           init_hidden=True, output=True, reset_mechanism="zero")
    net = torch.nn.Sequential(torch.nn.Linear(10, 32), hidden, torch.nn.Linear(32, 5), out)
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            m.weight.data = m.weight.data * 3 + 0.05
    if trained:  # a few surrogate-gradient steps on a random task
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        data = torch.rand(8, 4, 10, generator=torch.Generator().manual_seed(5)) * 2
        for _ in range(15):
            snntorch.utils.reset(net)
            out = torch.stack([net(data[t])[0] for t in range(8)])
            loss = ((out.sum(0) - 2.0) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def snn_reset_delay_off(net):
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_delay = False
    return net


@pytest.mark.parametrize("trained", [False, True])
@pytest.mark.parametrize("kind", ["leaky", "rleaky", "synaptic"])
def test_from_snntorch_runs_its_export_spike_for_spike(kind, trained, tmp_path):
    net = snn_reset_delay_off(snn_net(kind, trained))
    path = tmp_path / f"{kind}.nir"
    nir.write(path, export_to_nir(net, torch.randn(1, 10), ignore_dims=[0]))
    g = from_nir(path, peer="snntorch")
    x = torch.rand(T, B, 10, generator=torch.Generator().manual_seed(1)) * 2
    neurons = [m for m in net if isinstance(m, snn.SpikingNeuron)]
    names = [n.name for n in g.nodes.values() if n.op in ("CFNeuron", "CubaLIF")]
    assert len(names) == 2
    seen = {i: [] for i in range(2)}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: seen[k].append(o[0] if isinstance(
        o, tuple) else o)) for k, m in enumerate(neurons)]
    snntorch.utils.reset(net)
    with torch.no_grad():
        out = torch.stack([net(x[t])[0] for t in range(T)])
    for h in hooks:
        h.remove()
    ours = Engine(g, FloatNumerics(torch.float32)).run(x, probes=names)
    assert torch.equal(ours["output"], out)
    theirs = {name: torch.stack(seen[k]) for k, name in enumerate(names)}
    record("snntorch", "snnTorch -> cf2neuro", f"{'trained' if trained else 'random'} {kind}",
           flag="--from snntorch", agreement=agreement(theirs, ours, names), lost="none")
    for name in names:
        assert 0.02 < float(theirs[name].mean()) < 0.9
        assert torch.equal(ours[name], theirs[name]), name


def test_from_snntorch_reproduces_its_lif_trace():
    """lif_norse.nir as snnTorch ran it (lif_snntorch.csv): its membrane is v/(r·dt/tau)."""
    trace = np.loadtxt(require_corpus("lif_snntorch.csv"), delimiter=",")
    g = from_nir(require_corpus("lif_norse.nir"), peer="snntorch")
    res = Engine(g).run(trace[:, 0].reshape(-1, 1, 1), probes=["v:1"])
    np.testing.assert_allclose(res["v:1"][:, 0, 0].numpy(), trace[:, 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(res["output"][:, 0, 0].numpy(), trace[:, 2])
    assert trace[:, 1].max() > 2  # 25x Norse's membrane: the threshold scaling is real
    record("snntorch", "snnTorch -> cf2neuro", "corpus lif_snntorch.csv", flag="--from snntorch",
           agreement=float((res["output"][:, 0, 0].numpy() == trace[:, 2]).mean()),
           lost="membrane within 1e-6")


@pytest.mark.parametrize("name", ["braille_noDelay_bias_zero.nir",
                                  "braille_noDelay_noBias_subtract.nir"])
def test_from_snntorch_runs_the_braille_networks(name):
    """The NIR paper's snnTorch RSynaptic networks: snnTorch's Synaptic (threshold over
    w_in·dt/tau_syn) gives the spikes of NIR's Euler CubaLIF (test_nir_import checks
    those against a hand-written reference)."""
    path = require_corpus(name)
    x = (torch.rand(T, B, 12, generator=torch.Generator().manual_seed(4)) < 0.4).float()
    ours = Engine(from_nir(path, peer="snntorch")).run(x)
    plain = Engine(from_nir(path, dt=1e-4)).run(x)
    assert ours["output"].sum() > 10
    record("snntorch", "snnTorch -> cf2neuro", f"corpus {name}", flag="--from snntorch",
           agreement=agreement(ours, plain, ["output"]), lost="none")
    assert torch.equal(ours["output"], plain["output"])


def test_snntorch_cannot_import_a_recurrent_graph(tmp_path):
    """Pinned (snnTorch 1.0.0 with nirtorch 2.6): import_from_nir fails on every graph with
    a recurrent subgraph (RLeaky, RSynaptic, the Braille networks); read them with
    cf2neuro --from snntorch, which runs them as snnTorch's modules did."""
    net = snn_reset_delay_off(snn_net("rleaky"))
    nir.write(tmp_path / "r.nir", export_to_nir(net, torch.randn(1, 10), ignore_dims=[0]))
    for path in (tmp_path / "r.nir", require_corpus("braille_noDelay_bias_zero.nir")):
        with pytest.raises(AttributeError, match="no attribute 'items'"):
            import_from_nir(nir.read(path))
    record("snntorch", "cf2neuro -> snnTorch", "recurrent (RLeaky, RSynaptic)",
           bug="import_from_nir fails on recurrent subgraphs (nirtorch 2.6)",
           lost="workaround: read them with cf2neuro --from snntorch")
