"""Cross-check of the operation counts against NeuroBench 2.x SynapticOperations.

The same snnTorch MLP (Linear -> Leaky -> Linear -> Leaky, reset by
subtraction without delay, which is cf2neuro's CF neuron with K = 1, unsigned)
is run by NeuroBench's SNNTorchModel (its hooks on the Linear layers);
cf2neuro counts the same run from its probes (the input and each Leaky's
spikes, recorded with forward hooks) on a hand-built IR graph with the same
weights. (snnTorch's Leaky equals the CF neuron only while u < 2θ: with
reset_delay=False it still applies the delayed reset when the residue stays
above threshold, so the counts are taken from snnTorch's own spikes rather
than from a second simulation.) Effective_MACs (the analog-fed first layer) and Effective_ACs (the
spike-fed layer) are per sample, summed over steps: they must equal
cf2neuro's macs and synops totals exactly.
"""

import numpy as np
import pytest
import torch

import neurobench.metrics.workload as nb  # noqa: E402
import snntorch as snn  # noqa: E402
from neurobench.models import SNNTorchModel  # noqa: E402

from cf2neuro.energy import count_operations, needed_probes  # noqa: E402
from cf2neuro.ir.graph import Graph  # noqa: E402

BETA = 0.5


class Net(torch.nn.Module):
    def __init__(self, w1, w2):
        super().__init__()
        self.fc1 = torch.nn.Linear(w1.shape[1], w1.shape[0], bias=False)
        self.fc2 = torch.nn.Linear(w2.shape[1], w2.shape[0], bias=False)
        self.fc1.weight.data = torch.as_tensor(w1)
        self.fc2.weight.data = torch.as_tensor(w2)
        kw = dict(beta=BETA, threshold=1.0, reset_mechanism="subtract", reset_delay=False,
                  init_hidden=True)
        self.lif1 = snn.Leaky(**kw)
        self.lif2 = snn.Leaky(output=True, **kw)

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))


def ir_graph(w1, w2):
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [w1.shape[1]]})
    g.add_node("fc1", "Linear", ["x"], {"weight": w1})
    cf = {"threshold": 1.0, "beta": BETA, "max_spikes": 1, "signed": False}
    g.add_node("lif1", "CFNeuron", ["fc1"], attrs=cf)
    g.add_node("fc2", "Linear", ["lif1"], {"weight": w2})
    g.add_node("lif2", "CFNeuron", ["fc2"], attrs=cf)
    g.add_node("out", "Output", ["lif2"])
    return g.validate()


def neurobench_counts(net, data):
    """data [B, T, F] (NeuroBench's layout) -> SynapticOperations result."""
    model = SNNTorchModel(net)
    model.register_hooks()
    metric = nb.SynapticOperations()
    with torch.no_grad():
        preds = model(data)
    res = metric(model, preds, (data, torch.zeros(len(data))))
    model.cleanup_hooks()
    return res, preds


@pytest.mark.parametrize("binary_input", [False, True])
def test_counts_match_neurobench_exactly(binary_input):
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.35, (12, 10)).astype(np.float32)
    w2 = rng.normal(0, 0.6, (5, 12)).astype(np.float32)
    w1[rng.random(w1.shape) < 0.2] = 0.0      # sparse weights: synapses that do not exist
    w2[rng.random(w2.shape) < 0.2] = 0.0
    T, B = 6, 7
    x = rng.random((T, B, 10)).astype(np.float32) * 1.5
    x[rng.random(x.shape) < 0.3] = 0.0        # zero inputs are not operations
    if binary_input:
        x = (x > 0.7).astype(np.float32)

    net = Net(w1, w2)
    seen = []  # lif1's spikes as snnTorch computed them: the probe cf2neuro counts from
    hook = net.lif1.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    res, preds = neurobench_counts(net, torch.as_tensor(x).transpose(0, 1))
    hook.remove()
    run = {"x": x, "lif1": torch.stack(seen)}              # [T, B, 12]
    assert run["lif1"].sum() > 0 and run["lif1"].shape == (T, B, 12)
    g = ir_graph(w1, w2)
    assert needed_probes(g) == ["x", "lif1", "lif2"]
    run["lif2"] = preds.transpose(0, 1)
    c = count_operations(g, run).totals()
    if binary_input:
        assert res["Effective_MACs"] == 0 and c["macs"] == 0
    else:
        assert res["Effective_MACs"] > 0
    assert res["Effective_MACs"] == pytest.approx(c["macs"], abs=0, rel=1e-12)
    assert res["Effective_ACs"] == pytest.approx(c["synops"], abs=0, rel=1e-12)
    assert res["Dense"] == pytest.approx(c["dense_macs"], rel=1e-12)
