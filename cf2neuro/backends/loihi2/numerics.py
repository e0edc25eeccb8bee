"""Loihi-2-style fixed point: the integer numerics of the engine (DESIGN §4).

`FixedPointNumerics` is a numerics object for `cf2neuro.ir.engine.Engine`,
like `FloatNumerics`: one graph walker, another number format. It runs a
*quantized* graph (`cf2neuro.quant.quantize`) bit-exactly as lava-nc
0.10.0's ``Loihi2SimCfg(select_tag="fixed_pt")`` process models compute it;
``docs/fixed_point.md`` is the contract with the Lava runtime, and every
formula below is transcribed from Lava's source (file named at each kernel).

Integer form of a node
----------------------
A quantized node keeps its float parameters (for reports) and adds its
integer form: JSON scalars in ``node.attrs["fixed_point"]`` and integer numpy
arrays in `INTEGER_PARAMS` (``weight_mant``, ``bias_mant``, ``bias_int``),
which `register_integer_params` adds to the op specs. The graph says
``graph.meta["fixed_point"]`` = {target, input_scale, input_bits,
input_signed, latency, output_scale}.

Time: the pipeline latency
--------------------------
In Lava every Dense/Conv (and sum pooling, a Conv) delivers its output one
step later, so a node at *pipeline depth* d (the number of such ops on every
path from the Input, `pipeline_depths`) sees sample step t at Lava step
t + d. The Lava runner pads ``latency`` zero steps, resets each stateful node
at its own depth, and drops the leading ``latency`` outputs; that is the
same as running every node in its own depth-aligned frame from zero state,
which is what this engine computes (no per-op delay, so stateless kernels
stay time-batched). A recurrent (back) edge into a Dense is the Dense's own
one-step delay. Graphs whose paths into a node have different depths would
be misaligned in Lava: `pipeline_depths` refuses them with the node named.
The equivalence is checked against a step-by-step numpy transcription of
Lava's process models, delays and resets included (tests/test_emulator.py).

All arithmetic is int64 in torch; matrix products and convolutions run in
float64, exact while every partial sum stays below 2^53 (|mantissa| <= 256,
|payload| < 2^24, fan-in < 2^20: always for legal graphs).
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import torch
import torch.nn.functional as F

from ...dynamics import attention_product
from ...errors import BadInputError, UnsupportedError
from ...ir.graph import Graph, Node
from ...ir.numerics import Stateful
from ...quant.inputs import payload_bits  # noqa: F401  (re-exported for the quantizer)
from .lower import graph_latency

#: Lava's LIF process model runs these imported neurons (reset to zero).
LAVA_LIF_OPS = frozenset({"LIF", "IF", "CubaLIF"})

STATE_BITS = 24
STATE_MAX = (1 << (STATE_BITS - 1)) - 1   # 2^23 - 1: CF / LIF v saturate here
DECAY_UNITY = 4096                        # decays are d/4096, 12 bits
DECAY_SHIFT = 12
LIF_SHIFT = 6                             # Lava LIF: a << 6 and vth << 6 (MSB alignment)


# --- integer helpers (numpy and torch alike where possible) --------------------

def trunc0(x: torch.Tensor) -> torch.Tensor:
    """sign(x)·(|x| >> 12): Lava's decay rounding, toward zero."""
    return torch.sign(x) * (x.abs() >> DECAY_SHIFT)


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 to `bits` signed bits (Lava's signed_clamp; int32 overflow).

    Shifting the sign bit to bit 63 and back is the wrap; 2x faster than remainder.
    """
    s = 64 - bits
    return (x << s) >> s


def shift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """x << exp, or the arithmetic x >> -exp for a negative exponent (rounds to -inf)."""
    return x << exp if exp > 0 else x >> (-exp)


def scale_bias(mant: np.ndarray, exp: int) -> np.ndarray:
    """bias_mant << bias_exp (>> for a negative exponent), as Lava's scale_bias."""
    m = np.asarray(mant).astype(np.int64)
    return m << exp if exp >= 0 else m >> (-exp)


def sign_mode(w: np.ndarray) -> str:
    """Lava's determine_sign_mode: 'excitatory' (all >= 0), 'inhibitory' (all <= 0), 'mixed'."""
    w = np.asarray(w)
    if w.size == 0 or w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


def lava_dense_weights(w: np.ndarray) -> np.ndarray:
    """The weights Lava's PyDenseModelBitAcc actually uses (lava/utils/weightutils.py).

    The sign mode is decided from the whole matrix; then clip_weights to 8 bits
    (mixed [-256, 255], excitatory [0, 255], inhibitory [-255, 0]) and
    truncate_weights with num_weight_bits = 8, which drops the LSB only in
    mixed mode (3 -> 2, -3 -> -4).
    """
    w = np.asarray(w).astype(np.int64)
    mode = sign_mode(w)
    if mode == "mixed":
        return (np.clip(w, -256, 255) >> 1) << 1
    if mode == "excitatory":
        return np.clip(w, 0, 255)
    return -np.clip(-w, 0, 255)


def fixed_point_attrs(node: Node) -> dict:
    """The node's integer attributes, or an error naming it when it is not quantized."""
    fp = node.attrs.get("fixed_point")
    if not isinstance(fp, dict):
        raise UnsupportedError(f"{node.where()} has no fixed-point form: quantize the graph "
                               f"for a target first (cf2neuro.quant.quantize)")
    return fp


# --- the numerics ----------------------------------------------------------------

class FixedPointNumerics:
    """Integer kernels (int64 tensors) for a quantized graph; see the module docstring.

    Inputs: a float window is quantized with the graph's ``input_scale``
    (``round`` half to even, clipped to the input payload's range); an integer
    window is taken as already quantized and used as is, as the Lava runner
    sends it. Outputs are int64: spikes, spike counts, or the readout's
    integer ``a`` (plus its ``bias_int``) per step.
    """

    name = "fixed_point"
    time_batched = True
    KERNELS = {
        "Identity": "identity", "Output": "identity", "Flatten": "flatten", "Add": "add",
        "Linear": "dense", "Conv2d": "conv", "SumPool2d": "sumpool",
        "CFNeuron": "cf_neuron", "LIF": "lava_lif", "IF": "lava_lif", "CubaLIF": "lava_lif",
        # no Lava process (attention.py): the emulator and onnxruntime run them
        "Attention": "attention", "Permute": "permute", "Mean": "token_sum",
    }

    def __init__(self, device=None, integer_only: bool = False):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        # integer_only: matrix products and convolutions in int64 ops (for an integer ONNX
        # export); the default runs them in float64, exact and much faster in torch.
        self.integer_only = integer_only
        self.graph_fp: dict | None = None

    @staticmethod
    def effective_weights(node: Node) -> np.ndarray:
        """The integer weights Lava really uses (Dense legalizes its mantissas; Conv does not)."""
        w = np.asarray(node.params["weight_mant"])
        return lava_dense_weights(w) if node.op == "Linear" else w

    def latency(self, graph: Graph) -> int:
        """Steps Lava's pipeline delays the output (the runners remove them); 0 for a graph
        that Lava does not run (attention.py: every layer in the same step)."""
        if "runner_refusals" in (graph.meta.get("fixed_point") or {}):
            return 0
        return graph_latency(graph)

    def kernel(self, node: Node, graph: Graph):
        if self.graph_fp is None:
            fp = graph.meta.get("fixed_point")
            if not isinstance(fp, dict):
                raise UnsupportedError("the graph is not quantized (no meta['fixed_point']); "
                                       "quantize it for a target first "
                                       "(cf2neuro.quant.quantize(graph, 'loihi2'))")
            self.graph_fp = fp
        method = self.KERNELS.get(node.op)
        if method is None:
            raise UnsupportedError(f"{node.where()}: op {node.op} has no fixed-point form; "
                                   f"known: {sorted(self.KERNELS)}")
        return getattr(self, method)(node, graph)

    # --- inputs ----------------------------------------------------------------
    def input_range(self) -> tuple[int, int]:
        fp = self.graph_fp or {}
        bits, signed = int(fp.get("input_bits", 0)), bool(fp.get("input_signed", False))
        if bits == 0:
            return 0, 1
        if signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1

    def prepare_input(self, x) -> torch.Tensor:
        t = torch.as_tensor(x).to(self.device)  # scale on the device: big batches on a GPU
        if t.dtype == torch.bool:
            t = t.to(torch.int64)
        if t.is_floating_point():
            if not torch.isfinite(t).all():
                raise BadInputError("inputs contain NaN or infinite values")
            scale = float((self.graph_fp or {}).get("input_scale", 1.0))
            lo, hi = self.input_range()
            t = torch.round(t.to(torch.float64) * scale).clamp(lo, hi)
        return t.to(device=self.device, dtype=torch.int64)

    def _long(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a).astype(np.int64)).to(self.device)

    def _double(self, a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a).astype(np.float64)).to(self.device)

    # --- stateless ---------------------------------------------------------------
    def identity(self, node, graph):
        return lambda x: x

    def flatten(self, node, graph):
        nd = len(graph[node.inputs[0]].shape)
        a, b = node.attrs["start_dim"] % nd + 1, node.attrs["end_dim"] % nd + 1
        return lambda x: x.flatten(a, b)

    def add(self, node, graph):
        gains = node.attrs.get("fixed_point", {}).get("gains")  # values of different scales
        if gains is None or all(a == 1 for a in gains):
            return lambda *xs: functools.reduce(operator.add, xs)
        return lambda *xs: functools.reduce(operator.add, (x * a for x, a in zip(xs, gains)))

    def permute(self, node, graph):
        perm = [0, *(p + 1 for p in node.attrs["perm"])]
        return lambda x: x.permute(perm)

    def token_sum(self, node, graph):
        """Mean's integer form: the sum (its 1/count is in the consumer's mantissas)."""
        fixed_point_attrs(node)
        nd = len(graph[node.inputs[0]].shape)
        dims = [d % nd + 1 for d in node.attrs["dims"]]
        return lambda x: x.sum(dims)

    def attention(self, node, graph):
        """Q·Kᵀ·V per head on integer spikes, exact, sent as P << shift (attention.py)."""
        e, heads = int(fixed_point_attrs(node)["shift"]), int(node.attrs["heads"])
        dtype = torch.int64 if self.integer_only else torch.float64  # exact below 2^53

        def run(q, k, v):
            p = attention_product(q.to(dtype), k.to(dtype), v.to(dtype), heads)
            return p.to(torch.int64) << e
        return run

    def _message(self, nmb: int):
        """num_message_bits 0: Lava casts the input to bool (graded values become 1)."""
        dtype = torch.int64 if self.integer_only else torch.float64
        if nmb > 0:
            return lambda x: x.to(dtype)
        return lambda x: (x != 0).to(dtype)

    def dense(self, node, graph):
        """lava/proc/dense/models.py PyDenseModelBitAcc.run_spk (without the delay)."""
        fp = fixed_point_attrs(node)
        if "weight_mant" not in node.params:
            raise UnsupportedError(f"{node.where()} has no weight_mant; quantize the graph")
        w = lava_dense_weights(node.params["weight_mant"])
        w = self._long(w) if self.integer_only else self._double(w)
        exp, msg = int(fp.get("weight_exp", 0)), self._message(int(fp["num_message_bits"]))
        bias = self._long(node.params["bias_int"]) if "bias_int" in node.params else None

        def run(x):
            a = (msg(x) @ w.T).to(torch.int64)
            a = wrap(shift(wrap(a, 32), exp), 32)   # int32 accumulate, shift, int32 a_out
            return a if bias is None else a + bias  # the readout's bias, added by the runner
        return run

    def conv(self, node, graph):
        """lava/proc/conv/models.py PyConvModelFixed: convolution, int32 cast, 24-bit wrap.

        Lava convolves (scipy, flipped kernel) in (X, Y, C); PyTorch's
        cross-correlation on (C, H, W) with the unflipped weight is the same
        sum. weight_exp and clipping do not exist in Lava's Conv.
        """
        fp = fixed_point_attrs(node)
        if "weight_mant" not in node.params:
            raise UnsupportedError(f"{node.where()} has no weight_mant; quantize the graph")
        a, msg = node.attrs, self._message(int(fp["num_message_bits"]))
        kw = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                  groups=a["groups"])
        if self.integer_only:
            conv = IntegerConv(self._long(node.params["weight_mant"]), graph[node.inputs[0]].shape,
                               **kw)
            return lambda x: wrap(conv(msg(x)), STATE_BITS)
        w = self._double(node.params["weight_mant"])
        return lambda x: wrap(F.conv2d(msg(x), w, None, **kw).to(torch.int64), STATE_BITS)

    def sumpool(self, node, graph):
        """Sum pooling as Lava's grouped Conv of ones: zero padding, 24-bit wrap."""
        fp = fixed_point_attrs(node)
        msg = self._message(int(fp["num_message_bits"]))
        a = node.attrs
        kw = dict(kernel_size=a["kernel"], stride=a["stride"], padding=a["padding"])
        if self.integer_only:  # a grouped convolution of ones, as Lava computes it
            c = graph[node.inputs[0]].shape[0]
            k = _pair(a["kernel"])
            ones = torch.ones((c, 1, *k), dtype=torch.int64, device=self.device)
            conv = IntegerConv(ones, graph[node.inputs[0]].shape, stride=a["stride"],
                               padding=a["padding"], dilation=1, groups=c)
            return lambda x: wrap(conv(msg(x)), STATE_BITS)

        def run(x):
            y = F.avg_pool2d(msg(x), count_include_pad=True, divisor_override=1, **kw)
            return wrap(y.to(torch.int64), STATE_BITS)
        return run

    # --- neurons ---------------------------------------------------------------
    def _bias(self, node, fp) -> torch.Tensor:
        mant = node.params.get("bias_mant")
        if mant is None:
            return torch.zeros((), dtype=torch.int64, device=self.device)
        mant = np.broadcast_to(np.asarray(mant), node.shape)
        return self._long(scale_bias(mant, int(fp.get("bias_exp", 0))))

    def cf_neuron(self, node, graph):
        """cf2neuro's CF process (docs/fixed_point.md), 24-bit state."""
        fp = fixed_point_attrs(node)
        vth, dv, k = int(fp["vth"]), int(fp["dv"]), int(fp["max_spikes"])
        lo = -k if fp["signed"] else 0
        zero = fp.get("reset", "subtract") == "zero"  # v = 0 after a spike (NIR's LIF reset)
        if vth <= 0 or not 0 <= dv <= DECAY_UNITY:
            raise UnsupportedError(f"{node.where()}: needs vth > 0 and dv in 0..4096, got "
                                   f"vth={vth}, dv={dv}")
        bias = self._bias(node, fp)
        floor = (self._long(np.asarray(node.params["v_min_int"]))
                 if "v_min_int" in node.params else None)

        def step(v, a):
            v = torch.zeros_like(a) if v is None else v
            v = (trunc0(v * (DECAY_UNITY - dv)) + a + bias).clamp(-STATE_MAX, STATE_MAX)
            n = torch.div(v, vth, rounding_mode="trunc").clamp(lo, k)
            v = torch.where(n != 0, torch.zeros_like(v), v) if zero else v - n * vth
            return n, v if floor is None else torch.maximum(v, floor)
        return Stateful(step, lambda v: v)

    def lava_lif(self, node, graph):
        """lava/proc/lif/models.py PyLifModelBitAcc: u/v with du, dv; spike v > vth << 6; v = 0."""
        fp = fixed_point_attrs(node)
        du, dv, vth = int(fp["du"]), int(fp["dv"]), int(fp["vth"])
        if not (0 <= du < DECAY_UNITY and 0 <= dv < DECAY_UNITY and vth >= 0):
            raise UnsupportedError(f"{node.where()}: Lava's LIF takes du, dv in 0..4095 and "
                                   f"vth >= 0, got du={du}, dv={dv}, vth={vth}")
        bias = self._bias(node, fp)
        vth_eff = vth << LIF_SHIFT
        half = 1 << (STATE_BITS - 1)
        keep_u = DECAY_UNITY - (du + 1)   # ds_offset = 1: u always decays
        keep_v = DECAY_UNITY - dv         # dm_offset = 0

        def step(state, a):
            u, v = (torch.zeros_like(a), torch.zeros_like(a)) if state is None else state
            cur = wrap(trunc0(u * keep_u) + wrap(a << LIF_SHIFT, 32), 32)
            wrapped = torch.where(cur > half, cur - 2 * half, cur)      # Lava's 24-bit wrap,
            u = torch.where(wrapped <= -half, cur + 2 * half, wrapped)  # transcribed as is
            v = (trunc0(v * keep_v) + u + bias).clamp(-STATE_MAX, STATE_MAX)
            s = v > vth_eff
            return s.to(torch.int64), (u, torch.where(s, torch.zeros_like(v), v))
        return Stateful(step, lambda s: s[1])


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class IntegerConv:
    """A 2-d convolution in int64 gathers and matrix products (no float, no Conv op).

    PyTorch has no int64 convolution and ONNX's Conv is float only, so the
    integer export gathers each output position's receptive field with one
    constant index (im2col) and multiplies: exact for any payload width.
    """

    def __init__(self, weight: torch.Tensor, in_shape, stride, padding, dilation, groups):
        (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
        c, h, w = in_shape
        co, cg, kh, kw = weight.shape
        hp, wp = h + 2 * ph, w + 2 * pw
        ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
        rows = (torch.arange(ho) * sh)[:, None] + (torch.arange(kh) * dh)[None, :]  # [ho, kh]
        cols = (torch.arange(wo) * sw)[:, None] + (torch.arange(kw) * dw)[None, :]  # [wo, kw]
        # index [kh·kw, ho·wo] into the padded, flattened image
        self.index = (rows.T[:, None, :, None] * wp + cols.T[None, :, None, :]).reshape(
            kh * kw, ho * wo).to(weight.device)
        self.pad, self.groups, self.out = (pw, pw, ph, ph), groups, (co, ho, wo)
        self.weight = weight.reshape(groups, co // groups, cg * kh * kw)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        xp = F.pad(x, self.pad).flatten(2)                        # [N, C, Hp·Wp]
        patches = xp[:, :, self.index]                           # [N, C, kh·kw, L]
        patches = patches.reshape(n, self.groups, -1, patches.shape[-1])
        return (self.weight @ patches).reshape(n, *self.out)     # [N, g, Co/g, L]
