"""The model zoo: shapes, gradients, config round trips, fx tracing, errors."""

import json
import operator

import pytest
import torch
import torch.fx as fx

from cf2neuro.errors import ConfigError
from cf2neuro.nn import LIF_BASELINE, CFNeuron
from cf2neuro.nn.models import (MODELS, SpikingSelfAttention, build_model, default_config,
                                model_names)

T, B = 2, 2

# Every registered model at a size that runs in well under a second on CPU.
SMALL = {
    "mlp": {"hidden": [16, 16]},
    "vgg-small": {"channels": [4, "A", 8, "A"], "fc_hidden": [8], "dropout": 0.1},
    "vgg11": {"width": 1 / 16, "input_shape": [2, 32, 32], "fc_hidden": [16]},
    "resnet-small": {"stem": 4, "channels": [4, 8]},
    "resnet19": {"width": 1 / 16, "input_shape": [2, 16, 16]},
    "spikformer": {"embed_dim": 16, "heads": 2, "depth": 1, "patch_channels": [8]},
}


def small(name, **extra):
    torch.manual_seed(0)
    return build_model(name, {"timesteps": T, **SMALL[name], **extra})


def sample(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(T, B, *model.config["input_shape"], generator=g)


def cf_layers(model):
    return [m for m in model.modules() if isinstance(m, CFNeuron)]


class LeafTracer(fx.Tracer):
    """CFNeuron runs an autograd.Function over T: the IR traces it as one node."""

    def __init__(self, leaves):
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m, qualname):
        return isinstance(m, self.leaves) or super().is_leaf_module(m, qualname)


def trace(model, leaves=(CFNeuron,)):
    return fx.GraphModule(model, LeafTracer(leaves).trace(model))


def test_registry_lists_every_model():
    assert model_names() == sorted(SMALL) == sorted(MODELS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_output_is_per_step_readout(name):
    m = small(name)
    y = m(sample(m))
    assert y.shape == (T, B, 10) and y.dtype == torch.float32
    assert not isinstance(list(m.modules())[-1], CFNeuron)  # readout has no neuron
    assert len(cf_layers(m)) >= 2


@pytest.mark.parametrize("name", sorted(SMALL))
def test_gradient_reaches_first_layer_and_every_alpha(name):
    m = small(name).train()
    m(sample(m)).square().mean().backward()
    first = next(x for x in m.modules() if isinstance(x, (torch.nn.Linear, torch.nn.Conv2d)))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    for i, cf in enumerate(cf_layers(m)):
        g = cf.alpha.rho.grad
        assert g is not None and g.shape == (T,) and g.abs().sum() > 0, f"CF layer {i}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_config_round_trip_rebuilds_identical_model(name):
    m = small(name).eval()
    cfg = json.loads(json.dumps(m.config))  # what config.json gives back
    assert cfg == m.config and cfg["name"] == name
    torch.manual_seed(123)  # different init, then the weights are loaded
    m2 = build_model(cfg["name"], cfg)
    m2.load_state_dict(m.state_dict())
    m2.eval()
    assert m2.config == m.config
    x = sample(m)
    assert torch.equal(m(x), m2(x))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_fx_trace_matches_model(name):
    m = small(name).eval()
    x = sample(m)
    expected = m(x)
    for leaves in [(CFNeuron,), (CFNeuron, SpikingSelfAttention)]:
        gm = trace(m, leaves)
        assert torch.equal(gm(x), expected)
        cfs = [n for n in gm.graph.nodes if n.op == "call_module"
               and isinstance(gm.get_submodule(n.target), CFNeuron)]
        assert len(cfs) == len(cf_layers(m))


@pytest.mark.parametrize("name,adds", [("resnet19", 8), ("resnet-small", 2), ("spikformer", 3)])
def test_residual_adds_are_graph_nodes(name, adds):
    gm = trace(small(name), (CFNeuron, SpikingSelfAttention))
    found = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is operator.add]
    assert len(found) == adds


