"""A convolution (Conv2d, or sum pooling as a grouped one) as Lava's Conv or Lava's Sparse.

Lava's ``Conv`` process model (lava/proc/conv/utils.py ``conv_scipy``)
makes one ``scipy.signal.convolve2d`` call per (output channel, input
channel of its group) pair every step: C_out·C_in/groups calls of ~4-25 us
each (Python overhead plus a direct convolution). A VGG-11 at CIFAR size
makes ~10^6 of them a step. The same synapses as Lava's own ``Sparse``
process (a CSR matrix made by Lava's own ``conv_to_sparse``, the true
convolution in its (X, Y, C) layout) cost one sparse product a step, ~1 ns
per synapse: 10-100x less. Both deliver one step later.

They compute the same integers when
- Sparse's weight legalization (8-bit clip by sign mode, the LSB dropped in
  mixed sign mode) leaves the weights as they are, or leaves 2·w as it is
  and ``weight_exp = -1`` halves the (even) sums exactly; Conv uses any
  integer weight as given;
- no sum reaches 2^23: Conv wraps its output to 24 bits, Sparse does not.
  The bound is static: |input payload| · max over outputs of Σ|w|.
Otherwise, or past `SPARSE_MAX` synapses (memory), it stays a Conv.

``$CF2NEURO_LAVA_CONV`` picks: ``auto`` (default: Sparse where exact),
``conv`` (always Lava's Conv: the lowering before issue 12), ``sparse``
(Sparse where exact, whatever its size).
"""

from __future__ import annotations

import os

import numpy as np

CONV_ENV = "CF2NEURO_LAVA_CONV"
MODES = ("auto", "conv", "sparse")
SPARSE_MAX = 1 << 25   # synapses (~270 MB as int32 CSR, copied a few times by Lava)
WRAP = 1 << 23         # Conv's signed 24-bit output


def mode() -> str:
    value = os.environ.get(CONV_ENV, "auto") or "auto"
    if value not in MODES:
        raise ValueError(f"${CONV_ENV} must be one of {MODES}, got {value!r}")
    return value


def conv_synapse(name: str, source, weight: np.ndarray, input_shape, stride, padding, dilation,
                 groups: int, num_message_bits: int, bound):
    """(process, output port, output (X, Y, C), output bound or None, kind), connected.

    `source` is the input's port, shaped `input_shape` (X, Y, C); `weight` is
    in Lava's Conv layout (C_out, kx, ky, C_in/groups); `bound` is the
    largest |payload| the input sends (None: unknown). The output port has
    the (X, Y, C) shape a Conv's ``a_out`` has; the bound is that of its
    sums (None: unknown, or it may wrap).
    """
    from lava.proc.conv import utils

    kernel = tuple(int(k) for k in weight.shape[1:3])
    out_shape = tuple(int(s) for s in utils.output_shape(
        input_shape, weight.shape[0], kernel, stride, padding, dilation))
    if num_message_bits == 0:
        bound = 1  # binary spikes: the port casts payloads to bool
    choice = mode()
    if choice != "conv" and bound is not None:
        rows = _row_sums(weight, groups)  # Σ|w| per output channel
        out_bound = int(bound) * int(rows.max(initial=0))
        synapses = int(np.count_nonzero(weight)) * out_shape[0] * out_shape[1]
        if out_bound < WRAP and (choice == "sparse" or synapses <= SPARSE_MAX):
            made = _sparse(name, weight, input_shape, out_shape, stride, padding, dilation,
                           groups, num_message_bits)
            if made is not None:  # (X, Y, C) in C order is conv_to_sparse's input index
                proc, port_out = made
                source.reshape(new_shape=(int(np.prod(input_shape)),)).connect(proc.s_in)
                return proc, port_out, out_shape, out_bound, "sparse"
    from lava.proc.conv.process import Conv

    proc = Conv(weight=weight, input_shape=tuple(input_shape), stride=stride, padding=padding,
                dilation=dilation, groups=groups, num_message_bits=num_message_bits, name=name)
    source.connect(proc.s_in)
    out_bound = None if bound is None else int(bound) * int(_row_sums(weight, groups).max())
    return (proc, proc.a_out, out_shape,
            out_bound if out_bound is not None and out_bound < WRAP else None, "conv")


def _row_sums(weight: np.ndarray, groups: int) -> np.ndarray:
    return np.abs(weight.astype(np.int64)).reshape(weight.shape[0], -1).sum(axis=1)


def _legal(csr, sign_mode=None) -> bool:
    """Does Lava's Sparse keep these weights as they are (clip, then truncate to 8 bits)?"""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    mode_ = sign_mode or determine_sign_mode(csr)
    kept = truncate_weights(clip_weights(csr.copy(), mode_, num_bits=8), mode_, 8)
    return (kept != csr).nnz == 0


def _sparse(name, weight, input_shape, out_shape, stride, padding, dilation, groups,
            num_message_bits):
    """Lava's Sparse with the convolution's synapses, or None when it cannot be exact."""
    from lava.proc.conv.utils import conv_to_sparse
    from lava.proc.sparse.process import Sparse
    from scipy.sparse import csr_matrix

    n_in, n_out = int(np.prod(input_shape)), int(np.prod(out_shape))
    dst, src, wgt = conv_to_sparse(tuple(input_shape), out_shape, weight, stride, padding,
                                   dilation, groups)
    keep = wgt != 0
    csr = csr_matrix((wgt[keep].astype(np.int32), (dst[keep], src[keep])),
                     shape=(n_out, n_in), dtype=np.int32)
    csr.sum_duplicates()
    exp = 0
    if not _legal(csr):
        csr = csr * 2  # even weights survive the LSB drop; weight_exp -1 halves exactly
        exp = -1
        if not _legal(csr):
            return None
    proc = Sparse(weights=csr, num_message_bits=num_message_bits, weight_exp=exp, name=name)
    return proc, proc.a_out.reshape(new_shape=tuple(out_shape))
