"""The circulate-firing (CF) neuron as pure functions (DESIGN §1).

Per neuron, with state v (v_0 = 0), threshold θ, decay β, K and signed:

    u_t = β·v_{t-1} + x_t
    n_t = clip(trunc(u_t / θ), -K·signed, K)
    v_t = u_t - n_t·θ          (reset="zero": v_t = u_t if n_t = 0, else 0)

`cf_step` is the one-step function that every engine (training module, float
IR engine, fixed-point emulator) shares or mirrors. `cf_multistep` is the
training path: a fused autograd function over the whole window whose
backward recomputes u from x instead of saving every step, with the
time-step-wise surrogate of `surrogate.py`. Windows longer than MAX_UNROLLED
steps run as chunks of CHUNK steps; both kernels run eagerly or, after
`compile_kernels(True)`, through `torch.compile`.
"""

from __future__ import annotations

import functools
import logging

import torch

from ..dynamics import CFParameters, cf_step, reset  # noqa: F401  (cf_step re-exported)
from .surrogate import bump

log = logging.getLogger(__name__)




# --- kernels over a flattened chunk of the window x: [Tc, N] ------------------
# Each call runs Tc steps from the state v it is given and returns the state
# after them; `_CFWindow` chains the calls. Inductor unrolls the time loop, so
# one kernel over a long window grows with T: at T = 32, K = 4 it compiled for
# 84 s and ran 15.9 ms (2^16 neurons); as chunks of 4 steps, 39 s and 13.4 ms,
# and the compile no longer grows with T. Windows up to 8 steps stay one
# kernel: joining chunk outputs costs a copy that only pays off beyond that.
# trunc(u / θ) is written torch.div(u, θ, rounding_mode="trunc"): the same
# numbers, but torch.trunc has no vectorized CPU kernel (10x slower).

MAX_UNROLLED = 8  # windows up to this many steps run as one kernel
CHUNK = 4         # longer windows run in chunks of this many steps


def _unroll(x, v, theta, beta: float, hi: int, signed: bool, zero: bool):
    """The forward recurrence over x: [Tc, N] from state v (None: 0); returns u_t, n_t, last v."""
    us, ns = [], []
    v = torch.zeros_like(x[0]) if v is None else v
    for t in range(x.shape[0]):
        u = beta * v + x[t]
        n = torch.clamp(torch.div(u, theta, rounding_mode="trunc"), -hi if signed else 0, hi)
        us.append(u)
        ns.append(n)
        v = reset(u, n, theta, zero)
    return us, ns, v


def _forward_kernel(x, v, theta, beta: float, hi: int, signed: bool, zero: bool,
                    record: bool, carry: bool):
    """Spikes of one chunk, its last state when `carry` (another chunk follows),
    and the P and N sums. (Writing the spikes step by step into a given buffer
    made inductor recompute the recurrence for every step.)"""
    us, ns, v = _unroll(x, v, theta, beta, hi, signed, zero)
    pos = neg = x.new_zeros(())
    if record:
        pos = sum(torch.relu(u).sum() for u in us)
        neg = sum(torch.relu(-u).sum() for u in us)
    return torch.stack(ns), (v if carry else None), pos, neg


