"""IR -> NIR export: CF as LIF/IF numbers, round trips of the zoo, Add, strict, refusals."""

import json
import logging

import nir
import numpy as np
import pytest
import torch

from cf2neuro.errors import BadInputError, UnsupportedError
from cf2neuro.ir import Graph
from cf2neuro.ir.engine import Engine
from cf2neuro.ir.numerics import FloatNumerics
from cf2neuro.ir.passes import run_passes
from cf2neuro.ir.trace import trace_model
from cf2neuro.nir import DEFAULT_DT, from_nir, to_nir, write_nir
from cf2neuro.nn.models import build_model

T, B = 4, 3

# Every exportable zoo model at a size that runs in about a second on CPU.
ZOO = {
    "mlp": {"hidden": [16, 16]},
    "vgg-small": {"channels": [4, "A", 8, "A"], "fc_hidden": [8]},
    "vgg11": {"width": 1 / 16, "input_shape": [2, 32, 32], "fc_hidden": [16]},
    "resnet-small": {"stem": 4, "channels": [4, 8]},
    "resnet19": {"width": 1 / 16, "input_shape": [2, 16, 16]},
}


def zoo_graph(name, **extra):
    """A traced + folded zoo model with non-trivial BN statistics and θ."""
    torch.manual_seed(0)
    model = build_model(name, {"timesteps": T, **ZOO[name], **extra})
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.3, 0.3)
    return model, run_passes(trace_model(model))


def inputs(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(T, B, *shape, generator=g)


def cf_names(g):
    return [n.name for n in g.nodes.values() if n.op == "CFNeuron"]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_round_trip_executes_identically(name, tmp_path):
    model, g = zoo_graph(name)
    x = inputs(model.config["input_shape"])
    probes = cf_names(g)
    before = Engine(g).run(x, probes=probes + [f"v:{p}" for p in probes])
    path = tmp_path / f"{name}.nir"
    write_nir(g, path)
    back = from_nir(path)
    after = Engine(back).run(x, probes=probes + [f"v:{p}" for p in probes])
    for k in before:  # output, every CF layer's spikes and membrane: bit for bit
        assert torch.equal(before[k], after[k]), k
    assert any(before[p].abs().sum() > 0 for p in probes)  # the network does spike
    # The graph itself comes back exactly, plus the dt it was written with.
    g.meta["dt"] = DEFAULT_DT
    assert back.equals(g)


def test_cf_layer_is_written_as_nir_lif_with_per_neuron_arrays():
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.eye(3, dtype=np.float32)})
    g.add_node("cf", "CFNeuron", ["fc"], attrs={"threshold": 0.75, "beta": 0.8,
                                                "max_spikes": 3, "signed": True})
    g.add_node("if", "CFNeuron", ["cf"], attrs={"threshold": 2.0, "beta": 1.0,
                                                "max_spikes": 1, "signed": False})
    g.add_node("out", "Output", ["if"])
    ng = to_nir(g)
    assert ng.metadata["dt"] == 1e-3
    lif, if_ = ng.nodes["cf"], ng.nodes["if"]
    assert isinstance(lif, nir.LIF) and isinstance(if_, nir.IF)
    # τ = dt/(1-β), r = τ/dt = 1/(1-β): unit input gain; v_leak = 0, v_reset = 0.
    np.testing.assert_allclose(lif.tau, np.full(3, 1e-3 / 0.2))
    np.testing.assert_allclose(lif.r, np.full(3, 5.0))
    np.testing.assert_array_equal(lif.v_leak, np.zeros(3))
    np.testing.assert_array_equal(lif.v_threshold, np.full(3, 0.75))
    np.testing.assert_array_equal(lif.v_reset, np.zeros(3))
    assert lif.metadata == {"cf2neuro.neuron": "circulate_firing", "K": 3, "signed": True,
                            "reset": "subtract", "threshold": 0.75, "beta": 0.8}
    np.testing.assert_array_equal(if_.r, np.ones(3))
    np.testing.assert_array_equal(if_.v_threshold, np.full(3, 2.0))
    assert if_.metadata["K"] == 1 and if_.metadata["signed"] is False
    assert ng.edges == [("x", "fc"), ("fc", "cf"), ("cf", "if"), ("if", "out")]


