"""`export --for rockpool` and `--from rockpool`, against Rockpool 3.1.0 itself.

Rockpool runs in the peers' venv (tests/peers/rockpool_driver.py); files and
arrays cross over in tmp_path.

- Rockpool -> NIR -> cf2neuro (``--from rockpool``): LIFTorch (nir.CubaLIF),
  LIFNeuronTorch (nir.LIF) and ExpSynTorch (nir.LI) networks, random and
  trained, run spike for spike as the Rockpool model ran: dt is decoded from
  Rockpool's r, its multi-spike neurons are CF neurons (K = 2^16, unsigned,
  subtract); LIFNeuronTorch's membranes are bit-exact, LIFTorch's synapse is
  an Euler LI (equal to float32 rounding). The corpus lif_rockpool.csv to 1e-6.
- cf2neuro -> NIR -> Rockpool (``export --for rockpool``): CF MLPs with K = 2^16 (a
  smaller K >= 2 is accepted with a warning: exact while u < (K+1)θ),
  unsigned, reset by subtraction run spike for spike in Rockpool's from_nir;
  everything else is refused with the reason.
- Rockpool's own bugs are pinned: its importer re-reads its exports with
  another dt, cannot import nir.LIF or Flatten, truncates LI's tau to whole
  seconds, ignores flat recurrent edges; its exporter drops neuron biases and
  recurrent weights and writes ExpSynTorch's tau as a Parameter nir.write refuses.
"""

import json
import re

import nir
import numpy as np
import pytest
import torch

from cf2neuro.errors import UnsupportedError
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nir import export_graph, from_nir
from cf2neuro.nir.compat import make_portable
from cf2neuro.nir.peers import rockpool
from cf2neuro.nn.models import build_model
from conftest import require_corpus
from interop_log import agreement, record
from peers_env import drive

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
DRIVER = "rockpool_driver.py"
DT = 1e-3  # the driver's Rockpool networks
SPECS = ["mlp", "mlp-trained", "lif", "lif-trained", "li", "rec", "bias"]
EXACT = {"threshold": 0.5, "signed": False, "reset": "subtract", "max_spikes": 2 ** 16}
T, B = 20, 6


def npz(path) -> dict:
    with np.load(path) as f:
        return {k: str(f[k]) if f[k].dtype.kind == "U" else torch.as_tensor(f[k])
                for k in f.files}


