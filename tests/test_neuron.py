"""The CF neuron against hand-computed traces, snnTorch, and its smooth proxy."""

import math

import pytest
import torch

from cf2neuro.errors import ConfigError
from cf2neuro.nn import BUMPS, CFNeuron, CFParameters, Sharpness, cf_multistep, cf_step
from cf2neuro.nn import functional as cff


def run(x, **cfg):
    """Spikes of a CF layer for a 1-neuron input sequence."""
    layer = CFNeuron(len(x), **cfg)
    return layer(torch.tensor(x, dtype=torch.float64).reshape(-1, 1, 1)).flatten().tolist()


# --- forward: hand-computed cases ------------------------------------------------

def test_signed_ternary_if():
    # beta 1: u = 0.625, 1.25 -> spike, residue 0.25; -1.5 -> u -1.25 -> -1, residue -0.25
    assert run([0.625, 0.625, -1.5, 0.125], beta=1.0) == [0, 1, -1, 0]


def test_graded_spikes_clip_at_k_and_keep_residue():
    # K = 2: u = 3.75 -> trunc 3, clipped to 2, v = 1.75; next u = 1.75 -> 1, v = 0.75;
    # then u = 0.75 - 6 = -5.25 -> -5 clipped to -2, v = -3.25; then -3.25 -> -2 (clip)
    assert run([3.75, 0.0, -6.0, 0.0], beta=1.0, max_spikes=2) == [2, 1, -2, -2]


def test_unsigned_never_fires_negative_and_leaks():
    # beta 0.5: u = -2.5 (no spike), then 0.5 * -2.5 + 3 = 1.75 -> 1, v = 0.75,
    # then 0.375 + 0.5 = 0.875 -> 0
    assert run([-2.5, 3.0, 0.5], beta=0.5, signed=False) == [0, 1, 0]


def test_threshold_scales_levels():
    # theta 0.5, K 4, beta 1: u = 1.3 -> trunc(2.6) = 2, v = 0.3; u = 0.3 + 0.25 = 0.55 -> 1
    assert run([1.3, 0.25], beta=1.0, max_spikes=4, threshold=0.5) == [2, 1]


def test_cf_step_membrane_trace():
    p = CFParameters(beta=0.5, max_spikes=1, signed=True)
    v = torch.zeros(1)
    trace = []
    for x in (0.75, 0.75, -2.0):
        n, v, u = cf_step(v, torch.tensor([x]), 1.0, p)
        trace.append((u.item(), n.item(), v.item()))
    # u1 = 0.75; u2 = 0.375 + 0.75 = 1.125 -> 1, v 0.125; u3 = 0.0625 - 2 = -1.9375 -> -1
    assert trace == [(0.75, 0.0, 0.75), (1.125, 1.0, 0.125), (-1.9375, -1.0, -0.9375)]


def test_state_resets_between_calls():
    layer = CFNeuron(2, beta=1.0)
    x = torch.full((2, 1, 1), 0.75)
    first, second = layer(x), layer(x)
    assert first.flatten().tolist() == second.flatten().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("bad", [dict(beta=0.0), dict(beta=1.5), dict(max_spikes=0),
                                 dict(threshold=-1.0), dict(surrogate="gauss"),
                                 dict(alpha_init=0.5, alpha_floor=1.0), dict(typo=1)])
def test_bad_neuron_options_are_config_errors(bad):
    with pytest.raises(ConfigError):
        CFNeuron(4, **bad)


# --- the LIF baseline against snnTorch -------------------------------------------

def _snntorch_spikes(x, beta, reset_delay):
    import snntorch as snn
    leaky = snn.Leaky(beta=beta, threshold=1.0, reset_mechanism="subtract",
                      reset_delay=reset_delay)
    mem = leaky.reset_mem()
    out = []
    for t in range(x.shape[0]):
        spk, mem = leaky(x[t], mem)
        out.append(spk)
    return torch.stack(out)


def test_k1_unsigned_equals_snntorch_leaky_without_reset_delay():
    torch.manual_seed(0)
    # inputs below 2 theta - (leaked residue), the regime where both reset once per step
    x = torch.rand(20, 64, 50) * 1.2
    ours = CFNeuron(20, beta=0.8, max_spikes=1, signed=False)(x)
    theirs = _snntorch_spikes(x, 0.8, reset_delay=False)
    assert ours.sum() > 1000  # a real test: many spikes
    assert torch.equal(ours, theirs)


