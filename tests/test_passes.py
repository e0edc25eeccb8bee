"""Passes: each one exact (same outputs before and after), non-mutating, and
refusing with a reason where it is not valid."""

import numpy as np
import pytest
import torch

from cf2neuro.ir import (PASSES, Engine, Graph, IRError, fold_batchnorm, fold_thresholds,
                         remove_identities, run_passes, trace_model)
from test_engine import zoo_model


def same_run(a: Graph, b: Graph, x, exact_spikes=True):
    cfs = [n for n, node in a.nodes.items() if node.op == "CFNeuron" and n in b]
    ra, rb = Engine(a).run(x, probes=cfs), Engine(b).run(x, probes=cfs)
    assert torch.allclose(ra["output"], rb["output"], rtol=0, atol=1e-5)
    if exact_spikes:
        for n in cfs:
            assert torch.equal(ra[n], rb[n]), n


@pytest.mark.parametrize("name", ["resnet-small", "spikformer"])
@pytest.mark.parametrize("pass_", [fold_batchnorm, fold_thresholds, remove_identities])
def test_each_pass_is_exact_and_leaves_its_input_alone(name, pass_):
    model = zoo_model(name)
    g = trace_model(model)
    before = g.copy()
    h = pass_(g)
    assert g.equals(before)  # the input graph is not mutated
    x = torch.rand(3, 2, *model.config["input_shape"]) * 2
    same_run(g, h, x)


def test_fold_batchnorm_merges_every_conv_bn_pair():
    g = trace_model(zoo_model("resnet-small"))
    h = fold_batchnorm(g)
    assert not [n for n in h.nodes.values() if n.op == "BatchNorm"]
    conv = h["layers.0.module.0"]
    assert conv.meta["folded"] == ["layers.0.module.1"] and conv.params["bias"].shape == (8,)
    assert conv.params["weight"].dtype == np.float32
    assert h.consumers("layers.0.module.0") == ["layers.1"]


def bn_params(c, rng):
    return {"mean": rng.normal(size=c), "var": rng.uniform(0.5, 2, c),
            "weight": rng.uniform(0.5, 1.5, c), "bias": rng.normal(size=c)}


def test_fold_batchnorm_keeps_what_it_cannot_fold():
    rng = np.random.default_rng(1)
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [4]})
    g.add_node("fc", "Linear", ["x"], {"weight": rng.normal(size=(4, 4)).astype(np.float32)})
    g.add_node("bn1", "BatchNorm", ["fc"], bn_params(4, rng))   # fc is also read by "sum"
    g.add_node("sum", "Add", ["bn1", "fc"])
    g.add_node("bn2", "BatchNorm", ["sum"], bn_params(4, rng))  # after an Add
    g.add_node("out", "Output", ["bn2"])
    h = fold_batchnorm(g)
    assert {"bn1", "bn2"} <= set(h.nodes)
    same_run(g, h, torch.randn(2, 3, 4))


def test_fold_thresholds_sets_theta_to_one_where_valid():
    model = zoo_model("spikformer")
    g = fold_batchnorm(trace_model(model))
    h = fold_thresholds(g)
    cfs = [n for n in h.nodes.values() if n.op == "CFNeuron"]
    assert all(n.attrs["threshold"] == 1.0 for n in cfs)
    attn = h["blocks.0.ssa.attn"]
    assert attn.attrs["scale"] == 0.125 / 0.5  # Attention absorbs the 0.5 of attn_cf
    theta = g["sps.stages.1"].attrs["threshold"]
    assert h["sps.stages.1"].meta["theta_folded"] == theta
    w0, w1 = g["sps.stages.0.module.0"].params["weight"], h["sps.stages.0.module.0"].params[
        "weight"]
    assert np.allclose(w1, w0 / theta, rtol=1e-6)


def test_fold_thresholds_skips_identity_shortcut_with_reason():
    g = trace_model(zoo_model("resnet-small"))
    h = fold_thresholds(g)
    cf = h["layers.2.cf2"]  # its Add reads the spikes of layers.1 via an identity shortcut
    assert cf.attrs["threshold"] == g["layers.2.cf2"].attrs["threshold"] != 1.0
    assert "layers.1" in cf.meta["theta_fold_skipped"]
    assert h["layers.3.cf2"].attrs["threshold"] == 1.0  # conv shortcut: folded


def two_readers() -> Graph:
    rng = np.random.default_rng(2)
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc", "Linear", ["x"], {"weight": rng.normal(size=(5, 3)).astype(np.float32)})
    g.add_node("a", "CFNeuron", ["fc"], attrs={"threshold": 0.7})
    g.add_node("b", "CFNeuron", ["fc"], attrs={"threshold": 1.3})
    g.add_node("sum", "Add", ["a", "b"])
    g.add_node("c", "CFNeuron", ["sum"], attrs={"threshold": 0.6})
    g.add_node("out", "Output", ["c"])
    return g


def test_fold_thresholds_refuses_shared_producers_and_spike_inputs():
    g = two_readers()
    h = fold_thresholds(g)
    for n in ("a", "b", "c"):
        assert h[n].attrs["threshold"] == g[n].attrs["threshold"]
    assert "also feeds" in h["a"].meta["theta_fold_skipped"]
    assert "without an affine layer" in h["c"].meta["theta_fold_skipped"]
    same_run(g, h, torch.randn(4, 2, 3) * 2)


def test_per_neuron_theta_is_left_alone():
    g = two_readers()
    g["a"].params["threshold"] = np.full(5, 0.5, np.float32)
    h = fold_thresholds(g)
    assert "per-neuron" in h["a"].meta["theta_fold_skipped"]


def test_remove_identities_rewires_readers_in_a_loop():
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [2]})
    g.add_node("id0", "Identity", ["x"])
    g.add_node("sum", "Add", ["id0", "id1"])
    g.add_node("cf", "CFNeuron", ["sum"], attrs={"threshold": 1.0, "beta": 1.0})
    g.add_node("rec", "Scale", ["cf"], {"scale": np.float32(0.5)})
    g.add_node("id1", "Identity", ["rec"])
    g.add_node("out", "Output", ["cf"])
    h = remove_identities(g)
    assert "id0" not in h and "id1" not in h and h["sum"].inputs == ["x", "rec"]
    assert h.back_edges() == {("cf", "rec")}
    same_run(g, h, torch.rand(6, 2, 2) * 2)


def test_passes_check_invariants_and_are_registered():
    g = two_readers()
    g["fc"].inputs = ["ghost"]
    with pytest.raises(IRError, match="dangling"):
        fold_batchnorm(g)
    assert {"fold_batchnorm", "fold_thresholds", "remove_identities"} <= set(PASSES)
    model = zoo_model("vgg-small")
    g = trace_model(model)
    assert run_passes(g, ["fold_batchnorm"]).equals(fold_batchnorm(g))
