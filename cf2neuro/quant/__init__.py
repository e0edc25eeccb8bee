"""Quantization for fixed-point targets (DESIGN §4, docs/fixed_point.md).

    quantize(graph, target="loihi2", calibration=None, input_range=None, options=None) -> Graph
    quantization_report(qgraph) -> list[dict]       format_report(qgraph) -> str
    QuantOptions                                     the knobs (clip percentile, vth targets)

The quantized graph runs bit-exactly on the emulator
(`cf2neuro.runners.emulator`, a `cf2neuro.ir.fixed_point.FixedPointNumerics`
engine) and on the Lava runner.
"""

from .quantize import (QuantOptions, format_report, quantization_report, quantize,
                       quantize_bias, quantize_mantissas)

__all__ = ["QuantOptions", "quantize", "quantization_report", "format_report",
           "quantize_mantissas", "quantize_bias"]
