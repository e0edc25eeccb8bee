"""Limits of Lava's fixed-point processes, refused before any work (DESIGN §4).

    check(graph, target)    the back end's checker: the quantizer's refusals, then these

Measured in lava-nc 0.10.0 (`lava/proc/conv/models.py`): the Conv process
keeps kernel size, stride, padding, dilation and `groups` as int8. A value
over 127 wraps and the convolution computes garbage without an error, so a
graph that would need one is refused here, naming the layer. Sum pooling is
not limited by its channel count: the runtime splits its groups (see
`cf2neuro_lava.layers.pooling_weights`).
"""

from __future__ import annotations

from ...errors import UnsupportedError
from ...ir.graph import Graph
from ...ir.passes import run_passes
from ...targets import Target

INT8_MAX = 127


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def check_lava_limits(g: Graph) -> None:
    """UnsupportedError for the first Conv2d/pooling whose parameters Lava cannot hold."""
    for n in g:
        if n.op == "Conv2d":
            values = {"groups": [n.attrs.get("groups", 1)],
                      "kernel": list(n.params["weight"].shape[2:]),
                      **{k: list(_pair(n.attrs.get(k, 1))) for k in ("stride", "padding",
                                                                        "dilation")}}
        elif n.op in ("AvgPool2d", "SumPool2d"):
            values = {k: list(_pair(n.attrs[k])) for k in ("kernel", "stride", "padding")}
        else:
            continue
        for key, vals in values.items():
            if max(vals) > INT8_MAX:
                raise UnsupportedError(
                    f"{n.where()}: its {key} {vals} exceeds {INT8_MAX}; Lava's Conv stores "
                    f"{key} as int8 and would compute garbage silently. Use a smaller "
                    f"{key}{' (split the layer into groups of <= 127)' if key == 'groups' else ''}"
                    f", or run the emulator or onnxruntime runner")


def check(g: Graph, target: Target) -> None:
    """The loihi2 back end's up-front check: what the quantizer refuses, then Lava's limits."""
    from .quantize import check_graph

    check_graph(g, target)
    check_lava_limits(run_passes(g))