def test_snntorch_default_reset_delay_differs():
    # reset_delay=True subtracts one step later, undecayed (documented in the README)
    torch.manual_seed(0)
    x = torch.rand(20, 64, 50) * 1.2
    ours = CFNeuron(20, beta=0.8, max_spikes=1, signed=False)(x)
    theirs = _snntorch_spikes(x, 0.8, reset_delay=True)
    match = (ours == theirs).float().mean().item()
    assert 0.5 < match < 0.9


# --- surrogate gradients against the smooth proxy --------------------------------

def proxy(u, alpha, theta, k_max, signed, shape):
    """p(u) = sum_k F(alpha(u - k theta)) - signed * F(alpha(-u - k theta)), F = CDF of the bump."""
    cdf = {
        "sigmoid": torch.sigmoid,
        "atan": lambda z: torch.atan(0.5 * math.pi * z) / math.pi + 0.5,
        "triangle": lambda z: torch.where(z < 0, 0.5 * torch.clamp(1 + z, min=0) ** 2,
                                          1 - 0.5 * torch.clamp(1 - z, min=0) ** 2),
        "rectangle": lambda z: torch.clamp(z + 0.5, 0, 1),
    }[shape]
    p = sum(cdf(alpha * (u - k * theta)) for k in range(1, k_max + 1))
    if signed:
        p = p - sum(cdf(alpha * (-u - k * theta)) for k in range(1, k_max + 1))
    return p


def straight_through(x, alpha, theta, p: CFParameters, us: list | None = None):
    """Independent reference in plain autograd: staircase forward, proxy gradient.
    Appends each step's membrane u to `us` when given."""
    v = torch.zeros_like(x[0])
    out = []
    for t in range(x.shape[0]):
        u = p.beta * v + x[t]
        if us is not None:
            us.append(u)
        stair = torch.clamp(torch.trunc(u / theta), p.lowest, p.max_spikes).detach()
        smooth = proxy(u, alpha[t], theta, p.max_spikes, p.signed, p.surrogate)
        n = stair + (smooth - smooth.detach())
        out.append(n)
        if p.reset == "zero":  # v = u·[n = 0]; without detach, dv/dn = -u (snnTorch's form)
            keep = (stair == 0).to(u.dtype)
            v = u * keep if p.detach_reset else u * keep - u.detach() * (n - n.detach())
        else:
            v = u - (n.detach() if p.detach_reset else n) * theta
    return torch.stack(out)


def fused_grads(x, alpha, theta, p, gout):
    x, alpha, theta = (t.detach().clone().requires_grad_() for t in (x, alpha, theta))
    out, _, _ = cf_multistep(x, alpha, theta, p)
    out.backward(gout)
    return out, x.grad, alpha.grad, theta.grad


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("shape", sorted(BUMPS))
@pytest.mark.parametrize("k_max,signed,detach", [(1, True, True), (3, True, False),
                                                 (2, False, True), (1, False, False)])
def test_fused_backward_equals_straight_through_autograd(shape, k_max, signed, detach, reset):
    torch.manual_seed(1)
    p = CFParameters(beta=0.7, max_spikes=k_max, signed=signed, detach_reset=detach,
                     surrogate=shape, reset=reset)
    x = torch.randn(5, 3, 7, dtype=torch.float64) * 2
    alpha = torch.tensor([4.0, 3.0, 2.5, 5.0, 1.5], dtype=torch.float64)
    theta = torch.tensor(0.9, dtype=torch.float64)
    gout = torch.randn_like(x)
    out, gx, ga, gt = fused_grads(x, alpha, theta, p, gout)

    xr, ar, tr = (t.clone().requires_grad_() for t in (x, alpha, theta))
    ref = straight_through(xr, ar, tr, p)
    ref.backward(gout)
    assert torch.equal(out, ref.detach())
    torch.testing.assert_close(gx, xr.grad)
    torch.testing.assert_close(ga, ar.grad)
    torch.testing.assert_close(gt, tr.grad)


def test_reset_to_zero_forgets_the_residue_that_subtraction_keeps():
    """Hand-computed: θ = 1, β = 1, K = 2, input 1.5 each step."""
    x = torch.full((3, 1), 1.5)
    sub = CFNeuron(3, beta=1.0, max_spikes=2, signed=False)(x)[:, 0].tolist()
    zero = CFNeuron(3, beta=1.0, max_spikes=2, signed=False, reset="zero")(x)[:, 0].tolist()
    assert sub == [1.0, 2.0, 1.0]   # u = 1.5, 2.0 (0.5 kept), 1.5: the residue carries on
    assert zero == [1.0, 1.0, 1.0]  # u = 1.5 every step: v = 0 after each spike


