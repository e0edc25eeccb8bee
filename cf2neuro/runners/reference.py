"""The ``reference`` runner: the float IR engine (DESIGN §4), on any torch device."""

from __future__ import annotations

import time

from ..ir.engine import Engine
from ..ir.numerics import FloatNumerics
from .contract import Runner, RunRequest, RunResult


class ReferenceRunner(Runner):
    name = "reference"
    formats = ("float",)
    uses_device = True

    def run(self, request: RunRequest) -> RunResult:
        graph = self.check_graph(request)
        t0 = time.perf_counter()
        res = Engine(graph, FloatNumerics(device=request.device)).run(
            request.x, probes=request.probes, deadline=request.deadline())
        arrays = {k: v.detach().cpu().numpy() for k, v in res.items()}
        outputs = {k: arrays.pop(k) for k in list(arrays) if k not in request.probes}
        return RunResult(outputs, arrays, 0, {"total": time.perf_counter() - t0})
