"""Interop with snnTorch's own NIR exporter and importer (snnTorch 1.0.0).

- snnTorch -> NIR -> cf2neuro: a Leaky network (reset to zero, per-neuron β
  and θ) runs spike for spike the same in cf2neuro.
- cf2neuro -> NIR -> snnTorch: snnTorch reads each CF layer as the plain
  NIR LIF (binary spikes, reset to zero), which is what cf2neuro's importer
  gives with read_cf_metadata=False, and which differs from CF; a CF layer
  trained with reset=zero, K=1, unsigned IS that LIF: snnTorch reproduces it
  spike for spike.
"""

import nir
import numpy as np
import pytest
import torch

import nirtorch  # noqa: F401  snnTorch's NIR code needs it and does not declare it
import snntorch as snn
import snntorch.utils  # noqa: E402
from snntorch.export_nir import export_to_nir  # noqa: E402
from snntorch.import_nir import import_from_nir  # noqa: E402

from cf2neuro.ir.engine import Engine  # noqa: E402
from cf2neuro.ir.passes import run_passes  # noqa: E402
from cf2neuro.ir.trace import trace_model  # noqa: E402
from cf2neuro.nir import DEFAULT_DT, from_nir, write_nir  # noqa: E402
from cf2neuro.nn.models import build_model  # noqa: E402
from interop_log import agreement, record  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch
SNNTORCH_DT = 1e-4  # hard-coded in snntorch.export_nir and snntorch.import_nir
T, B = 30, 8


def leaky(shape, reset_delay, output=False):
    """Per-neuron β and θ, reset to zero."""
    return snn.Leaky(beta=torch.rand(shape) * 0.5 + 0.45, threshold=torch.rand(shape) * 0.5 + 0.5,
                     reset_mechanism="zero", reset_delay=reset_delay, init_hidden=True,
                     output=output)


def snntorch_net(kind, reset_delay):
    torch.manual_seed(0)
    if kind == "mlp":
        net = torch.nn.Sequential(torch.nn.Linear(10, 32), leaky(32, reset_delay),
                                  torch.nn.Linear(32, 5), leaky(5, reset_delay, True))
        shape = (10,)
    else:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(2, 4, 3, padding=1), leaky((4, 8, 8), reset_delay),
            torch.nn.AvgPool2d(2), torch.nn.Conv2d(4, 6, 3, padding=1, bias=False),
            leaky((6, 4, 4), reset_delay), torch.nn.Flatten(), torch.nn.Linear(96, 5),
            leaky(5, reset_delay, True))
        shape = (2, 8, 8)
    for m in net.modules():  # strong enough weights that every layer fires
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.weight.data *= 3
    return net, shape


def run_snntorch(net, x):
    snntorch.utils.reset(net)
    spk, mem = [], []
    with torch.no_grad():
        for t in range(x.shape[0]):
            s, m = net(x[t])
            spk.append(s)
            mem.append(m)
    return torch.stack(spk), torch.stack(mem)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("reset_delay", [False, True])
def test_snntorch_export_runs_spike_for_spike_in_cf2neuro(kind, reset_delay, tmp_path):
    """snnTorch's default reset_delay=True zeroes the membrane at the start of the
    next step instead of at once: with reset to zero the spikes are the same, only
    its reported membrane keeps the pre-reset value on spike steps."""
    net, shape = snntorch_net(kind, reset_delay)
    path = tmp_path / f"{kind}.nir"
    exported = export_to_nir(net, torch.randn(1, *shape), ignore_dims=[0])
    nir.write(path, exported)
    g = from_nir(path, dt=SNNTORCH_DT)  # snnTorch writes no dt into the graph
    assert from_nir(exported, dt=SNNTORCH_DT).equals(g)  # in memory (torch tensors) too
    lifs = [n.name for n in g.nodes.values() if n.op == "LIF"]
    assert len(lifs) == (2 if kind == "mlp" else 3)
    assert g[lifs[0]].params["v_threshold"].shape == ((32,) if kind == "mlp" else (4, 8, 8))
    x = torch.rand(T, B, *shape, generator=torch.Generator().manual_seed(1)) * 2
    spk, mem = run_snntorch(net, x)
    res = Engine(g).run(x, probes=lifs + [f"v:{lifs[-1]}"])
    assert torch.equal(res["output"], spk)
    for name in lifs:  # every layer is active, so the equality means something
        assert 0.1 < res[name].mean() < 0.6
    quiet = spk == 0  # where no spike: the same membrane (up to float32 rounding)
    torch.testing.assert_close(res[f"v:{lifs[-1]}"][quiet], mem[quiet], rtol=0, atol=1e-5)
    if not reset_delay:
        torch.testing.assert_close(res[f"v:{lifs[-1]}"], mem, rtol=0, atol=1e-5)