def test_nir_lif_charge_equals_cf_charge():
    """Read as plain NIR (Euler with the file's dt), the LIF charges as u = β·v + x."""
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [5]})
    g.add_node("cf", "CFNeuron", ["x"], attrs={"threshold": 1e6, "beta": 0.6,
                                               "max_spikes": 1, "signed": True})
    g.add_node("out", "Output", ["cf"])
    plain = from_nir(to_nir(g, dt=2.5e-3), read_cf_metadata=False)
    assert plain["cf"].op == "LIF"
    x = inputs([5]).double()
    v_cf = Engine(g, FloatNumerics(torch.float64)).run(x, probes=["v:cf"])["v:cf"]
    v_nir = Engine(plain, FloatNumerics(torch.float64)).run(x, probes=["v:cf"])["v:cf"]
    torch.testing.assert_close(v_nir, v_cf, rtol=0, atol=1e-12)
    u, expect = torch.zeros(B, 5, dtype=torch.float64), []
    for t in range(T):  # by hand
        u = 0.6 * u + x[t]
        expect.append(u)
    torch.testing.assert_close(v_cf, torch.stack(expect), rtol=0, atol=1e-12)


def test_per_neuron_cf_parameters_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    g = Graph({"dt": 1e-4, "timesteps": T})
    g.add_node("x", "Input", attrs={"shape": [2, 5, 5]})
    g.add_node("conv", "Conv2d", ["x"], {"weight": rng.normal(size=(3, 2, 3, 3)).astype(
        np.float32)}, {"padding": [1, 1]})
    g.add_node("cf", "CFNeuron", ["conv"],
               {"threshold": rng.uniform(0.5, 1.5, (3, 1, 1)).astype(np.float32),
                "beta": rng.uniform(0.3, 0.9, (3, 5, 5)).astype(np.float32)},
               {"max_spikes": 3, "signed": True})
    g.add_node("pool", "SumPool2d", ["cf"], attrs={"kernel": [2, 2], "stride": [2, 2]})
    g.add_node("flat", "Flatten", ["pool"])
    g.add_node("fc", "Linear", ["flat"], {"weight": rng.normal(size=(4, 12)).astype(
        np.float32), "bias": rng.normal(size=4).astype(np.float32)})
    g.add_node("out", "Output", ["fc"])
    g.validate()
    path = tmp_path / "g.nir"
    ng = write_nir(g, path)
    assert ng.nodes["cf"].v_threshold.shape == (3, 5, 5)  # full per-neuron arrays
    assert ng.nodes["conv"].metadata["has_bias"] is False
    back = from_nir(path)
    assert back.equals(g)
    x = inputs([2, 5, 5])
    a, b = Engine(g).run(x, probes=["cf"]), Engine(back).run(x, probes=["cf"])
    assert torch.equal(a["output"], b["output"]) and torch.equal(a["cf"], b["cf"])
    assert a["cf"].abs().max() > 1  # graded spikes were exercised


def test_add_is_written_as_fan_in_and_read_back_as_the_same_add(tmp_path):
    _, g = zoo_graph("resnet-small")
    adds = [n for n in g.nodes.values() if n.op == "Add"]
    assert adds
    ng = to_nir(g)
    assert not any(isinstance(n, nir.Scale) for n in ng.nodes.values())
    for add in adds:
        (reader,) = g.consumers(add.name)
        assert add.name not in ng.nodes
        assert sorted(s for s, d in ng.edges if d == reader) == sorted(add.inputs)
        assert ng.nodes[reader].metadata["cf2neuro.add"] == add.name
    back = from_nir(ng)
    for add in adds:
        assert back[add.name].op == "Add" and back[add.name].inputs == add.inputs


def test_add_of_a_value_with_itself_goes_through_a_scale():
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [4]})
    g.add_node("fc", "Linear", ["x"], {"weight": np.eye(4, dtype=np.float32)})
    g.add_node("twice", "Add", ["fc", "fc", "x"])
    g.add_node("out", "Output", ["twice"])
    ng = to_nir(g, dt=1e-4)
    (scale,) = [k for k, n in ng.nodes.items() if isinstance(n, nir.Scale)]
    np.testing.assert_array_equal(ng.nodes[scale].scale, np.full(4, 2.0))
    x = inputs([4])
    torch.testing.assert_close(Engine(from_nir(ng)).run(x)["output"], 3 * x)


def test_recurrent_graph_round_trips_with_its_back_edge(tmp_path):
    rng = np.random.default_rng(1)
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc", "Linear", ["x"], {"weight": rng.normal(size=(6, 3)).astype(np.float32)})
    g.add_node("sum", "Add", ["fc", "rec"])
    g.add_node("lif", "LIF", ["sum"], {"tau": np.full(6, 5e-4), "r": np.full(6, 5.0),
                                       "v_leak": np.zeros(6), "v_threshold": np.full(6, 0.5)},
               {"reset": "subtract"})
    g.add_node("rec", "Linear", ["lif"], {"weight": rng.normal(size=(6, 6)).astype(
        np.float32)})
    g.add_node("out", "Output", ["lif"])
    g.validate()
    assert ("lif", "rec") in g.back_edges()
    ng = to_nir(g)
    assert ("rec", "lif") in ng.edges and ("lif", "rec") in ng.edges
    assert ng.nodes["lif"].metadata["reset"] == "subtract"
    back = from_nir(ng)
    assert ("lif", "rec") in back.back_edges()
    x = inputs([3])
    assert torch.equal(Engine(g).run(x)["output"], Engine(back).run(x)["output"])