def test_spiking_self_attention_is_qkt_v_times_scale_per_head():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randint(-1, 2, (T, B, 5, 6), generator=g).float() for _ in range(3))
    out = SpikingSelfAttention(heads=2, scale=0.125)(q, k, v)
    heads = [(q[..., h:h + 3] @ k[..., h:h + 3].transpose(-2, -1)) @ v[..., h:h + 3] * 0.125
             for h in (0, 3)]
    assert torch.equal(out, torch.cat(heads, -1))  # exact: integer spikes


def test_lif_baseline_gives_binary_spikes_everywhere():
    m = small("resnet-small", neuron=LIF_BASELINE)
    seen = []
    for cf in cf_layers(m):
        assert cf.config.max_spikes == 1 and not cf.config.signed
        cf.register_forward_hook(lambda mod, inp, out: seen.append(out))
    m(sample(m))
    assert len(seen) == len(cf_layers(m))
    assert all(set(s.unique().tolist()) <= {0.0, 1.0} for s in seen)


def test_default_configs_are_complete_and_json():
    for name in model_names():
        cfg = default_config(name)
        assert json.loads(json.dumps(cfg)) == cfg
        assert cfg["name"] == name and cfg["neuron"]["beta"] == 0.5  # CF defaults filled
    assert default_config("mlp")["hidden"] == [256, 256]
    assert default_config("vgg11")["input_shape"] == [3, 32, 32]


def test_parameter_counts_match_literature():
    n = sum(p.numel() for p in build_model("resnet19", {}).parameters())
    assert abs(n - 12.6e6) / 12.6e6 < 0.05, n
    vgg = build_model("vgg11", {})
    assert 9e6 < sum(p.numel() for p in vgg.parameters()) < 30e6
    assert vgg(torch.randn(1, 1, 3, 32, 32)).shape == (1, 1, 10)


def test_full_resnet19_forward_one_step():
    m = build_model("resnet19", {"timesteps": 1}).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 1, 3, 32, 32)).shape == (1, 1, 10)


def test_dvs_shapes_build_and_run():
    for shape in ([2, 48, 48], [2, 128, 128]):
        m = build_model("vgg11", {"input_shape": shape, "width": 1 / 32, "timesteps": 1})
        assert m(torch.randn(1, 1, *shape)).shape == (1, 1, 10)


@pytest.mark.parametrize("name,config,words", [
    ("resnet-50", {}, ["unknown model", "resnet19", "spikformer"]),
    ("vgg11", {"input_shape": [1, 8, 8]}, ["vgg11", "too small", "pools"]),
    ("resnet19", {"input_shape": [64]}, ["resnet19", "[C, H, W]"]),
    ("spikformer", {"input_shape": [3, 32]}, ["[C, H, W]"]),
    ("spikformer", {"input_shape": [1, 2, 2], "patch_pools": 2}, ["too small"]),
    ("mlp", {"input_shape": [1, -8]}, ["positive ints"]),
    ("mlp", {"input_shape": "1x8x8"}, ["input_shape"]),
    ("mlp", {"hiden": [4]}, ["unknown option", "hidden"]),
    ("mlp", {"name": "vgg11"}, ["vgg11", "mlp"]),
    ("mlp", {"neuron": {"tau": 2.0}}, ["tau"]),
    ("mlp", {"timesteps": 0}, ["timesteps"]),
    ("spikformer", {"embed_dim": 30, "heads": 4}, ["multiple of heads"]),
    ("resnet19", {"blocks": [3, 3]}, ["one count per stage"]),
    ("vgg-small", {"channels": [8, "X"]}, ["channels"]),
])
def test_bad_configs_raise_config_error(name, config, words):
    with pytest.raises(ConfigError) as e:
        build_model(name, config)
    for w in words:
        assert w in str(e.value)