def cf_mlp(**neuron):
    torch.manual_seed(0)
    # input_shape [16]: snnTorch's importer builds NIR's per-sample Flatten dims as
    # torch.nn.Flatten dims, which would flatten the batch of an image input.
    model = build_model("mlp", {"input_shape": [16], "hidden": [32], "timesteps": 4,
                                "neuron": {"threshold": 0.5, **neuron}})
    return run_passes(trace_model(model))


def test_snntorch_reads_a_cf_export_as_a_plain_lif(tmp_path):
    g = cf_mlp()  # default CF: signed (ternary spikes), reset by subtraction
    path = tmp_path / "cf.nir"
    write_nir(g, path)
    net = import_from_nir(nir.read(path))
    (cf_layer,) = [n.name for n in g.nodes.values() if n.op == "CFNeuron"]
    leaky_layer = getattr(net, cf_layer.replace(".", "_"))
    assert isinstance(leaky_layer, snn.Leaky) and leaky_layer.reset_mechanism == "zero"
    # DEFAULT_DT is snnTorch's dt, so it reads back β = 1 - dt/τ = 0.5 exactly
    assert DEFAULT_DT == SNNTORCH_DT
    torch.testing.assert_close(leaky_layer.beta, torch.full((32,), 0.5))

    x = torch.randn(T, B, 16, generator=torch.Generator().manual_seed(2)) * 2
    outs = []
    with torch.no_grad():
        for t in range(T):
            out, _ = net(x[t])
            outs.append(out)
    snn_out = torch.stack(outs)
    plain = from_nir(path, read_cf_metadata=False)  # what any NIR consumer reads
    assert plain[cf_layer].op == "LIF" and plain[cf_layer].attrs["reset"] == "zero"
    plain_res = Engine(plain).run(x, probes=[cf_layer])
    torch.testing.assert_close(snn_out, plain_res["output"], rtol=0, atol=1e-5)
    # ... and that is not the CF network: binary spikes, reset to zero
    cf_res = Engine(g).run(x, probes=[cf_layer])
    record("snntorch", "cf2neuro -> snnTorch", "default CF MLP (signed, subtract), plain NIR",
           flag="export (--for nir)", agreement=agreement(plain_res, cf_res, [cf_layer]),
           lost="negative spikes, the residue after a spike",
           limit="plain NIR cannot state this CF neuron (export warns; --strict refuses): "
                 "train with --neuron reset=zero max_spikes=1 signed=false, export --for "
                 "snntorch")
    assert set(plain_res[cf_layer].unique().tolist()) == {0.0, 1.0}
    assert set(cf_res[cf_layer].unique().tolist()) == {-1.0, 0.0, 1.0}
    assert not torch.allclose(cf_res["output"], plain_res["output"])
    # cf2neuro itself reads its metadata back: the exact CF network
    assert torch.equal(Engine(from_nir(path)).run(x)["output"], cf_res["output"])


def test_snntorch_reads_nir_if_as_a_leaky_neuron(tmp_path):
    """A CF layer with β = 1 is written as nir.IF; snnTorch 1.0.0 maps nir.IF to
    Leaky(beta=0.9) (and with init_hidden=False, so its graph cannot run)."""
    g = cf_mlp(beta=1.0, signed=False)
    path = tmp_path / "if.nir"
    ng = write_nir(g, path)
    (cf_layer,) = [n.name for n in g.nodes.values() if n.op == "CFNeuron"]
    assert isinstance(ng.nodes[cf_layer], nir.IF)
    net = import_from_nir(nir.read(path))
    leaky_layer = getattr(net, cf_layer.replace(".", "_"))
    assert isinstance(leaky_layer, snn.Leaky)
    np.testing.assert_allclose(float(leaky_layer.beta), 0.9)


def test_a_reset_to_zero_binary_cf_network_runs_spike_for_spike_in_snntorch(tmp_path):
    """--neuron reset=zero max_spikes=1 signed=false is the plain NIR LIF: snnTorch's own
    importer reproduces its spikes (only a potential exactly at θ could differ)."""
    g = cf_mlp(reset="zero", max_spikes=1, signed=False)
    path = tmp_path / "zero.nir"
    write_nir(g, path)
    net = import_from_nir(nir.read(path))
    (cf_layer,) = [n.name for n in g.nodes.values() if n.op == "CFNeuron"]
    x = torch.randn(T, B, 16, generator=torch.Generator().manual_seed(3)) * 2
    outs = []
    leaky_layer = getattr(net, cf_layer.replace(".", "_"))
    seen = []
    hook = leaky_layer.register_forward_hook(  # its spikes: (spk, mem) or spk alone
        lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        for t in range(T):
            out, _ = net(x[t])
            outs.append(out)
    hook.remove()
    spikes = torch.stack(seen)
    ours = Engine(g).run(x, probes=[cf_layer])
    assert ours[cf_layer].sum() > 100  # a real test: many spikes
    assert torch.equal(spikes, ours[cf_layer])
    torch.testing.assert_close(torch.stack(outs), ours["output"], rtol=0, atol=1e-5)