def _backward_kernel(x, v, gout, gv, alpha, theta, gpos, gneg, beta: float, hi: int,
                     signed: bool, zero: bool, detach_reset: bool, shape: str,
                     need_alpha: bool, need_theta: bool, carry: bool):
    """Gradients of one chunk. gv is dL/dv after its last step, from the next chunk
    (None: the window's end). Returns dL/dx, dL/dv before its first step when
    `carry` (an earlier chunk needs it), dL/dα_t and dL/dθ."""
    f = bump(shape)
    # Recompute the chunk (cheap, elementwise) instead of saving it.
    us, ns, _ = _unroll(x, v, theta, beta, hi, signed, zero)
    gv = torch.zeros_like(x[0]) if gv is None else gv
    gx = []
    galpha = []  # the terms of dL/dα_t and dL/dθ, summed after the loop: faster fused
    gtheta = []
    for t in range(x.shape[0] - 1, -1, -1):
        u, n, a = us[t], ns[t], alpha[t]
        s = da = dth = 0.0  # dn/du (the surrogate), dn/dα, dn/dθ
        for k in range(1, hi + 1):
            for sign in ((1, -1) if signed else (1,)):
                # proxy term sign·F(α·d) of the level at sign·kθ
                d = sign * u - k * theta
                b = f(a * d)
                s = s + a * b
                if need_alpha:
                    da = da + sign * d * b
                if need_theta:
                    dth = dth - sign * k * a * b
        # v = u - n·θ: dv/du = 1, dv/dn = -θ; reset to zero, v = u·[n = 0]: dv/du = [n = 0],
        # dv/dn = -u (as snnTorch's mem - spk·mem), each n-path only without detach_reset
        keep = (n == 0).to(u.dtype) if zero else None
        gn = gout[t] if detach_reset else gout[t] - (u if zero else theta) * gv
        gu = gn * s + (gv * keep if zero else gv)
        if gpos is not None:
            gu = gu + gpos * (u > 0) - gneg * (u < 0)
        gx.append(gu)
        if need_alpha:
            galpha.append(gn * da)
        if need_theta:
            gtheta.append(gn * dth if zero else gn * dth - gv * n)
        gv = beta * gu
    gx.reverse()
    galpha.reverse()
    galpha = torch.stack([g.sum() for g in galpha]) if need_alpha else None
    gtheta = sum(g.sum() for g in gtheta) if need_theta else x.new_zeros(())
    return torch.stack(gx), (gv if carry else None), galpha, gtheta


_KERNELS = {"forward": _forward_kernel, "backward": _backward_kernel}
_WIDE = {"forward": 2, "backward": 4}  # (x, v) and (x, v, gout, gv)
_use_compiled = False


def compile_kernels(enabled: bool = True) -> bool:
    """Route CF layers through torch.compile'd kernels (True) or eager ones.

    Compiling costs seconds once per layer configuration (inductor caches it
    on disk, so later processes pay ~2 s), which short runs should not pay.
    Returns whether compiled kernels are now in use: False when
    torch.compile is unavailable.
    """
    global _use_compiled
    if enabled and not hasattr(torch, "compile"):
        log.warning("torch.compile is not available; CF kernels stay eager")
        enabled = False
    _use_compiled = bool(enabled)
    return _use_compiled


def kernels_compiled() -> bool:
    return _use_compiled


@functools.lru_cache(maxsize=None)
def _compiled(name: str, **static):
    # The hyper-parameters are baked in as constants: with β as a symbolic
    # float inductor computes the state in double, 2x slower.
    def kernel(*tensors):
        return _KERNELS[name](*tensors, **static)

    # A code object of its own per configuration: dynamo keeps at most
    # `recompile_limit` (8) graphs per code object, and configurations sharing
    # one (as functools.partial objects do) silently fell back to eager.
    kernel.__code__ = kernel.__code__.replace(co_name=f"cf_{name}_kernel")
    return torch.compile(kernel, options=_inductor_options())


def _inductor_options() -> dict:
    # With a dynamic width, inductor decides whether a CPU loop runs on all
    # threads from the size of the first call, and caches that on disk: a
    # kernel first built for a small layer stayed single-threaded at any size.
    try:
        from torch._inductor import config
    except ImportError:
        return {}
    return {"cpp.min_chunk_size": 1} if hasattr(config.cpp, "min_chunk_size") else {}


