"""How numbers read in every report, plot and CLI line: the one place that formats joules.

    format_joules(2.13e-6)  -> "2.13 µJ"     format_joules(None) -> "–"
    format_percent(0.9833)  -> "98.33 %"     format_pp(0.5)      -> "0.50 pp"
"""

from __future__ import annotations

import math

MISSING = "–"  # a value that was not measured; never confused with 0

# largest first; below a femtojoule stays in fJ (0.001 fJ) rather than a bare exponent
_PREFIXES = ((1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"),
             (1e-15, "f"))


def joule_unit(v: float, digits: int = 3) -> tuple[float, str]:
    """(factor, unit) that shows `v` joules with 1 to 3 digits before the point, e.g.
    (1e-6, "µJ") for 2.13e-6. Chosen on the rounded value: 999.96 nJ reads "1 µJ"."""
    a = abs(float(f"{float(v):.{digits}g}"))
    for factor, prefix in _PREFIXES:
        if a >= factor:
            return factor, f"{prefix}J"
    return _PREFIXES[-1][0], f"{_PREFIXES[-1][1]}J"


def format_joules(v, digits: int = 3) -> str:
    """Joules with an SI prefix and `digits` significant digits; "–" for None, "0 J" for 0."""
    if v is None:
        return MISSING
    v = float(v)
    if v == 0:
        return "0 J"
    if not math.isfinite(v):
        return f"{v} J"
    factor, unit = joule_unit(v, digits)
    return f"{v / factor:.{digits}g} {unit}"


def format_percent(v, decimals: int = 2) -> str:
    """A fraction 0..1 as a percentage: 0.9833 -> "98.33 %"; "–" for None.

    A check passes at exactly 100 %, so a value short of 1 never rounds up to
    "100.00 %" (nor a nonzero one down to "0.00 %"): it reads "> 99.99 %".
    """
    if v is None:
        return MISSING
    v = float(v)
    text = f"{100 * v:.{decimals}f}"
    step = f"{10.0 ** -decimals:.{decimals}f}"
    if v < 1 and float(text) >= 100:
        return f"> {100 - float(step):.{decimals}f} %"
    if v > 0 and float(text) == 0:
        return f"< {step} %"
    return f"{text} %"


def format_pp(v) -> str:
    """Percentage points (an accuracy difference): 0.5 -> "0.50 pp"; "–" for None."""
    return MISSING if v is None else f"{float(v):.2f} pp"


def format_ratio(v) -> str:
    return MISSING if v is None else f"{float(v):.3g}"


__all__ = ["MISSING", "format_joules", "format_percent", "format_pp", "format_ratio",
           "joule_unit"]
