"""Interop with Sinabs 3.1.3's own NIR exporter and importer (peers' venv, nir 1.0.4).

- Sinabs -> NIR -> cf2neuro (``from_nir(f, peer="sinabs")``): Sinabs's
  networks run spike for spike (and membrane for membrane) the same in
  cf2neuro; IAF layers with the CF neuron's membrane floor (which Sinabs's
  importer gives every IF), computed as Sinabs computes it.
- cf2neuro -> NIR -> Sinabs (``export_graph(..., peer="sinabs")``): Sinabs's
  own ``from_nir`` runs unsigned, reset-by-subtraction CF networks exactly;
  what it cannot run is refused with the reason.
- Sinabs's own quirks, pinned as they are in 3.1.3.
"""

import logging

import nir
import numpy as np
import pytest
import torch
from conftest import require_corpus
from interop_log import agreement, record
from peers_env import drive

from cf2neuro.errors import UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nir import export_graph, from_nir
from cf2neuro.nir.peers import sinabs as peer
from cf2neuro.nn.models import build_model

DRIVER = "sinabs_driver.py"
SPECS = ("mlp", "cnn", "mlp-trained", "cnn-trained", "mlp-lif", "cnn-lif", "mlp-lif-trained",
         "cnn-lif-trained", "mlp-scalar", "mlp-li", "mlp-nofloor")
FROM, FOR = "--from sinabs", "export --for sinabs"

@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """Sinabs networks, each with its NIR export, input and outputs (one driver call)."""
    d = tmp_path_factory.mktemp("sinabs")
    log = drive(DRIVER, "make", 0, d, *SPECS)
    return d, log


def cf_layers(g):
    return [n.name for n in g.nodes.values() if n.op == "CFNeuron"]


def run_cf(g, x):
    names = cf_layers(g)
    return names, Engine(g).run(torch.as_tensor(x), probes=names + [f"v:{n}" for n in names])


def assert_same(names, ours, theirs, membranes=True, output=True):
    for n in names:  # every layer fires, so equality means something
        assert theirs[n].sum() > 20, n
        assert torch.equal(ours[n], torch.as_tensor(theirs[n])), n
        if membranes:
            assert torch.equal(ours[f"v:{n}"], torch.as_tensor(theirs[f"v:{n}"])), n
    if output:
        assert torch.equal(ours["output"], torch.as_tensor(theirs["output"]))


NETWORKS = {"mlp": "random MLP, IAF", "cnn": "random CNN (SumPool2d), IAF",
            "mlp-trained": "trained MLP, IAF", "cnn-trained": "trained CNN, IAF",
            "mlp-lif": "random MLP, LIF", "cnn-lif": "random CNN, LIF",
            "mlp-lif-trained": "trained MLP, LIF", "cnn-lif-trained": "trained CNN, LIF",
            "mlp-scalar": "MLP, LIF with one tau", "mlp-li": "MLP, LIF + ExpLeak readout"}


def check_sinabs_net(nets, spec, layers=3, lost="none"):
    d = nets[0] / spec
    g = from_nir(d / "net.nir", peer="sinabs")
    names, ours = run_cf(g, np.load(d / "in.npz")["x"])
    theirs = np.load(d / "out.npz")
    record("sinabs", "Sinabs -> cf2neuro", NETWORKS[spec], flag=FROM, lost=lost,
           agreement=agreement(theirs, ours, names))
    assert len(names) == layers
    assert_same(names, ours, theirs, output=layers == 3)
    return ours, theirs


# --- Sinabs -> NIR -> cf2neuro ----------------------------------------------------

@pytest.mark.parametrize("spec", ["mlp-lif", "cnn-lif", "mlp-lif-trained", "cnn-lif-trained",
                                  "mlp-scalar"])
def test_sinabs_lif_export_runs_spike_for_spike_in_cf2neuro(nets, spec):
    """LIFSqueeze (per-neuron or one tau in steps and θ): α = exp(-1/τ) as Sinabs computes
    it. cnn-lif and mlp-scalar are networks Sinabs itself cannot import back (pinned below)."""
    check_sinabs_net(nets, spec)


