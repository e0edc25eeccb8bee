"""The PN balanced loss on hand-computed cases, and the task losses."""

import pytest
import torch

from cf2neuro.errors import ConfigError
from cf2neuro.losses import pn_balance_loss, recording_potentials, task_loss
from cf2neuro.nn import CFNeuron


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = CFNeuron(1, beta=1.0)
        self.b = CFNeuron(1, beta=1.0)

    def forward(self, xa, xb):
        return self.a(xa), self.b(xb)


def test_pn_loss_hand_computed():
    # T = 1, so u = x. Layer a: P = (1 + 2) / 4, N = 3 / 4 -> balanced, term 0.
    # Layer b: P = 2 / 2 = 1, N = 1 / 2 -> ((1 - 0.5) / 1.5)^2 = 1/9. Mean: 1/18.
    net = TwoLayers()
    xa = torch.tensor([1.0, -3.0, 2.0, 0.0]).reshape(1, 1, 4)
    xb = torch.tensor([2.0, -1.0]).reshape(1, 1, 2)
    with recording_potentials(net) as layers:
        net(xa, xb)
        loss = pn_balance_loss(layers, eps=0.0)
        assert [s.item() for s in net.a.pn] == pytest.approx([0.75, 0.75])
    assert loss.item() == pytest.approx(1 / 18)


def test_pn_loss_gradient_matches_hand_derivation():
    # One layer, u = x = [2, -1]: L = ((P - N) / (P + N))^2 with P = x0/2, N = -x1/2.
    # r = (x0 + x1) / (x0 - x1) = 1/3; dL/dx0 = 2r * (-2 x1) / (x0 - x1)^2 = 4/27,
    # dL/dx1 = 2r * (2 x0) / (x0 - x1)^2 = 8/27.
    layer = CFNeuron(1, beta=1.0)
    x = torch.tensor([2.0, -1.0]).reshape(1, 1, 2).requires_grad_()
    with recording_potentials(layer) as layers:
        layer(x)
        pn_balance_loss(layers, eps=0.0).backward()
    assert x.grad.flatten().tolist() == pytest.approx([4 / 27, 8 / 27])


def test_potentials_are_recorded_only_inside_the_context():
    layer = CFNeuron(2)
    layer(torch.randn(2, 3, 4))
    assert layer.pn is None and not layer.record_pn
    with recording_potentials(layer):
        layer(torch.randn(2, 3, 4))
        assert layer.pn is not None
    assert not layer.record_pn
    with pytest.raises(ConfigError):
        pn_balance_loss([layer])  # the last forward was outside the context


def test_task_losses():
    out = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])  # T=2, B=1, C=2
    y = torch.tensor([0])
    # ce: on the mean [1, 0]: -log(e / (e + 1))
    assert task_loss(out, y, "ce").item() == pytest.approx(-torch.log_softmax(
        torch.tensor([1.0, 0.0]), 0)[0].item())
    # tet: mean of the per-step cross-entropies
    per_step = [-torch.log_softmax(out[t, 0], 0)[0].item() for t in range(2)]
    assert task_loss(out, y, "tet").item() == pytest.approx(sum(per_step) / 2)
    with pytest.raises(ConfigError):
        task_loss(out, y, "mse")
