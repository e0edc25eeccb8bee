"""NIR -> IR import: the NIR paper corpus, NIR's neuron semantics, bad files."""

import os
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cf2neuro.errors import BadInputError
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.numerics import FloatNumerics
from cf2neuro.nir import from_nir, to_nir, write_nir

CORPUS = Path(__file__).parents[1].parent / "shared" / "nir-graphs"
# CI always has shared/ beside the repo: there a missing corpus is a failure, not a skip.
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir() and not os.environ.get("CI"),
                                  reason=f"{CORPUS} is not there")
BRAILLE = ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"]


def spikes(shape, T=25, B=3, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < p).float()


# --- the corpus ----------------------------------------------------------------

@needs_corpus
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lif_norse_reproduces_norses_voltage_trace_and_spikes(dtype):
    """Norse: v += dt/tau·((v_leak - v) + r·x); spike if v > θ; v = v_reset at once.

    The csv's voltage column is the membrane after the reset (0 at a spike).
    """
    g = from_nir(CORPUS / "lif_norse.nir", dt=1e-4)
    trace = np.loadtxt(CORPUS / "lif_norse.csv", delimiter=",")
    x = trace[:, 0].reshape(-1, 1, 1)
    res = Engine(g, FloatNumerics(dtype)).run(x, probes=["v:1"])
    v, z = res["v:1"][:, 0, 0].numpy(), res["output"][:, 0, 0].numpy()
    np.testing.assert_allclose(v, trace[:, 1], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(z, trace[:, 2])
    assert trace[:, 2].sum() == 4  # the trace does exercise threshold and reset


@needs_corpus
def test_lif_norse_needs_a_dt():
    with pytest.raises(BadInputError, match="--dt"):
        from_nir(CORPUS / "lif_norse.nir")


@needs_corpus
def test_cnn_sinabs_infers_shapes_and_runs():
    g = from_nir(CORPUS / "cnn_sinabs.nir")  # IF only: no dt needed
    assert g[g.inputs[0]].shape == (2, 34, 34)
    assert g[g.outputs[0]].shape == (10,)
    assert [g[n].shape for n in ("0", "4", "7", "8", "9")] == [
        (16, 16, 16), (16, 8, 8), (8, 4, 4), (128,), (256,)]
    x = spikes([2, 34, 34], T=6, B=2)
    res = Engine(g).run(x, probes=["0", "1", "v:1"])
    assert res["output"].shape == (6, 2, 10)
    # numbers: the first conv is PyTorch's conv; the IF integrates v += r·x (no dt)
    nodes = nir.read(CORPUS / "cnn_sinabs.nir").nodes
    w, b = (torch.from_numpy(nodes["0"].weight), torch.from_numpy(nodes["0"].bias))
    conv = F.conv2d(x.flatten(0, 1), w, b, stride=2, padding=1).unflatten(0, (6, 2))
    torch.testing.assert_close(res["0"], conv)
    v, expect = torch.zeros(2, 16, 16, 16), []
    for t in range(6):
        v = v + conv[t]
        z = v > 1.0
        v = torch.where(z, torch.zeros(()), v)
        expect.append(z.float())
    assert torch.equal(res["1"], torch.stack(expect))
    assert res["1"].sum() > 0


def braille_reference(path, x):
    """The Braille network by hand: Euler CubaLIF, recurrent input delayed one step."""
    n = nir.read(path).nodes
    dt, T, B = 1e-4, x.shape[0], x.shape[1]

    def affine(node, s):
        y = s @ node.weight.T.astype(np.float64)
        return y + node.bias if isinstance(node, nir.Affine) else y

    def cuba(node, state, inp):
        i, v = state
        i = i + dt / node.tau_syn * (node.w_in * inp - i)
        v = v + dt / node.tau_mem * (node.v_leak - v + node.r * i)
        z = v > node.v_threshold
        return z.astype(np.float64), (i, np.where(z, node.v_reset, v))

    l1, l2 = n["lif1.lif"], n["lif2"]
    s1 = (np.zeros((B, l1.tau_syn.size)),) * 2
    s2 = (np.zeros((B, l2.tau_syn.size)),) * 2
    z1 = np.zeros((B, l1.tau_syn.size))
    out = []
    for t in range(T):
        z1, s1 = cuba(l1, s1, affine(n["fc1"], x[t]) + affine(n["lif1.w_rec"], z1))
        z2, s2 = cuba(l2, s2, affine(n["fc2"], z1))
        out.append(z2)
    return np.stack(out)


@needs_corpus
@pytest.mark.parametrize("name", BRAILLE)
def test_braille_recurrent_cubalif_imports_and_runs(name):
    g = from_nir(CORPUS / name, dt=1e-4)
    assert g[g.inputs[0]].shape == (12,) and g[g.outputs[0]].shape == (7,)
    assert g["lif1.lif"].op == "CubaLIF" and g["lif2"].op == "CubaLIF"
    # the recurrent Affine comes back as an Add of fc1 and w_rec, and the loop
    # is cut where it leaves the neuron: w_rec (and its bias) acts from t = 0
    add = g["lif1.lif"].inputs[0]
    assert g[add].op == "Add" and sorted(g[add].inputs) == ["fc1", "lif1.w_rec"]
    assert g.back_edges() == {("lif1.lif", "lif1.w_rec")}
    x = spikes([12], T=60, B=8, p=0.4)
    res = Engine(g, FloatNumerics(torch.float64)).run(x.double(), probes=["lif1.lif"])
    assert res["output"].shape == (60, 8, 7)
    expect = braille_reference(CORPUS / name, x.double().numpy())
    np.testing.assert_array_equal(res["output"].numpy(), expect)
    assert res["lif1.lif"].sum() >= 10 and res["output"].mean() > 0.02  # both layers fire


@needs_corpus
@pytest.mark.parametrize("name", ["lif_norse.nir", "two_lif_neurons.nir", "cnn_sinabs.nir",
                                  *BRAILLE])
def test_corpus_graphs_survive_cf2neuros_own_export(name, tmp_path):
    g = from_nir(CORPUS / name, dt=1e-4)
    write_nir(g, tmp_path / name)
    back = from_nir(tmp_path / name)  # dt now comes from the file
    assert back.equals(g)
    x = spikes(g[g.inputs[0]].shape, T=8, B=2)
    assert torch.equal(Engine(g).run(x)["output"], Engine(back).run(x)["output"])


@needs_corpus
def test_two_lif_neurons_and_rockpool_graphs_import():
    g = from_nir(CORPUS / "two_lif_neurons.nir", dt=1e-4)
    assert [g[n].op for n in g.topological_order()] == [
        "Input", "Linear", "LIF", "Linear", "LIF", "Output"]
    # Rockpool's graph declares its Output [1, 1, 1] (NIR's own type check rejects it);
    # cf2neuro reads it, warning about the same-size shape.
    g = from_nir(CORPUS / "lif_rockpool.nir", dt=1e-4)
    assert g[g.outputs[0]].shape == (1,)


# --- NIR semantics on small graphs ----------------------------------------------------

def test_if_lif_li_and_cubalif_follow_nir_with_forward_euler():
    dt = 1e-3
    shape = np.ones(2)
    nodes = {
        "in": nir.Input(input_type=np.array([2])),
        "if": nir.IF(r=2 * shape, v_threshold=3 * shape, v_reset=-0.5 * shape),
        "lif": nir.LIF(tau=4e-3 * shape, r=1.5 * shape, v_leak=0.1 * shape,
                       v_threshold=0.5 * shape),
        "scale": nir.Scale(scale=np.array([0.5, -2.0])),
        "li": nir.LI(tau=2e-3 * shape, r=shape, v_leak=0 * shape),
        "cuba": nir.CubaLIF(tau_syn=5e-3 * shape, tau_mem=2e-3 * shape, r=shape,
                            v_leak=0 * shape, v_threshold=0.2 * shape, w_in=3 * shape),
        "out": nir.Output(output_type=np.array([2])),
    }
    edges = [("in", "if"), ("in", "lif"), ("in", "scale"), ("scale", "li"), ("in", "cuba"),
             ("if", "out"), ("lif", "out"), ("li", "out"), ("cuba", "out")]
    g = from_nir(nir.NIRGraph(nodes, edges, metadata={"dt": dt}))
    assert g.meta["dt"] == dt and g[g["out"].inputs[0]].op == "Add"
    x = torch.rand(30, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    res = Engine(g, FloatNumerics(torch.float64)).run(x, probes=["if", "lif", "li", "cuba"])
    v_if = v_lif = v_li = i_c = v_c = torch.zeros(2, 2, dtype=torch.float64)
    for t in range(30):
        v_if = v_if + 2 * x[t]
        z = v_if > 3
        assert torch.equal(res["if"][t], z.double())
        v_if = torch.where(z, -0.5, v_if)
        v_lif = v_lif + dt / 4e-3 * (0.1 - v_lif + 1.5 * x[t])
        z = v_lif > 0.5
        assert torch.equal(res["lif"][t], z.double())
        v_lif = torch.where(z, 0.0, v_lif)
        v_li = v_li + dt / 2e-3 * (0 - v_li + torch.tensor([0.5, -2.0]) * x[t])
        torch.testing.assert_close(res["li"][t], v_li)
        i_c = i_c + dt / 5e-3 * (3 * x[t] - i_c)
        v_c = v_c + dt / 2e-3 * (0 - v_c + i_c)
        z = v_c > 0.2
        assert torch.equal(res["cuba"][t], z.double())
        v_c = torch.where(z, 0.0, v_c)
    assert res["if"].sum() > 0 and res["lif"].sum() > 0 and res["cuba"].sum() > 0
    torch.testing.assert_close(res["output"], res["if"] + res["lif"] + res["li"]
                               + res["cuba"])
    # and back through cf2neuro's export: the same graph
    again = from_nir(to_nir(g))
    assert again.equals(g)


def test_user_dt_overrides_the_graphs_and_is_checked():
    nodes = {"in": nir.Input(input_type=np.array([1])),
             "li": nir.LI(tau=np.ones(1), r=np.ones(1), v_leak=np.zeros(1)),
             "out": nir.Output(output_type=np.array([1]))}
    ng = nir.NIRGraph(nodes, [("in", "li"), ("li", "out")], metadata={"dt": 0.5})
    assert from_nir(ng).meta["dt"] == 0.5
    assert from_nir(ng, dt=0.25).meta["dt"] == 0.25
    with pytest.raises(BadInputError, match="dt"):
        from_nir(ng, dt=-1)


def test_conv_input_shape_may_be_missing_and_is_checked_when_given(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)

    def graph(input_shape):
        nodes = {"in": nir.Input(input_type=np.array([2, 6, 6])),
                 "conv": nir.Conv2d(input_shape=input_shape, weight=w, stride=2,
                                    padding="same", dilation=1, groups=1,
                                    bias=np.zeros(3, np.float32)),
                 "pool": nir.AvgPool2d(kernel_size=np.array([3, 3]), stride=np.array([3, 3]),
                                       padding=np.array([0, 0])),
                 "flat": nir.Flatten(input_type=None, start_dim=0),
                 "out": nir.Output(output_type=None)}
        edges = [("in", "conv"), ("conv", "pool"), ("pool", "flat"), ("flat", "out")]
        return nir.NIRGraph(nodes, edges, type_check=False)

    g = from_nir(graph(None))
    assert g["conv"].shape == (3, 3, 3) and g["conv"].attrs["padding"] == [1, 1]
    assert g["out"].shape == (3,)
    x = torch.randn(2, 2, 2, 6, 6)
    expect = F.avg_pool2d(F.conv2d(x.flatten(0, 1), torch.from_numpy(w), stride=2,
                                   padding=1), 3).flatten(1).unflatten(0, (2, 2))
    torch.testing.assert_close(Engine(g).run(x)["output"], expect)
    assert from_nir(graph((6, 6)))["conv"].shape == (3, 3, 3)
    with pytest.raises(BadInputError, match="inconsistent shapes.*'conv'"):
        from_nir(graph((8, 8)))


def test_nested_subgraph_is_inlined():
    """snnTorch's import_from_nir wraps a recurrent LIF + weight into a nested NIRGraph."""
    rng = np.random.default_rng(2)
    lif = dict(tau=np.full(4, 1e-3), r=np.full(4, 10.0), v_leak=np.zeros(4),
               v_threshold=np.full(4, 0.3))
    sub = nir.NIRGraph({"input": nir.Input(input_type=np.array([4])), "lif": nir.LIF(**lif),
                        "w_rec": nir.Linear(weight=rng.normal(size=(4, 4))),
                        "output": nir.Output(output_type=np.array([4]))},
                       [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                        ("lif", "output")])
    fc = rng.normal(size=(4, 3))
    nested = nir.NIRGraph({"in": nir.Input(input_type=np.array([3])),
                           "fc": nir.Linear(weight=fc), "rnn": sub,
                           "out": nir.Output(output_type=np.array([4]))},
                          [("in", "fc"), ("fc", "rnn"), ("rnn", "out")], type_check=False)
    flat = nir.NIRGraph({"in": nir.Input(input_type=np.array([3])),
                         "fc": nir.Linear(weight=fc), "lif": nir.LIF(**lif),
                         "w_rec": nir.Linear(weight=sub.nodes["w_rec"].weight),
                         "out": nir.Output(output_type=np.array([4]))},
                        [("in", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"),
                         ("lif", "out")])
    g1, g2 = from_nir(nested, dt=1e-4), from_nir(flat, dt=1e-4)
    assert g1["rnn.lif"].op == "LIF" and g1["rnn.input"].op == "Identity"
    x = torch.rand(20, 2, 3) * 2
    out = Engine(g1).run(x)["output"]
    assert torch.equal(out, Engine(g2).run(x)["output"]) and out.sum() > 0


# --- bad input ---------------------------------------------------------------------

def small_graph():
    return nir.NIRGraph({"in": nir.Input(input_type=np.array([3])),
                         "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                         "out": nir.Output(output_type=np.array([2]))},
                        [("in", "fc"), ("fc", "out")])


def test_a_file_that_is_not_nir(tmp_path):
    text = tmp_path / "notes.nir"
    text.write_text("this is not a NIR graph\n")
    with pytest.raises(BadInputError, match="not a NIR file"):
        from_nir(text)
    h5 = tmp_path / "other.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("data", data=np.arange(3))
    with pytest.raises(BadInputError, match="not a NIR graph"):
        from_nir(h5)
    with pytest.raises(BadInputError, match="does not exist"):
        from_nir(tmp_path / "missing.nir")


def test_an_unknown_node_type(tmp_path):
    path = tmp_path / "g.nir"
    nir.write(path, small_graph())
    with h5py.File(path, "r+") as f:  # a node type from the future
        del f["node/nodes/fc/type"]
        f["node/nodes/fc"].create_dataset("type", data="Spiral", dtype=h5py.string_dtype())
    with pytest.raises(BadInputError, match="node 'fc' has an unknown node type 'Spiral'"):
        from_nir(path)


def test_a_nir_type_cf2neuro_does_not_import(tmp_path):
    ng = small_graph()
    ng.nodes["integ"] = nir.I(r=np.ones(2))
    ng.edges = [("in", "fc"), ("fc", "integ"), ("integ", "out")]
    path = tmp_path / "g.nir"
    nir.write(path, ng)
    with pytest.raises(BadInputError, match="'integ'.*does not import 'I'"):
        from_nir(path)
    with pytest.raises(BadInputError, match="'integ'.*unsupported NIR type I"):
        from_nir(ng)


def test_inconsistent_shapes(tmp_path):
    nodes = {"in": nir.Input(input_type=np.array([3])),
             "fc": nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
             "out": nir.Output(output_type=np.array([2]))}
    path = tmp_path / "g.nir"
    nir.write(path, nir.NIRGraph(nodes, [("in", "fc"), ("fc", "out")], type_check=False))
    with pytest.raises(BadInputError, match="inconsistent graph.*'fc'.*in-features 4"):
        from_nir(path)
    nodes = {"in": nir.Input(input_type=np.array([3])),
             "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
             "out": nir.Output(output_type=np.array([5]))}
    with pytest.raises(BadInputError, match="inconsistent shapes.*'out'"):
        from_nir(nir.NIRGraph(nodes, [("in", "fc"), ("fc", "out")], type_check=False))


def test_a_graph_with_no_input(tmp_path):
    nodes = {"fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
             "out": nir.Output(output_type=np.array([2]))}
    path = tmp_path / "g.nir"
    nir.write(path, nir.NIRGraph(nodes, [("fc", "out")], type_check=False))
    with pytest.raises(BadInputError, match="has no Input node"):
        from_nir(path)
