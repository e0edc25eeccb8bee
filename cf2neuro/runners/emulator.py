"""The ``emulator`` runner: a quantized graph on its back end's integer numerics, batched.

    em = Emulator(qgraph)                    # a quantized graph (cf2neuro.quant.quantize)
    res = em.run(x, probes=["layers.2"])     # x: [T, B, *input_shape], float or integer
    res["output"], res["layers.2"], res["latency"]

It is the engine (`cf2neuro.ir.engine.Engine`) with the numerics the
graph's back end declares (``graph.meta["fixed_point"]["backend"]``, e.g.
`cf2neuro.backends.loihi2.numerics.FixedPointNumerics`): the same graph
walker as the float reference, another number format, and nothing
target-specific here. Outputs are int64 and aligned with the input steps
the way the target's runner aligns them: the numerics say how many steps
the hardware pipeline delays the output (``res["latency"]``, removed).
Probes: "NAME" gives a node's integer output ``[T, B, ...]``, "v:NAME" a
neuron's membrane after its reset ``[T, B, ...]``.
"""

from __future__ import annotations

import time
from typing import Iterable

from ..backends import get_backend
from ..errors import BadInputError
from ..ir.engine import Engine
from ..ir.graph import Graph
from ..targets import DEFAULT_TARGET
from .contract import Runner, RunRequest, RunResult


def is_quantized(graph: Graph) -> bool:
    return isinstance(graph.meta.get("fixed_point"), dict)


def backend_of(qgraph: Graph):
    """The back end whose integer semantics a quantized graph carries."""
    if not is_quantized(qgraph):
        raise BadInputError("the emulator runs quantized graphs: quantize it first "
                            "(cf2neuro.quant.quantize(graph, target))")
    fp = qgraph.meta["fixed_point"]
    name = fp.get("backend")
    if name is None:  # graphs written before back ends were named in the metadata
        from ..targets import DEFAULT_TARGET, load_target

        name = load_target(fp.get("target") or DEFAULT_TARGET).backend
    return get_backend(name)


def numerics_for(qgraph: Graph, device=None, **options):
    """An instance of the quantized graph's back-end numerics."""
    return backend_of(qgraph).load("numerics")(device, **options)


class Emulator:
    """A quantized graph compiled once on its back end's fixed-point engine."""

    def __init__(self, qgraph: Graph, device=None):
        self.numerics = numerics_for(qgraph, device)
        self.engine = Engine(qgraph, self.numerics)
        self.graph = self.engine.graph
        self.latency = self.numerics.latency(self.graph)
        stated = self.graph.meta["fixed_point"].get("latency")
        if stated is not None and int(stated) != self.latency:
            raise BadInputError(f"the graph states latency {stated} but its pipeline has "
                                f"{self.latency} synaptic steps; re-quantize it")

    def run(self, x, probes: Iterable[str] = (), schedule: str = "auto",
            deadline: float | None = None) -> dict:
        """{"output": int64 [T, B, ...], probe: ..., "latency": int}; see the module doc."""
        res = self.engine.run(x, probes=probes, schedule=schedule, deadline=deadline)
        out = {k: v.detach().cpu().numpy() for k, v in res.items()}
        out["latency"] = self.latency
        return out

    __call__ = run


def emulate(qgraph: Graph, x, probes: Iterable[str] = (), device=None) -> dict:
    """`Emulator(qgraph, device).run(x, probes)`."""
    return Emulator(qgraph, device).run(x, probes)


class EmulatorRunner(Runner):
    name = "emulator"
    formats = ("fixed",)
    uses_device = True
    default_target = DEFAULT_TARGET

    def run(self, request: RunRequest) -> RunResult:
        graph = self.check_graph(request)
        t0 = time.perf_counter()
        em = Emulator(graph, request.device)
        res = em.run(request.x, request.probes, deadline=request.deadline())
        latency = res.pop("latency")
        probes = {p: res.pop(p) for p in request.probes}
        return RunResult(res, probes, int(latency), {"total": time.perf_counter() - t0})


__all__ = ["Emulator", "EmulatorRunner", "emulate", "is_quantized", "numerics_for"]