@pytest.mark.parametrize("k_max,detach", [(1, True), (3, False)])
def test_long_window_runs_in_chunks_with_the_same_gradients(k_max, detach):
    # T = 11 runs as chunks of 4, 4 and 3 steps: the state, dL/dv and the PN
    # loss's terms must cross the chunk borders as in one unrolled window.
    steps = 11
    assert [c.stop - c.start for c in cff._chunks(steps)] == [4, 4, 3]
    torch.manual_seed(5)
    p = CFParameters(beta=0.7, max_spikes=k_max, signed=True, detach_reset=detach)
    x = torch.randn(steps, 3, 7, dtype=torch.float64) * 2
    alpha = torch.linspace(1.5, 5.0, steps, dtype=torch.float64)
    theta = torch.tensor(0.9, dtype=torch.float64)
    gout = torch.randn_like(x)

    def loss(out, pos, neg):
        return (out * gout).sum() + 3.0 * pos - 2.0 * neg

    xf, af, tf = (t.clone().requires_grad_() for t in (x, alpha, theta))
    out, pos, neg = cf_multistep(xf, af, tf, p, record=True)
    loss(out, pos, neg).backward()

    xr, ar, tr = (t.clone().requires_grad_() for t in (x, alpha, theta))
    us = []
    ref = straight_through(xr, ar, tr, p, us)
    u = torch.stack(us)
    ref_pos, ref_neg = torch.relu(u).mean(), torch.relu(-u).mean()
    loss(ref, ref_pos, ref_neg).backward()

    assert torch.equal(out, ref.detach())
    torch.testing.assert_close((pos, neg), (ref_pos.detach(), ref_neg.detach()))
    torch.testing.assert_close(xf.grad, xr.grad)
    torch.testing.assert_close(af.grad, ar.grad)
    torch.testing.assert_close(tf.grad, tr.grad)