def _run(name: str, tensors: tuple, **static):
    if not _use_compiled:
        return _KERNELS[name](*tensors, **static)
    # One compiled kernel for every layer width N: the first `_WIDE[name]`
    # arguments are x-like [Tc, N] or state-like [N] tensors.
    if tensors[0].shape[1] > 1:
        for t in tensors[:_WIDE[name]]:
            if t is not None:
                torch._dynamo.mark_dynamic(t, t.dim() - 1)
    return _compiled(name, **static)(*tensors)


def _cat(parts: list) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _chunks(steps: int) -> list[slice]:
    size = steps if steps <= MAX_UNROLLED else CHUNK
    return [slice(a, min(a + size, steps)) for a in range(0, steps, size)]


class _CFWindow(torch.autograd.Function):
    # Returns spikes only, or (spikes, P_sum, N_sum) when recording: constant
    # extra outputs would trip torch.compile's tracing of this function.
    @staticmethod
    def forward(ctx, x, alpha, theta, p: CFParameters, record: bool):
        chunks = _chunks(x.shape[0])
        v, starts, outs, pos, neg = None, [], [], 0.0, 0.0
        for i, chunk in enumerate(chunks):
            if v is not None:
                starts.append(v)  # the backward restarts each chunk from its state
            out, v, cpos, cneg = _run("forward", (x[chunk], v, theta), beta=p.beta,
                                      hi=p.max_spikes, signed=p.signed,
                                      zero=p.reset == "zero", record=record,
                                      carry=i + 1 < len(chunks))
            outs.append(out)
            pos, neg = pos + cpos, neg + cneg
        ctx.save_for_backward(x, alpha, theta, *starts)
        ctx.p = p
        out = _cat(outs)
        return (out, pos, neg) if record else out

    @staticmethod
    def backward(ctx, gout, *gpn):
        x, alpha, theta, *starts = ctx.saved_tensors
        p = ctx.p
        gpos, gneg = gpn if gpn else (None, None)
        need_alpha, need_theta = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gout = gout.contiguous()
        gv, gxs, galphas, gtheta = None, [], [], 0.0
        for chunk, v in reversed(list(zip(_chunks(x.shape[0]), [None, *starts]))):
            gx, gv, galpha, gth = _run(
                "backward", (x[chunk], v, gout[chunk], gv, alpha[chunk], theta, gpos, gneg),
                beta=p.beta, hi=p.max_spikes, signed=p.signed, zero=p.reset == "zero",
                detach_reset=p.detach_reset,
                shape=p.surrogate, need_alpha=need_alpha, need_theta=need_theta,
                carry=v is not None)
            gxs.insert(0, gx)
            galphas.insert(0, galpha)
            gtheta = gtheta + gth
        return (_cat(gxs), _cat(galphas) if need_alpha else None,
                gtheta.reshape(theta.shape) if need_theta else None, None, None)


def cf_multistep(x: torch.Tensor, alpha: torch.Tensor, theta: torch.Tensor,
                 p: CFParameters, record: bool = False):
    """Run a CF layer over a window x: [T, ...] with surrogate gradients.

    alpha: [T] surrogate sharpness per step; theta: 0-d threshold tensor.
    Returns (spikes n: [T, ...], P, N) where P and N are mean(relu(u)) and
    mean(relu(-u)) over the window when `record` (for the PN loss), else 0.
    """
    shape, dtype = x.shape, x.dtype
    # Reduced precision (AMP) is fine for spikes but not for the state and
    # the reductions of the backward: run the window in float32.
    work = torch.float64 if dtype == torch.float64 else torch.float32
    flat = x.reshape(shape[0], -1).to(work).contiguous()
    alpha, theta = alpha.to(work), theta.to(work)
    if not record:
        zero = flat.new_zeros(())
        return _CFWindow.apply(flat, alpha, theta, p, False).reshape(shape).to(dtype), zero, zero
    out, pos, neg = _CFWindow.apply(flat, alpha, theta, p, True)
    return out.reshape(shape).to(dtype), pos / flat.numel(), neg / flat.numel()