def spiking(out: dict) -> list[str]:
    return [k for k in out if k != "output" and not k.startswith("v:")]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The driver's Rockpool networks: {spec: (dir, facts, x, Rockpool's own run)}."""
    out = tmp_path_factory.mktemp("rockpool")
    facts = json.loads(drive(DRIVER, "make", 0, out, *SPECS))
    return {s: (out / s, facts[s], npz(out / s / "in.npz")["x"], npz(out / s / "out.npz"))
            for s in SPECS}


# --- Rockpool -> NIR -> cf2neuro -----------------------------------------------------

@pytest.mark.parametrize("spec", ["mlp", "mlp-trained", "lif", "lif-trained", "li"])
def test_from_rockpool_runs_its_export_as_the_rockpool_model_ran(spec, made):
    d, facts, x, theirs = made[spec]
    layers = spiking(theirs)
    g = from_nir(d / "net.nir", peer="rockpool")  # dt from Rockpool's r
    assert g.meta["dt"] == DT and all(g[n].op == "CFNeuron" for n in layers)
    ours = Engine(g).run(x, probes=layers + [f"v:{n}" for n in layers])
    record("rockpool", "Rockpool -> cf2neuro", f"{spec} ({facts['nodes'][layers[0]]})",
           flag="--from rockpool", agreement=agreement(theirs, ours, layers),
           lost="none" if spec.startswith("lif") else "membrane to float32 rounding")
    for n in layers:
        assert 0.05 < float(ours[n].mean()) < 1.5, n  # active, so the equality means something
        assert torch.equal(ours[n], theirs[n]), n
        if spec.startswith("lif"):  # no synapse: the CF neuron is Rockpool's, bit for bit
            assert torch.equal(ours[f"v:{n}"], theirs[f"v:{n}"]), n
        else:  # the synapse is an Euler LI
            assert g[f"{n}.syn"].op == "LI"
            torch.testing.assert_close(ours[f"v:{n}"], theirs[f"v:{n}"], rtol=0, atol=2e-5)
    assert max(float(ours[n].max()) for n in layers) >= 2  # several spikes in one step
    torch.testing.assert_close(ours["output"], theirs["output"], rtol=0, atol=1e-5)
    if spec == "li":  # ExpSynTorch's readout, an LI
        assert g["3_ExpSynTorch"].op == "LI" and float(theirs["output"].abs().max()) > 0.1
    if spec.endswith("-trained"):  # trained per-neuron time constants, read back exactly
        assert facts["losses"][-1] < facts["losses"][0]
        assert len(np.unique(g[layers[0]].params["beta"])) > 1


def test_from_rockpool_reproduces_its_lif_trace():
    """lif_rockpool.nir: Linear(0.04) -> LIF written by Rockpool (r = 24.019737 for τ 2.5 ms
    encodes dt = 1e-4); lif_rockpool.csv is Rockpool's own run of it."""
    trace = np.loadtxt(require_corpus("lif_rockpool.csv"), delimiter=",")
    g = from_nir(require_corpus("lif_rockpool.nir"), peer="rockpool")  # no --dt needed
    assert g.meta["dt"] == 1e-4
    node = g["1_LIFNeuronTorch"]
    assert node.op == "CFNeuron" and node.attrs["beta"] == float(np.float32(np.exp(-0.04)))
    res = Engine(g).run(trace[:, 0].reshape(-1, 1, 1), probes=["v:1_LIFNeuronTorch"])
    v, s = res["v:1_LIFNeuronTorch"][:, 0, 0].numpy(), res["output"][:, 0, 0].numpy()
    np.testing.assert_allclose(v, trace[:, 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(v.astype(np.float32), trace[:, 1].astype(np.float32))
    np.testing.assert_array_equal(s, trace[:, 2])
    assert s.sum() == 4
    record("rockpool", "Rockpool -> cf2neuro", "corpus lif_rockpool.csv", flag="--from rockpool",
           agreement=float((s == trace[:, 2]).mean()), lost="none (membrane bit-exact)")


def test_from_rockpool_runs_a_foreign_graph_as_rockpools_importer_does(written):
    """A CubaLIF graph from elsewhere, with --dt: v_leak is Rockpool's bias (an identity
    Affine in front of the CF neuron), checked against Rockpool's own from_nir."""
    _, x, theirs, path = written["foreign"]
    g = from_nir(path, dt=FOREIGN_DT, peer="rockpool")
    assert g["lif1.bias"].op == "Linear" and g["lif1.syn"].op == "LI"
    ours = Engine(g).run(x, probes=["lif1", "lif2", "v:lif1", "v:lif2"])
    for n in ("lif1", "lif2"):
        assert 0.05 < float(ours[n].mean()) < 1.5, n
        assert torch.equal(ours[n], theirs[n]), n
        torch.testing.assert_close(ours[f"v:{n}"], theirs[f"v:{n}"], rtol=0, atol=2e-5)
    record("rockpool", "Rockpool -> cf2neuro", "foreign CubaLIF graph with bias",
           flag="--from rockpool --dt", agreement=agreement(theirs, ours, ["lif1", "lif2"]),
           lost="membrane to float32 rounding")


def test_rockpool_export_drops_recurrent_weights_and_neuron_biases(made):
    """Pinned (Rockpool 3.1.0, nir.py:252-296): to_nir writes LIFTorch without w_rec and
    every neuron with v_leak = 0. Workaround: train feed-forward, with the neuron bias
    frozen at 0 (bias=Constant(0.)); a bias in LinearTorch (has_bias=True) is exported."""
    for spec, name in (("rec", "1_LIFTorch"), ("bias", "1_LIFTorch")):
        d, facts, x, theirs = made[spec]
        assert facts["nodes"] == made["mlp"][1]["nodes"]  # no w_rec node, no cycle
        assert sorted(map(tuple, facts["edges"])) == sorted(map(tuple, made["mlp"][1]["edges"]))
        assert not np.any(facts["v_leak"][name])
        if spec == "rec":
            assert facts["has_rec"][name] and facts["w_rec_norm"][name] > 1
        else:
            assert min(facts["bias"][name]) > 0
        ours = Engine(from_nir(d / "net.nir", peer="rockpool")).run(x, probes=[name])
        assert not torch.equal(ours[name], theirs[name])  # the file is another network
        record("rockpool", "Rockpool -> cf2neuro", f"LIFTorch with {spec}", bug="to_nir drops "
               + ("w_rec" if spec == "rec" else "the neuron bias (v_leak = 0)"),
               lost="workaround: feed-forward, bias=Constant(0.)")


# --- cf2neuro -> NIR -> Rockpool -----------------------------------------------------

VARIANTS = [(beta, steps) for steps in (0, 10) for beta in (0.5, 0.9, 1.0)]


def cf_graph(beta, train_steps=0, **neuron):
    def build(**extra):
        torch.manual_seed(0)
        return build_model("mlp", {"input_shape": [16], "hidden": [32, 24], "timesteps": 4,
                                   "neuron": {**EXACT, "beta": beta, **neuron, **extra}})
    model = build()
    if train_steps:  # surrogate-gradient steps on a random task, at K = 4: cf2neuro's
        trained = build(max_spikes=4)  # backward costs O(K) per step (163 s at 2^16)
        opt = torch.optim.Adam(trained.parameters(), lr=1e-2)
        data = torch.rand(B, 4, 16, generator=torch.Generator().manual_seed(7)) * 2
        for _ in range(train_steps):
            loss = (trained(data).float().mean() - 0.3) ** 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.load_state_dict(trained.state_dict())  # the trained weights, K = 2^16
    return run_passes(trace_model(model))


FOREIGN_DT = 2.0 ** -10  # τ/(1+r) = dt exactly: Rockpool's importer reads this dt


def foreign_graph(path) -> None:
    """A NIR graph Rockpool did not write: CubaLIF layers with a bias (v_leak), per-neuron
    τ_mem and τ_syn, r = τ_mem/dt - 1 (so Rockpool's importer reads dt = FOREIGN_DT)."""
    g = torch.Generator().manual_seed(4)

    def cuba(n):
        y = (5 + 25 * torch.rand(n, generator=g)).numpy()  # τ_mem/dt, exact in float32
        return nir.CubaLIF(tau_syn=(2 + 8 * torch.rand(n, generator=g)).numpy() * FOREIGN_DT,
                           tau_mem=y * np.float32(FOREIGN_DT), r=y - np.float32(1),
                           v_leak=(0.02 * torch.rand(n, generator=g)).numpy(),
                           v_threshold=(0.5 + torch.rand(n, generator=g)).numpy())

    w1 = 0.08 * torch.randn(24, 16, generator=g)
    w2 = 0.2 * torch.randn(6, 24, generator=g) + 0.05
    nodes = {"input": nir.Input(input_type=np.array([16])),
             "fc1": nir.Affine(weight=w1.numpy(), bias=np.zeros(24, np.float32)),
             "lif1": cuba(24), "fc2": nir.Linear(weight=w2.numpy()), "lif2": cuba(6),
             "output": nir.Output(output_type=np.array([6]))}
    names = list(nodes)
    nir.write(path, nir.NIRGraph(nodes, list(zip(names, names[1:]))))
    make_portable(path)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """CF MLPs exported --for rockpool, a foreign graph, and the files that pin Rockpool's
    import bugs, all run by its from_nir in one driver call: {key: (graph, x, its run,
    file)}."""
    d = tmp_path_factory.mktemp("written")
    x = torch.rand(T, B, 16, generator=torch.Generator().manual_seed(1)) * 2
    spikes = (torch.rand(T, 2, 12, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    np.savez(d / "x.npz", x=x.numpy())
    np.savez(d / "spikes.npz", x=spikes.numpy())
    cases = {}  # key: (graph, input, file)
    for beta, steps in VARIANTS:
        cases[(beta, steps)] = (cf_graph(beta, steps), x, d / f"{beta}-{steps}.nir")
        export_graph(cases[(beta, steps)][0], cases[(beta, steps)][2], peer="rockpool")
    export_graph(cf_graph(0.9), d / "plain.nir")  # no --for: its no-op Flatten stays
    foreign_graph(d / "foreign.nir")
    braille = require_corpus("braille_noDelay_noBias_subtract.nir")
    ng = nir.read(braille, type_check=False)
    ng.edges = [e for e in ng.edges if e != ("lif1.w_rec", "lif1.lif")]
    nir.write(d / "braille_norec.nir", ng)
    make_portable(d / "braille_norec.nir")
    cases.update(plain=(None, x, d / "plain.nir"), foreign=(None, x, d / "foreign.nir"),
                 braille=(None, spikes, braille),
                 braille_norec=(None, spikes, d / "braille_norec.nir"))
    args = []
    for i, (g, xin, path) in enumerate(cases.values()):
        args += [path, d / ("x.npz" if xin is x else "spikes.npz"), d / f"out{i}.npz"]
    drive(DRIVER, "run", *args)
    return {k: (g, xin, npz(d / f"out{i}.npz"), path)
            for i, (k, (g, xin, path)) in enumerate(cases.items())}


@pytest.mark.parametrize("beta, steps", VARIANTS)
def test_for_rockpool_mlp_runs_spike_for_spike(beta, steps, written):
    g, x, theirs, _ = written[(beta, steps)]
    layers = [n.name for n in g.nodes.values() if n.op == "CFNeuron"]
    ours = Engine(g).run(x, probes=layers)
    names = {n: n.replace(".", "_") for n in layers}  # nirtorch's module names
    record("rockpool", "cf2neuro -> Rockpool",
           f"{'trained' if steps else 'random'} MLP, beta={beta}", flag="export --for rockpool",
           agreement=agreement({n: theirs[m] for n, m in names.items()}, ours, layers),
           lost="none (K=2^16, unsigned, subtract)")
    for n, m in names.items():
        assert 0.05 < float(ours[n].mean()) < 2, n
        assert torch.equal(theirs[m], ours[n]), n
    assert max(float(ours[n].max()) for n in layers) >= 2  # graded spikes
    torch.testing.assert_close(theirs["output"], ours["output"], rtol=0, atol=1e-5)


def test_for_rockpool_writes_what_its_importer_reads(tmp_path):
    g = cf_graph(0.9)
    ng = export_graph(g, tmp_path / "m.nir", peer="rockpool")
    assert ng["dt"] == 1e-4
    written = nir.read(tmp_path / "m.nir")
    assert written.metadata["cf2neuro.for"] == "rockpool"
    kinds = {k: type(v).__name__ for k, v in written.nodes.items()}
    assert "Flatten" not in kinds.values() and kinds["layers.2"] == "CubaLIF"
    node = written.nodes["layers.2"]
    d = rockpool.rockpool_dt(1e-4)  # Rockpool's dt = min(tau/(1+r)): a power of two
    assert float(np.min(node.tau_mem / (np.float32(1) + node.r))) == d == 2.0 ** -13
    np.testing.assert_array_equal(rockpool.decay(d, node.tau_mem), np.float32(0.9))
    np.testing.assert_array_equal(node.tau_syn, np.float32(d / rockpool.SYN_STEPS))
    assert not np.any(node.v_leak)
    # and cf2neuro reads the file back (as Rockpool runs it) as the same network
    x = torch.rand(T, B, 16, generator=torch.Generator().manual_seed(3)) * 2
    back = from_nir(tmp_path / "m.nir", peer="rockpool")
    assert back.meta["dt"] == 1e-4
    assert torch.equal(Engine(back).run(x, probes=["layers.2"])["layers.2"],
                       Engine(g).run(x, probes=["layers.2"])["layers.2"])


@pytest.mark.parametrize("case, why", [
    ({"signed": True, "max_spikes": 1}, f"K=1.*negative spikes.*{re.escape(rockpool.TRAIN)}"),
    ({"reset": "zero"}, f"reset to zero.*{re.escape(rockpool.TRAIN)}"),
    ("conv net", "Conv2d.*from_nir reads only Linear, Affine and CubaLIF.*has no Flatten"),
])
def test_for_rockpool_refuses_what_it_cannot_run(case, why, tmp_path):
    if case == "conv net":
        torch.manual_seed(0)
        g = run_passes(trace_model(build_model("vgg-small", {
            "input_shape": [1, 8, 8], "channels": [4, "A"], "fc_hidden": [8], "neuron": EXACT})))
    else:
        g = cf_graph(0.9, **case)
    with pytest.raises(UnsupportedError, match=why) as e:
        export_graph(g, tmp_path / "r.nir", peer="rockpool")
    assert not (tmp_path / "r.nir").exists()
    record("rockpool", "cf2neuro -> Rockpool", f"CF with {case}", flag="export --for rockpool",
           refused=str(e.value))


def test_rockpool_runs_its_own_exports_wrongly(made, tmp_path):
    """Pinned (Rockpool 3.1.0): from_nir reads dt = min(τ/(1+r)) where its to_nir wrote
    r = τ·exp(-dt/τ)/dt (nir.py:121/133 vs 267/288): a re-imported network runs another
    dt; nir.LIF fails (``node.tau_mem``, nir.py:118); LI's tau becomes int(τ) = 0 s
    (nir.py:111) and its exporter leaves that tau a Parameter nir.write refuses
    (nir.py:247). Workaround: ``cf2neuro run FILE --from rockpool``."""
    args = []
    for spec in ("mlp", "lif", "li"):
        d = made[spec][0]
        args += [d / "net.nir", d / "in.npz", tmp_path / f"{spec}.npz"]
    facts = json.loads(drive(DRIVER, "run", *args))
    mlp = facts[str(made["mlp"][0] / "net.nir")]
    assert all(0.9 * DT < dt < DT for dt in mlp["dt"].values())  # min(τ/(1+r)) < dt
    theirs, original = npz(tmp_path / "mlp.npz"), made["mlp"][3]
    assert not torch.equal(theirs["3_LIFTorch"], original["3_LIFTorch"])
    assert "has no attribute 'tau_mem'" in facts[str(made["lif"][0] / "net.nir")]["error"]
    assert "requires grad" in made["li"][1]["write_error"]
    assert not npz(tmp_path / "li.npz")["output"].any()  # exp(-dt/0): the LI outputs zeros
    assert made["li"][3]["output"].abs().max() > 0.1
    record("rockpool", "Rockpool -> Rockpool", "its own export", bug="importer's dt = "
           "min(tau/(1+r)) is not its exporter's r; nir.LIF import fails; LI tau int()",
           lost="workaround: cf2neuro --from rockpool")


def test_rockpool_cannot_import_flatten_and_ignores_recurrent_edges(written):
    """Pinned (Rockpool 3.1.0): from_nir has no Flatten (nir.py:153), so a plain export
    of a CF MLP (which starts with a no-op Flatten) fails: --for rockpool drops it. A
    flat recurrent edge is fed with the previous *call*'s output (nirtorch's
    GraphExecutor; Rockpool modules evolve whole sequences): the Braille network runs
    the same without its w_rec edge. --for rockpool refuses recurrent loops."""
    assert "Flatten" in written["plain"][2]["error"]
    with_rec, without = written["braille"][2], written["braille_norec"][2]
    assert float(with_rec["lif1_lif"].sum()) > 0
    for k in with_rec:
        assert torch.equal(with_rec[k], without[k]), k
    record("rockpool", "cf2neuro -> Rockpool", "plain export / recurrent graph",
           bug="from_nir has no Flatten; flat recurrent edges are ignored",
           lost="workaround: export --for rockpool (drops a no-op Flatten, refuses loops)")