@pytest.mark.parametrize("shape", sorted(BUMPS))
def test_surrogate_matches_finite_differences_of_proxy(shape):
    # One step (u = x): d n / d(x, alpha, theta) must be the derivative of p.
    torch.manual_seed(2)
    p = CFParameters(beta=1.0, max_spikes=2, signed=True, surrogate=shape)
    x = torch.randn(1, 40, dtype=torch.float64) * 1.5
    alpha = torch.tensor([3.0], dtype=torch.float64)
    theta = torch.tensor(0.8, dtype=torch.float64)
    _, gx, ga, gt = fused_grads(x, alpha, theta, p, torch.ones_like(x))

    def f(x_, a_, t_):
        return proxy(x_, a_, t_, 2, True, shape)

    eps = 1e-6
    num_x = (f(x + eps, alpha, theta) - f(x - eps, alpha, theta)) / (2 * eps)
    num_a = ((f(x, alpha + eps, theta) - f(x, alpha - eps, theta)) / (2 * eps)).sum()
    num_t = ((f(x, alpha, theta + eps) - f(x, alpha, theta - eps)) / (2 * eps)).sum()
    torch.testing.assert_close(gx, num_x, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(ga[0], num_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gt, num_t, atol=1e-5, rtol=1e-5)


def test_bumps_have_unit_area():
    z = torch.linspace(-2000, 2000, 4_000_001, dtype=torch.float64)  # atan has long tails
    for name, bump in BUMPS.items():
        area = torch.trapezoid(bump(z), z).item()
        assert area == pytest.approx(1.0, abs=2e-3), name


def test_window_gradient_is_the_derivative_of_the_proxy_network():
    # With a detached reset, the surrogate gradient over a whole window is the
    # exact derivative of the network that outputs p(u_t) and resets by the
    # staircase: gradcheck holds that network to finite differences.
    p = CFParameters(beta=0.6, max_spikes=2, signed=True, detach_reset=True)

    def proxy_network(x, alpha, theta):
        v, outs = torch.zeros_like(x[0]), []
        for t in range(x.shape[0]):
            u = p.beta * v + x[t]
            outs.append(proxy(u, alpha[t], theta, 2, True, "sigmoid"))
            v = u - torch.clamp(torch.trunc(u / theta), -2, 2).detach() * theta
        return torch.stack(outs)

    torch.manual_seed(4)
    x = (torch.randn(3, 6, dtype=torch.float64) * 1.5).requires_grad_()
    alpha = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(proxy_network, (x, alpha, theta))

    gout = torch.randn(3, 6, dtype=torch.float64)
    proxy_network(x, alpha, theta).backward(gout)
    _, gx, ga, gt = fused_grads(x, alpha, theta, p, gout)
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(ga, alpha.grad)
    torch.testing.assert_close(gt, theta.grad)


# --- alpha_t: per step, learnable, floored ----------------------------------------

def test_each_alpha_t_gets_its_own_gradient_and_moves():
    torch.manual_seed(0)
    layer = CFNeuron(4, max_spikes=1, signed=True)
    readout = torch.nn.Linear(16, 3)
    x = torch.randn(4, 32, 16)
    y = torch.randint(0, 3, (32,))
    opt = torch.optim.Adam(list(layer.parameters()) + list(readout.parameters()), lr=0.05)
    before = layer.alpha(4).detach().clone()
    loss = torch.nn.functional.cross_entropy(readout(layer(x)).mean(0), y)
    loss.backward()
    grads = layer.alpha.rho.grad.clone()
    assert torch.all(grads != 0) and len(set(grads.tolist())) == 4
    for _ in range(20):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(readout(layer(x)).mean(0), y).backward()
        opt.step()
    after = layer.alpha(4).detach()
    assert torch.all((after - before).abs() > 1e-3)


def test_alpha_stays_above_floor_and_longer_windows_reuse_the_last():
    sharp = Sharpness(3, init=4.0, floor=1.0)
    with torch.no_grad():
        sharp.rho.copy_(torch.tensor([-80.0, 0.0, 2.0]))
    alpha = sharp(5)
    assert alpha[0] >= 1.0 and alpha[0] < 1.0 + 1e-6
    assert alpha[3] == alpha[2] == alpha[4]
    assert Sharpness(3, init=4.0)(3).tolist() == pytest.approx([4.0] * 3)


def test_fixed_alpha_is_a_buffer():
    layer = CFNeuron(4, learn_alpha=False)
    assert not any(n.startswith("alpha") for n, _ in layer.named_parameters())
    assert "alpha.rho" in layer.state_dict()


def test_learnable_threshold_gets_gradient():
    layer = CFNeuron(3, learn_threshold=True, threshold=0.7)
    x = torch.randn(3, 8, 5) * 2
    layer(x).sum().backward()
    assert layer.threshold.grad is not None and layer.threshold.grad != 0


# --- compiled kernels --------------------------------------------------------------

@pytest.mark.parametrize("k_max,signed", [(1, True), (3, False)])
def test_compiled_kernels_equal_eager(k_max, signed):
    # T = 10 runs as chunks of 4, 4 and 2 steps: the state crosses kernel calls.
    torch.manual_seed(3)
    x = torch.randn(10, 2, 300) * 2
    gout = torch.randn_like(x)
    results = []
    for compiled in (False, True):
        cff.compile_kernels(compiled)
        try:
            layer = CFNeuron(10, max_spikes=k_max, signed=signed, learn_threshold=True)
            xi = x.clone().requires_grad_()
            out = layer(xi)
            out.backward(gout)
            results.append((out, xi.grad, layer.alpha.rho.grad, layer.threshold.grad))
        finally:
            cff.compile_kernels(False)
    (o1, g1, a1, t1), (o2, g2, a2, t2) = results
    assert torch.equal(o1, o2)
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(a1, a2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(t1, t2, rtol=1e-4, atol=1e-5)


def test_each_kernel_configuration_compiles_on_its_own():
    # Dynamo keeps a few graphs per code object, then silently runs eager.
    # Kernels of different configurations must not share one: with a limit of
    # one graph, a shared code object would fail on the second configuration.
    x = torch.randn(3, 2, 40)
    cff.compile_kernels(True)
    try:
        with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
            for k_max in (2, 3):
                layer = CFNeuron(3, max_spikes=k_max, beta=0.37, surrogate="triangle")
                layer(x.clone().requires_grad_()).sum().backward()
    finally:
        cff.compile_kernels(False)


@pytest.mark.parametrize("steps", [4, 10])  # one kernel; chunks of 4, 4, 2
@pytest.mark.parametrize("record", [False, True])
def test_neuron_compiles_without_graph_breaks(record, steps):
    layer = CFNeuron(steps)
    layer.record_pn = record
    explain = torch._dynamo.explain(layer)(torch.randn(steps, 2, 8))
    assert explain.graph_break_count == 0


def test_reduced_precision_input_keeps_dtype():
    layer = CFNeuron(2)
    out = layer(torch.randn(2, 4, 8).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