def test_sinabs_exp_leak_readout_reads_to_float_rounding(nets):
    """ExpLeak (nir.LI, v = α·v + x) becomes the IR's Euler LI with dt = 1, τ = 1/(1-α),
    r = τ: the same decay and gain up to float rounding."""
    ours, theirs = check_sinabs_net(nets, "mlp-li", layers=2,
                                    lost="readout membrane within 1e-5")
    torch.testing.assert_close(ours["output"], torch.as_tensor(theirs["output"]), rtol=0,
                               atol=1e-5)


@pytest.mark.parametrize("spec", ["mlp", "cnn", "mlp-trained", "cnn-trained"])
def test_sinabs_iaf_export_runs_spike_for_spike_in_cf2neuro(nets, spec):
    """IAFSqueeze with min_v_mem = -θ (sinabs.from_model's and from_nir's)."""
    check_sinabs_net(nets, spec, lost="none (the floor -θ as Sinabs computes it)")


def test_read_states_sinabs_neurons_as_cf(nets):
    d = nets[0]
    ng, _ = peer.read(nir.read(d / "cnn" / "net.nir"), None)
    meta = ng.nodes["1"].metadata  # an IAF: β = 1, K = 255, Sinabs's floor -θ
    assert (meta["K"], meta["signed"], meta["reset"], meta["beta"]) == (255, False,
                                                                         "subtract", 1.0)
    assert meta["threshold"] == 1.0 and np.all(meta["v_min"] == -1.0)
    ng, _ = peer.read(nir.read(d / "mlp-lif" / "net.nir"), None)
    lif = ng.nodes["1"]
    beta = np.asarray(ng.nodes["1"].metadata["beta_array"])
    assert beta.shape == (32,) and "v_min" not in lif.metadata
    np.testing.assert_allclose(beta, np.exp(-1 / lif.tau), rtol=1e-6)  # τ in steps


