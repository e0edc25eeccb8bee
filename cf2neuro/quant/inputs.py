"""The input format of a quantized graph: how float inputs become integer payloads.

    input_format(target, calibration) -> {"scale", "bits", "signed"}

Generic over fixed-point targets: it reads only the target's numeric format
(graded spikes or binary, input payload bits). x_int = round(x · scale),
clipped to the payload range; binary data (0/1) and integer data that fits
are taken exactly (scale 1), values on a grid (pixels k/16) exactly too.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..targets import Target


def payload_bits(max_abs: int, signed: bool) -> int:
    """Bits of a payload holding integers in [-max_abs·signed, max_abs]."""
    return int(max_abs).bit_length() + int(bool(signed))


def input_format(target: Target, calibration=None, input_bits: int | None = None,
                 input_range: float | None = None) -> dict:
    """input_scale, input_bits (0 = binary spikes), input_signed."""
    fmt = target.numeric
    x = None if calibration is None else np.asarray(calibration, dtype=np.float64)
    if x is not None and x.size and not np.all(np.isfinite(x)):
        raise UnsupportedError("calibration inputs contain NaN or infinite values")
    binary = x is not None and x.size > 0 and bool(np.all((x == 0) | (x == 1)))
    if not fmt.graded_spikes:
        if x is not None and not binary:
            raise UnsupportedError(f"target {target.name} takes binary input spikes only; the "
                                   f"inputs hold other values (e.g. analog pixels). Encode them "
                                   f"as spikes (--encoding poisson) or use loihi2")
        return {"scale": 1.0, "bits": 0, "signed": False}
    if binary:
        return {"scale": 1.0, "bits": 0, "signed": False}
    bits = int(input_bits if input_bits is not None else fmt.input_bits)
    signed = True if x is None or not x.size else bool(x.min() < 0)
    hi = (1 << (bits - int(signed))) - 1
    if x is not None and x.size and np.all(x == np.round(x)) and np.abs(x).max() <= hi:
        # integer data (event counts) that fits: no rounding at all
        top = int(np.abs(x).max())
        return {"scale": 1.0, "bits": max(payload_bits(max(top, 1), signed), bits),
                "signed": signed}
    rng = input_range
    if rng is None and x is not None and x.size:
        grid = grid_scale(x, hi)
        if grid is not None:  # values on a grid (pixels k/16): represented exactly
            return {"scale": grid, "bits": bits, "signed": signed}
        rng = float(np.abs(x).max())
    if rng is None or not rng > 0:
        rng = 1.0
    return {"scale": hi / rng, "bits": bits, "signed": signed}


def grid_scale(x: np.ndarray, hi: int) -> float | None:
    """The largest scale <= hi/max|x| that maps every value to an integer, if there is one.

    Data quantized on a grid (8-bit images, pixels k/16) is then represented
    exactly: scale = m/q for the grid step q and the largest integer m with
    m·max|x|/q <= hi.
    """
    v = np.unique(np.abs(x.reshape(-1)))
    v = v[v > 0]
    if v.size == 0:
        return None
    steps = np.diff(np.concatenate([[0.0], v]))
    q = float(steps.min())
    k = v / q
    if q <= 0 or not np.allclose(k, np.round(k), rtol=0, atol=1e-4) or v[-1] / q > hi:
        return None
    m = int(np.floor(hi * q / v[-1] + 1e-9))
    return m / q if m >= 1 else None
