"""torch.fx tracing into the IR: every zoo model, layouts, and clear refusals."""

from collections import Counter

import pytest
import torch
from torch import nn

from cf2neuro.errors import BadInputError, UnsupportedError
from cf2neuro.ir import trace_model
from cf2neuro.ir.trace import MODULES
from cf2neuro.nn import CFNeuron, SeqToANN
from cf2neuro.nn.models import MODELS, build_model

SMALL = {
    "mlp": {"hidden": [16, 8], "dropout": 0.2},
    "vgg-small": {"width": 0.25},
    "vgg11": {"width": 1 / 16},
    "resnet-small": {"width": 0.25},
    "resnet19": {"width": 1 / 32, "blocks": [1, 1, 1]},
    "spikformer": {"embed_dim": 16, "heads": 2, "depth": 1, "patch_channels": [4, 8]},
}


def ops(graph) -> Counter:
    return Counter(n.op for n in graph.nodes.values())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_traces(name):
    model = build_model(name, SMALL[name])
    g = trace_model(model)
    counts = ops(g)
    cf_modules = [m for m in model.modules() if isinstance(m, CFNeuron)]
    assert counts["CFNeuron"] == len(cf_modules)
    assert counts["Input"] == 1 and counts["Output"] == 1
    assert g[g.inputs[0]].shape == tuple(model.config["input_shape"])
    assert g[g.outputs[0]].shape == (model.config["num_classes"],)
    assert g.meta["timesteps"] == model.config["timesteps"] and g.meta["name"] == name
    # the multi-step folding of SeqToANN leaves no trace in the IR
    assert not {"Reshape", "Unflatten"} & set(counts)


def test_resnet_and_spikformer_structure():
    g = trace_model(build_model("resnet-small", SMALL["resnet-small"]))
    assert ops(g)["Add"] == 2 and ops(g)["Identity"] == 1  # identity shortcut of block 1
    add = g["layers.3.add_1"]
    assert add.inputs == ["layers.3.conv2.module.1", "layers.3.shortcut.module.1"]
    s = trace_model(build_model("spikformer", SMALL["spikformer"]))
    att = s["blocks.0.ssa.attn"]
    assert att.op == "Attention" and att.attrs == {"heads": 2, "scale": 0.125}
    assert att.inputs == ["blocks.0.ssa.q_cf", "blocks.0.ssa.k_cf", "blocks.0.ssa.v_cf"]
    assert s["blocks.0.ssa.q.module.1"].attrs["axis"] == 1  # BN over tokens' features
    assert s["sps.transpose"].op == "Permute" and s["sps.transpose"].shape == (16, 16)
    assert ops(s)["Mean"] == 1 and ops(s)["Add"] == 3


def test_cf_attributes_and_parameters():
    model = build_model("mlp", {"hidden": [5], "neuron": {
        "learn_threshold": True, "beta": 0.75, "max_spikes": 3, "signed": False}})
    model.layers[2].threshold.data.fill_(1.375)
    g = trace_model(model)
    cf = g["layers.2"]
    assert cf.op == "CFNeuron" and cf.params == {}  # the surrogate's α is training-only
    assert cf.attrs == {"threshold": 1.375, "beta": 0.75, "max_spikes": 3, "signed": False,
                        "reset": "subtract"}
    assert cf.meta["class"] == "CFNeuron" and "mlp.py" in cf.meta["source"]
    fc = g["layers.1"]
    assert fc.op == "Linear" and fc.params["weight"].shape == (5, 64)
    assert (fc.params["weight"] == model.layers[1].weight.detach().numpy()).all()


def test_dropout_becomes_identity_and_training_flag_is_restored():
    model = build_model("mlp", SMALL["mlp"]).train()
    g = trace_model(model)
    assert [g[n].op for n in ("layers.3", "layers.6")] == ["Identity", "Identity"]
    assert model.training


def test_bn_uses_running_statistics():
    model = build_model("vgg-small", SMALL["vgg-small"])
    bn = model.layers[0].module[1]
    bn.running_mean.fill_(0.25)
    g = trace_model(model)
    assert (g["layers.0.module.1"].params["mean"] == 0.25).all()
    assert g["layers.0.module.1"].attrs == {"eps": bn.eps, "axis": 0}


class Plain(nn.Module):
    """A non-zoo model: flatten, scale by a constant, a linear layer, a CF layer."""

    def __init__(self, extra: nn.Module | None = None):
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.cf = CFNeuron(2)
        self.extra = extra

    def forward(self, x):
        y = self.cf(self.fc(x.flatten(2) * 0.5))
        return self.extra(y) if self.extra is not None else y


def test_non_zoo_model_needs_input_shape_and_maps_constants():
    with pytest.raises(UnsupportedError, match="input_shape"):
        trace_model(Plain())
    g = trace_model(Plain(), input_shape=[2, 3], dt=1e-3)
    assert [g[n].op for n in g.topological_order()] == [
        "Input", "Flatten", "Scale", "Linear", "CFNeuron", "Output"]
    assert g.meta["dt"] == 1e-3
    assert float(g[g.topological_order()[2]].params["scale"]) == 0.5


def test_unknown_module_names_module_class_and_line():
    with pytest.raises(UnsupportedError) as e:
        trace_model(Plain(SeqToANN(nn.GELU())), input_shape=[2, 3])
    msg = str(e.value)
    assert "extra.module" in msg and "GELU" in msg and "layers.py:" in msg
    assert isinstance(e.value, BadInputError) and "register" in msg


class Sigmoidal(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x)


def test_unknown_function_names_function_and_source_line():
    with pytest.raises(UnsupportedError) as e:
        trace_model(Sigmoidal(), input_shape=[4])
    assert "sigmoid" in str(e.value) and "test_trace.py:" in str(e.value)


class BadLayout(nn.Module):
    """Unflattens T and B in the wrong order: the converter must notice."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x.flatten(0, 1))
        return y.unflatten(0, (x.shape[1], x.shape[0]))


class NeuronOnFolded(nn.Module):
    def __init__(self):
        super().__init__()
        self.cf = CFNeuron(2)

    def forward(self, x):
        return self.cf(x.flatten(0, 1)).unflatten(0, (x.shape[0], x.shape[1]))


class FlattenBatch(nn.Module):
    def forward(self, x):
        return x.flatten(1)


@pytest.mark.parametrize("model, words", [
    (BadLayout(), ["unflatten", "not supported"]),
    (NeuronOnFolded(), ["'cf'", "CFNeuron", "multi-step"]),
    (FlattenBatch(), ["flatten", "batch"]),
])
def test_layout_misuse_is_refused(model, words):
    with pytest.raises(UnsupportedError) as e:
        trace_model(model, input_shape=[4])
    for w in words:
        assert w in str(e.value)


def test_registry_is_keyed_by_exact_type():
    class MyLinear(nn.Linear):  # a subclass may change forward: never mapped silently
        pass
    with pytest.raises(UnsupportedError, match="MyLinear"):
        trace_model(nn.Sequential(MyLinear(4, 2)), input_shape=[4])
    assert MODULES[nn.Linear] is not None