@pytest.fixture(scope="module")
def cnn_sinabs(tmp_path_factory):
    """The NIR paper's N-MNIST CNN (5 IF layers) run by Sinabs on sparse events, with
    from_nir's floor and without it: (path, x, floor outputs, no-floor outputs)."""
    path, d = require_corpus("cnn_sinabs.nir"), tmp_path_factory.mktemp("cnn_sinabs")
    x = (torch.rand(20, 8, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.1)
    np.savez(d / "in.npz", x=x.float().numpy())
    drive(DRIVER, "run", path, d / "in.npz", d / "floor.npz")
    drive(DRIVER, "run", "--nofloor", path, d / "in.npz", d / "nofloor.npz")
    return path, x.float(), np.load(d / "floor.npz"), np.load(d / "nofloor.npz")


def test_cnn_sinabs_everything_but_the_floor_agrees(cnn_sinabs):
    """read() without its v_min is exactly Sinabs without min_v_mem; the floor itself
    changes the spikes of every layer (so cf2neuro needs it)."""
    path, x, floor, nofloor = cnn_sinabs
    ng, _ = peer.read(nir.read(path), None)
    for node in ng.nodes.values():
        node.metadata.pop("v_min", None)
    names, ours = run_cf(from_nir(ng), x)
    assert names == ["1", "3", "6", "10", "12"]
    assert_same(names, ours, nofloor)
    for n in names:
        assert not np.array_equal(floor[n], nofloor[n]), n


def test_cnn_sinabs_runs_spike_for_spike_as_sinabs_runs_it(cnn_sinabs):
    path, x, floor, _ = cnn_sinabs
    names, ours = run_cf(from_nir(path, peer="sinabs"), x)
    record("sinabs", "Sinabs -> cf2neuro", "corpus cnn_sinabs.nir (N-MNIST CNN, 10 % events)",
           flag=FROM, agreement=agreement(floor, ours, names),
           lost="none (the floor -θ as Sinabs computes it)")
    assert_same(names, ours, floor)


def test_cnn_sinabs_read_and_written_back_runs_as_the_original_in_sinabs(cnn_sinabs,
                                                                          tmp_path):
    """--from sinabs then --for sinabs: IF layers (floor -θ) go back as Sinabs's IF."""
    path, x, floor, _ = cnn_sinabs
    export_graph(from_nir(path, peer="sinabs"), tmp_path / "back.nir", peer="sinabs")
    assert isinstance(nir.read(tmp_path / "back.nir").nodes["1"], nir.IF)
    np.savez(tmp_path / "in.npz", x=x.numpy())
    drive(DRIVER, "run", tmp_path / "back.nir", tmp_path / "in.npz", tmp_path / "out.npz")
    back = np.load(tmp_path / "out.npz")
    record("sinabs", "Sinabs -> cf2neuro -> Sinabs", "corpus cnn_sinabs.nir", lost="none",
           flag=f"{FROM}, {FOR}", agreement=agreement(floor, back, ["1", "3", "6", "10", "12"]))
    for k in floor:
        np.testing.assert_array_equal(back[k], floor[k], err_msg=k)


# --- cf2neuro -> NIR -> Sinabs ----------------------------------------------------

def cf_graph(name="mlp", image=8, **neuron):
    torch.manual_seed(0)
    n = {"threshold": 0.5, "signed": False, "max_spikes": 8, "reset": "subtract",
         "beta": 0.9, **neuron}
    if name == "mlp":
        cfg = {"input_shape": [16], "hidden": [32, 16], "timesteps": 4, "neuron": n}
    else:  # conv, 2x2 AvgPool2d (-> SumPool2d), conv, AvgPool2d, flatten, linear
        cfg = {"input_shape": [2, image, image], "channels": [4, "A", 8, "A"], "timesteps": 4,
               "neuron": n}
    return run_passes(trace_model(build_model(name, cfg)))


def run_in_sinabs(tmp_path, cases):
    """Export each graph for Sinabs, run all in one driver call; [(names, ours, theirs)]."""
    args, out = [], []
    for i, (g, x) in enumerate(cases):
        export_graph(g, tmp_path / f"{i}.nir", peer="sinabs")
        np.savez(tmp_path / f"{i}.in.npz", x=x.numpy())
        args += [tmp_path / f"{i}.nir", tmp_path / f"{i}.in.npz", tmp_path / f"{i}.out.npz"]
        out.append(run_cf(g, x))
    drive(DRIVER, "run", *args)
    return [(n, o, np.load(tmp_path / f"{i}.out.npz")) for i, (n, o) in enumerate(out)]


def test_a_cf_network_runs_spike_for_spike_in_sinabs(tmp_path, caplog):
    mlp, mlp_if, vgg = cf_graph(), cf_graph(beta=1.0, max_spikes=4), cf_graph("vgg-small")
    conv = cf_layers(vgg)[0]  # per-channel θ: written as [C, 1, 1] (Sinabs's v_leak bug)
    fc = next(n for n in mlp.nodes.values() if n.op == "Linear")
    del fc.params["bias"]  # nir.Linear, which Sinabs builds no module for: an Affine
    vgg[conv].params["threshold"] = np.linspace(0.4, 0.8, 4).reshape(4, 1, 1)
    gen = torch.Generator().manual_seed(1)
    cases = [(mlp, torch.rand(12, 4, 16, generator=gen) * 2),
             (mlp_if, torch.rand(12, 4, 16, generator=gen) * 2),
             (vgg, torch.rand(12, 4, 2, 8, 8, generator=gen) * 2)]
    with caplog.at_level(logging.WARNING):
        results = run_in_sinabs(tmp_path, cases)
    assert "without cf2neuro's cap K" in caplog.text
    for network, (names, ours, theirs) in zip(
            ("MLP, beta=0.9, K=8", "MLP, beta=1, K=4 (LIF with tau=inf)",
             "conv + 2x2 AvgPool2d net, per-channel threshold"), results):
        record("sinabs", "cf2neuro -> Sinabs", network, flag=FOR,
               agreement=agreement(theirs, ours, names) if "error" not in theirs else 0.0,
               lost="none while u < (K+1)θ (Sinabs has no cap)")
        assert "error" not in theirs, str(theirs["error"])
        assert max(int(ours[n].max()) for n in names) < 8  # the cap never binds here
        assert_same(names, ours, theirs)
    # β = 1 is a LIF with τ = ∞ (an IF would get Sinabs's floor)
    assert isinstance(nir.read(tmp_path / "1.nir").nodes["layers.2"], nir.LIF)
    assert isinstance(nir.read(tmp_path / "0.nir").nodes[fc.name], nir.Affine)
    # a conv layer's LIF has [C, 1, 1] parameters, which nir >= 1.0.5's type check rejects
    # (Sinabs's nir 1.0.4 has none; cf2neuro reads without it)
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(tmp_path / "2.nir")
    ng = nir.read(tmp_path / "2.nir", type_check=False)
    assert ng.nodes[conv].v_threshold.shape == (4, 1, 1)
    assert isinstance(ng.nodes["layers.2.module"], nir.SumPool2d)
    # and cf2neuro reads its Sinabs export exactly, itself and as Sinabs runs it
    x, want = cases[2][1], Engine(vgg).run(cases[2][1])["output"]
    assert torch.equal(Engine(from_nir(tmp_path / "2.nir")).run(x)["output"], want)
    assert torch.equal(Engine(from_nir(tmp_path / "2.nir", peer="sinabs")).run(x)["output"],
                       want)


def test_sinabs_does_not_cap_the_spikes(tmp_path):
    """K is cf2neuro's cap; Sinabs emits trunc(u/θ): a neuron's spikes part ways at its
    first step with u >= (K+1)θ (which export --for sinabs warns about), not before."""
    g = cf_graph(max_spikes=2, threshold=0.25)
    x = torch.rand(12, 4, 16, generator=torch.Generator().manual_seed(2)) * 4
    [(names, ours, theirs)] = run_in_sinabs(tmp_path, [(g, x)])
    record("sinabs", "cf2neuro -> Sinabs", "MLP, K=2, driven past the cap", flag=FOR,
           agreement=agreement(theirs, ours, names),
           lost="spikes part at the first u >= (K+1)θ",
           limit="Sinabs has no spike cap; export warns that it agrees while u < (K+1)θ")
    a, b = ours[names[0]].flatten(1), torch.as_tensor(theirs[names[0]]).flatten(1)
    differs = (a != b).any(0)
    assert differs.sum() > 10
    t0 = (a != b).float().argmax(0)[differs]  # each neuron's first differing step
    cols = differs.nonzero()[:, 0]
    assert torch.all(a[t0, cols] == 2) and torch.all(b[t0, cols] > 2)


def test_beta_round_trips_through_sinabs_tau():
    for b in (0.5, 0.6, 0.9, 0.95, 0.99, 0.999, 1 - 2**-12):
        tau = peer.tau_for(b)
        assert peer.alpha(np.float32(tau)) == np.float32(b), b
    assert peer.tau_for(0.1) is None  # some β < 0.5 have no float32 τ: refused


@pytest.mark.parametrize("neuron, reasons", [
    ({"signed": True}, ["signed"]),
    ({"reset": "zero"}, ["reset=zero"]),
    ({"max_spikes": 1}, ["max_spikes=1"]),
    ({"signed": True, "reset": "zero", "max_spikes": 1}, ["signed", "reset=zero",
                                                          "max_spikes=1"]),
    ({"beta": 0.1}, ["beta=0.1"]),
])
def test_what_sinabs_cannot_run_is_refused(tmp_path, neuron, reasons):
    with pytest.raises(UnsupportedError) as e:
        export_graph(cf_graph(**neuron), tmp_path / "x.nir", peer="sinabs")
    msg = str(e.value)
    record("sinabs", "cf2neuro -> Sinabs", f"CF with {', '.join(reasons)}", flag=FOR,
           refused=msg)
    assert msg.count("CF layer") == 2 and all(r in msg for r in reasons)
    assert "train with" in msg or "beta" in msg


def test_pools_and_plain_neurons_sinabs_cannot_run_are_refused(tmp_path):
    g = cf_graph("vgg-small", image=12)
    pool = [n.name for n in g.nodes.values() if n.op == "AvgPool2d"][1]
    g[pool].attrs.update(kernel=[3, 3], stride=[3, 3])  # [8, 6, 6] -> [8, 2, 2]
    (fc,) = [n for n in g.nodes.values() if n.op == "Linear"]
    fc.params["weight"] = fc.params["weight"][:, :32]
    g.validate()
    with pytest.raises(UnsupportedError, match=r"AvgPool2d .*1/9 is no power of two") as e:
        export_graph(g, tmp_path / "p.nir", peer="sinabs")
    record("sinabs", "cf2neuro -> Sinabs", "3x3 AvgPool2d", flag=FOR, refused=str(e.value))
    plain = from_nir(require_corpus("cnn_sinabs.nir"))  # nir.IF read per NIR: binary spikes
    with pytest.raises(UnsupportedError, match=r"IF '1' is not a CF layer") as e:
        export_graph(plain, tmp_path / "if.nir", peer="sinabs")
    record("sinabs", "cf2neuro -> Sinabs", "plain (binary) IF layers", flag=FOR,
           refused=str(e.value))


def test_padded_sum_pools_plain_nodes_and_recurrence_are_refused():
    """Sinabs builds SumPool2d without padding, no module for Scale, runs no loops."""
    ng = nir.NIRGraph(nodes={
        "x": nir.Input(input_type=np.array([2, 4, 4])),
        "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                           padding=np.array([1, 1])),
        "s": nir.Scale(scale=np.ones((2, 3, 3))),
        "output": nir.Output(output_type=np.array([2, 3, 3]))},
        edges=[("x", "p"), ("p", "s"), ("s", "p"), ("s", "output")], type_check=False)
    with pytest.raises(UnsupportedError) as e:
        peer.write(ng)
    for why in ("SumPool2d 'p' has padding", "Scale 's'", "recurrent", "'p' sum several"):
        assert why in str(e.value), why


# --- Sinabs 3.1.3's own quirks, pinned --------------------------------------------

def test_sinabs_to_nir_leaves_shapes_unset(nets):
    """sinabs.to_nir writes Conv2d.input_shape and Flatten.input_type as None, which
    nir.write (1.0.4) cannot store; the driver fills them in from a forward pass."""
    assert "filled 0: Conv2d.input_shape" in nets[1]
    assert "Flatten.input_type" in nets[1]
    record("sinabs", "Sinabs -> NIR", "any CNN", bug="to_nir leaves Conv2d.input_shape and "
           "Flatten.input_type None: nir.write fails", lost="workaround: set them before "
           "nir.write (cf2neuro infers shapes itself)")


def test_sinabs_cannot_import_its_own_lif_exports(nets, tmp_path):
    """sinabs/nir.py:97 `any(node.v_leak) != 0` fails on a [C, H, W] array: a LIF conv
    layer does not survive Sinabs's own round trip (cf2neuro reads it: above). Workaround
    (export --for sinabs): per-channel parameters written as [C, 1, 1]."""
    d = nets[0]
    drive(DRIVER, "run", *(d / "cnn-lif" / f for f in ("net.nir", "in.npz")),
          tmp_path / "lif.npz", *(d / "mlp-scalar" / f for f in ("net.nir", "in.npz")),
          tmp_path / "scalar.npz", *(d / "mlp-nofloor" / f for f in ("net.nir", "in.npz")),
          tmp_path / "nofloor.npz")
    assert "truth value of an array" in str(np.load(tmp_path / "lif.npz")["error"])
    record("sinabs", "Sinabs -> Sinabs", "CNN with LIF layers", bug="from_nir fails on "
           "[C, H, W] LIF parameters (nir.py:97)", lost="workaround: cf2neuro --from sinabs; "
           "export --for sinabs writes [C, 1, 1]")
    # nor one with a single tau (NIR's own Sinabs example): from a file its parameters
    # are numpy, and nir.py:96 calls .unsqueeze on them
    assert "unsqueeze" in str(np.load(tmp_path / "scalar.npz")["error"])
    record("sinabs", "Sinabs -> Sinabs", "LIF with one tau, from a file", bug="from_nir "
           "calls .unsqueeze on numpy (nir.py:96)", lost="workaround: cf2neuro --from sinabs")
    # and an IAF without a floor (Sinabs's default) comes back with min_v_mem = -θ:
    # its own round trip changes the spikes (read() follows from_nir)
    orig, back = np.load(d / "mlp-nofloor" / "out.npz"), np.load(tmp_path / "nofloor.npz")
    assert not np.array_equal(orig["v:1"], back["v:1"])
    assert not all(np.array_equal(orig[n], back[n]) for n in ("1", "3", "5"))
    record("sinabs", "Sinabs -> Sinabs", "IAF without min_v_mem", bug="from_nir gives every "
           "IF min_v_mem = -θ: its own round trip changes spikes", lost="workaround: train "
           "with min_v_mem=-θ (sinabs.from_model's default)")


def test_sinabs_drops_one_input_of_a_residual_add(tmp_path):
    """nirtorch 2.0.2 (graph_utils.py:71) orders Sinabs's modules depth first, and its
    executor (graph_executor.py:113) skips an input not computed yet: of x -> a -> n,
    x -> b -> n, Sinabs sums only one branch into n. export --for sinabs refuses joins."""
    w = torch.randn(2, 8, 6, generator=torch.Generator().manual_seed(3)).numpy()
    graphs = []
    for branches in (("a", "b"), ("a",), ("b",)):
        g = Graph({})
        g.add_node("x", "Input", [], attrs={"shape": (6,)})
        for k in branches:
            g.add_node(k, "Linear", ["x"], params={"weight": w["ab".index(k)],
                                                    "bias": np.zeros(8, np.float32)})
        if len(branches) > 1:
            g.add_node("sum", "Add", list(branches))
        g.add_node("n", "CFNeuron", ["sum" if len(branches) > 1 else branches[0]],
                   attrs={"threshold": 0.5, "beta": 1.0, "max_spikes": 8, "signed": False,
                          "reset": "subtract"})
        g.add_node("output", "Output", ["n"])
        g.validate()
        graphs.append(g)
    with pytest.raises(UnsupportedError, match="'n' sum several inputs") as e:
        export_graph(graphs[0], tmp_path / "r.nir", peer="sinabs")
    record("sinabs", "cf2neuro -> Sinabs", "residual add", flag=FOR, refused=str(e.value))
    x = torch.rand(12, 4, 6, generator=torch.Generator().manual_seed(4)) * 2
    np.savez(tmp_path / "in.npz", x=x.numpy())
    args = []
    for i, g in enumerate(graphs):  # plain NIR (IF layers): Sinabs runs them all
        export_graph(g, tmp_path / f"{i}.nir")
        args += [tmp_path / f"{i}.nir", tmp_path / "in.npz", tmp_path / f"{i}.npz"]
    drive(DRIVER, "run", *args)
    both, a, b = (np.load(tmp_path / f"{i}.npz")["n"] for i in range(3))
    assert np.array_equal(both, a) or np.array_equal(both, b)
    assert not np.array_equal(a, b)
    record("sinabs", "NIR -> Sinabs", "two branches summed into one node", bug="nirtorch "
           "2.0.2 runs nodes depth first and drops the branch not computed yet",
           lost="workaround: none (no residual networks in Sinabs via NIR)")