def test_strict_refuses_cf_layers_and_says_why():
    _, g = zoo_graph("mlp")
    with pytest.raises(UnsupportedError) as e:
        to_nir(g, strict=True)
    msg = str(e.value)
    assert "--strict" in msg and "reset by subtraction" in msg and "negative spikes" in msg
    assert all(name in msg for name in cf_names(g))
    _, g = zoo_graph("mlp", neuron={"max_spikes": 4, "signed": False})
    with pytest.raises(UnsupportedError, match="graded spikes up to K=4"):
        to_nir(g, strict=True)


def test_strict_accepts_binary_reset_to_zero_lif(tmp_path):
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("lif", "LIF", ["x"], {"tau": np.full(2, 1e-3), "r": np.ones(2),
                                     "v_leak": np.zeros(2), "v_threshold": np.ones(2)})
    g.add_node("out", "Output", ["lif"])
    ng = to_nir(g, strict=True)
    assert ng.nodes["lif"].metadata == {}
    g["lif"].attrs["reset"] = "subtract"
    with pytest.raises(UnsupportedError, match="reset by subtraction"):
        to_nir(g, strict=True)


def test_non_strict_export_warns_what_other_consumers_get(caplog):
    _, g = zoo_graph("mlp")
    with caplog.at_level(logging.WARNING, logger="cf2neuro.nir.export"):
        to_nir(g)
    text = caplog.text
    assert "reset by subtraction" in text and "negative spikes" in text
    assert caplog.records and all(r.levelno == logging.WARNING for r in caplog.records)


def test_spikformer_is_refused_and_nothing_is_written(tmp_path):
    torch.manual_seed(0)
    model = build_model("spikformer", {"timesteps": 2, "embed_dim": 16, "heads": 2,
                                       "depth": 1, "patch_channels": [8]})
    g = run_passes(trace_model(model))
    path = tmp_path / "spikformer.nir"
    with pytest.raises(UnsupportedError, match="Attention.*no NIR primitive") as e:
        write_nir(g, path)
    assert "Spikformer cannot be exported" in str(e.value)
    assert isinstance(e.value, BadInputError)  # the CLI's exit code 2
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind


def test_unfolded_batchnorm_and_maxpool_are_refused():
    torch.manual_seed(0)
    model = build_model("vgg-small", {"timesteps": 2, "channels": [4, "M"]})
    g = trace_model(model)  # no passes: the BatchNorm is still there
    with pytest.raises(UnsupportedError, match="fold_batchnorm"):
        to_nir(g)
    with pytest.raises(UnsupportedError, match="max pooling"):
        to_nir(run_passes(g))


def test_metadata_survives_nir_write_and_read(tmp_path):
    """Only types that round-trip: str, bool, int, float, arrays, JSON strings."""
    _, g = zoo_graph("vgg-small")
    path = tmp_path / "g.nir"
    write_nir(g, path, dt=5e-4)
    ng = nir.read(path)
    assert float(ng.metadata["dt"]) == 5e-4
    assert json.loads(ng.metadata["cf2neuro.order"]) == list(to_nir(g).nodes)
    cf = ng.nodes[cf_names(g)[0]]
    assert cf.metadata["cf2neuro.neuron"] == "circulate_firing"
    assert bool(cf.metadata["signed"]) is True and int(cf.metadata["K"]) == 1
    assert from_nir(path).meta["dt"] == 5e-4


def test_grouped_non_square_conv_round_trips(tmp_path):
    """nir 1.0.8 types a Conv2d's input with weight.shape[1] channels and a square kernel;
    the exporter states the IR's shapes, so grouped and non-square convolutions survive."""
    import numpy as np

    from cf2neuro.ir import Graph
    from cf2neuro.ir.engine import Engine
    from cf2neuro.nir import from_nir, write_nir

    rng = np.random.default_rng(0)
    g = Graph({"dt": 1e-4})
    g.add_node("x", "Input", attrs={"shape": [4, 6, 5]})
    g.add_node("c", "Conv2d", ["x"], params={"weight": rng.normal(0, 1, (8, 2, 3, 1))
                                             .astype(np.float32)},
               attrs={"groups": 2, "padding": [1, 0]})
    g.add_node("n", "CFNeuron", ["c"])
    g.add_node("y", "Output", ["n"])
    write_nir(g.validate(), tmp_path / "g.nir")
    h = from_nir(tmp_path / "g.nir")
    assert h["c"].attrs["groups"] == 2 and h["c"].shape == (8, 6, 5)
    x = rng.normal(0, 1, (3, 2, 4, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(Engine(h).run(x)["output"].numpy(),
                                  Engine(g).run(x)["output"].numpy())
