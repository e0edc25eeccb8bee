"""Quantization for fixed-point targets: the generic driver (DESIGN §4).

    qgraph = quantize(graph, "loihi2", calibration=x)   # a new Graph
    print(format_report(qgraph))                        # what was clipped/rounded

The driver folds the float graph (`cf2neuro.ir.passes.run_passes`), picks
the input format (`inputs.py`: how float inputs become integer payloads),
then hands the graph to the quantizer of the target's back end
(`cf2neuro.backends.<name>`), which gives every node its integer form and
records what it clipped and rounded in ``node.meta["quant"]`` (`report.py`).
The quantized graph states ``meta["fixed_point"]["backend"]``, so the
emulator finds the numerics that run it.
"""

from __future__ import annotations

from ..backends import get_backend
from ..ir.graph import Graph
from ..ir.passes import run_passes
from ..targets import DEFAULT_TARGET, Target, load_target
from .inputs import input_format
from .report import format_report, quantization_report


def quantize(graph: Graph, target: str | Target = DEFAULT_TARGET, *, calibration=None,
             input_range: float | None = None, input_bits: int | None = None,
             options=None) -> Graph:
    """A new graph with every computing node's integer form for `target`.

    `graph` is a float IR graph (a traced checkpoint or an imported NIR
    graph); the export passes are applied first. `calibration` (inputs
    ``[T, B, *shape]`` or any array of input values) sets the input scale,
    sign and, for integer data, an exact scale of 1; `input_range` (max
    |x|) overrides it; without either, analog inputs are taken as |x| <= 1.
    `options` are the back end's knobs (e.g. `cf2neuro.backends.loihi2.
    mapping.QuantOptions`). Raises `UnsupportedError` with the reason for
    anything the target cannot run.
    """
    tgt = load_target(target)
    tgt.require_numeric()
    backend = get_backend(tgt.backend)
    g = run_passes(graph)
    if backend.checker is not None:  # the model's own limits first: the headline reason
        backend.load("checker")(g, tgt)
    quantizer = backend.load("quantizer")
    inp = input_format(tgt, calibration, input_bits=input_bits, input_range=input_range)
    g = quantizer(g, tgt, options, inp)
    g.meta["fixed_point"]["backend"] = tgt.backend
    return g.validate()


def deployable(graph: Graph, target: str | Target, calibration=None) -> str | None:
    """None when `target` can run `graph`, else the reason (the layer, the limit, the way out).

    A float target runs any graph the float reference runs. A fixed-point target
    quantizes the graph (with `calibration`, a few encoded inputs, when given: the
    target may refuse the data's encoding), so every refusal of its checker and
    quantizer is found before training or verifying.
    """
    from ..errors import UnsupportedError

    tgt = load_target(target)
    if tgt.numeric is None:
        return None
    try:
        quantize(graph, tgt, calibration=calibration)
    except UnsupportedError as e:
        return str(e)
    return None


__all__ = ["quantize", "quantization_report", "format_report", "input_format", "deployable"]
