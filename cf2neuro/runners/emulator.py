"""The `emulator` runner: Lava's fixed-point arithmetic, bit for bit, batched in torch.

    em = Emulator(qgraph)                    # a quantized graph (cf2neuro.quant.quantize)
    res = em.run(x, probes=["layers.2"])     # x: [T, B, *input_shape], float or integer
    res["output"], res["layers.2"], res["latency"]

It is the engine (`cf2neuro.ir.engine.Engine`) with the fixed-point numerics
(`cf2neuro.ir.fixed_point.FixedPointNumerics`): the same graph walker as the
float reference, another number format. Outputs are int64 and aligned with
the input steps the way the Lava runner aligns them (it runs T + latency
steps on zero-padded input and drops the first `latency` outputs; every
stateful node restarts at its own pipeline depth); ``res["latency"]`` is
the latency removed. Probes: "NAME" gives a node's integer output
``[T, B, ...]``, "v:NAME" a neuron's membrane after its reset ``[T, B, ...]``
(the final state of each sample is ``[-1]``).

As a registered runner (``cf2neuro run ... --runner emulator --target
loihi2``), a float graph is quantized for the target on the fly, with the
given inputs as calibration; a graph that is already quantized (a NIR file
written from a quantized graph) runs as it is.
"""

from __future__ import annotations

import logging
from typing import Iterable

import numpy as np

from ..api import register_runner
from ..errors import BadInputError
from ..ir.engine import Engine
from ..ir.fixed_point import FixedPointNumerics, graph_latency
from ..ir.graph import Graph

log = logging.getLogger(__name__)
DEFAULT_TARGET = "loihi2"


def is_quantized(graph: Graph) -> bool:
    return isinstance(graph.meta.get("fixed_point"), dict)


class Emulator:
    """A quantized graph compiled once on the fixed-point engine."""

    def __init__(self, qgraph: Graph, device=None):
        if not is_quantized(qgraph):
            raise BadInputError("the emulator runs quantized graphs: quantize it first "
                                "(cf2neuro.quant.quantize(graph, target))")
        self.numerics = FixedPointNumerics(device)
        self.engine = Engine(qgraph, self.numerics)
        self.graph = self.engine.graph
        self.latency = graph_latency(self.graph)
        stated = self.graph.meta["fixed_point"].get("latency")
        if stated is not None and int(stated) != self.latency:
            raise BadInputError(f"the graph states latency {stated} but its pipeline has "
                                f"{self.latency} synaptic steps; re-quantize it")

    def run(self, x, probes: Iterable[str] = (), schedule: str = "auto") -> dict:
        """{"output": int64 [T, B, ...], probe: ..., "latency": int}; see the module doc."""
        res = self.engine.run(x, probes=probes, schedule=schedule)
        out = {k: v.detach().cpu().numpy() for k, v in res.items()}
        out["latency"] = self.latency
        return out

    __call__ = run


def emulate(qgraph: Graph, x, probes: Iterable[str] = (), device=None) -> dict:
    """`Emulator(qgraph, device).run(x, probes)`."""
    return Emulator(qgraph, device).run(x, probes)


def _runner(graph: Graph, x: np.ndarray, probes: list[str], target: str | None,
            device=None) -> dict:
    """`cf2neuro run --runner emulator [--target NAME]` (DESIGN §8)."""
    if is_quantized(graph):
        have = graph.meta["fixed_point"].get("target")
        if target is not None and have is not None and target != have:
            raise BadInputError(f"the graph is quantized for target {have!r}, not {target!r}; "
                                f"run the float graph to quantize it for {target!r}")
        qgraph = graph
    else:
        from ..quant import quantize

        qgraph = quantize(graph, target or DEFAULT_TARGET, calibration=x)
        log.info("quantized for %s on the fly (input scale %g)", target or DEFAULT_TARGET,
                 qgraph.meta["fixed_point"]["input_scale"])
    res = Emulator(qgraph, device).run(x, probes)
    res["latency"] = np.asarray(res["latency"], dtype=np.int64)
    return res


register_runner("emulator", _runner)

__all__ = ["Emulator", "emulate", "is_quantized"]
