"""The runner contract: one request in, one result out (DESIGN §4, §8).

    class MyRunner(Runner):
        name = "mine"; formats = ("float",)
        def run(self, request: RunRequest) -> RunResult: ...

Every runner takes a `RunRequest` and returns a `RunResult`, and passes
the same contract test (tests/test_runner_contract.py): output shapes,
probes, the timeout honoured, a clear `RuntimeMissingError` when its
runtime is missing, nothing left behind.

Formats: ``"float"`` runs a float IR graph as it is; ``"fixed"`` runs a
graph quantized for a fixed-point target (``graph.meta["fixed_point"]``).
The face (`cf2neuro.api.run`, `cf2neuro.verify`) quantizes before it calls
a runner; runners never call the quantizer.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..ir.engine import check_deadline  # noqa: F401  (for runners)
from ..ir.graph import Graph


@dataclass
class RunRequest:
    """What to run: a graph (or a model file the runner reads) on inputs x [T, B, *shape]."""

    graph: Graph | None
    x: np.ndarray
    probes: tuple[str, ...] = ()
    timeout: float | None = None   # seconds; None: the runner's default (if any)
    device: str | None = None      # a torch device, for runners that compute in torch
    model_file: Path | None = None  # a file the runner reads instead of `graph` (.onnx)
    progress: bool = False

    def deadline(self) -> float | None:
        """time.monotonic() value after which the run must stop."""
        return None if self.timeout is None else time.monotonic() + float(self.timeout)


@dataclass
class RunResult:
    """Outputs ([T, B, ...], aligned with the input steps) and what the run measured."""

    outputs: dict[str, np.ndarray]          # "output" first, then other Output nodes
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    latency: int = 0                        # pipeline steps the runner removed
    timings: dict[str, float] = field(default_factory=dict)  # seconds, "total" at least
    log: str = ""                           # the simulator's log (its tail)

    @classmethod
    def split(cls, res: dict, probes, stats: dict, t0: float, log: str = "") -> "RunResult":
        """A subprocess runner's flat result dict as a RunResult: its "latency", the
        requested `probes` apart, and every ``*_s`` entry of `stats` as a timing beside
        the total since `t0` (time.perf_counter)."""
        latency = int(res.pop("latency", 0))
        picked = {p: res.pop(p) for p in probes}
        timings = {"total": time.perf_counter() - t0,
                   **{k: float(v) for k, v in stats.items()
                      if k.endswith("_s") and isinstance(v, (int, float))}}
        return cls(res, picked, latency, timings, log)

    def arrays(self) -> dict[str, np.ndarray]:
        """One flat dict: outputs, probes and "latency" (what OUT.npz holds)."""
        return {**self.outputs, **self.probes,
                "latency": np.asarray(self.latency, dtype=np.int64)}

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays()[key]


class Runner(ABC):
    """A simulator of a graph. Subclasses set the class attributes and implement `run`."""

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]] = ("float",)  # "float" and/or "fixed"
    uses_device: ClassVar[bool] = False              # honours RunRequest.device
    default_target: ClassVar[str | None] = None      # the target "fixed" means without one

    def available(self) -> tuple[bool, str]:
        """(True, "") when its runtime can run here, else (False, what to install)."""
        return True, ""

    def setup(self, progress: bool = True) -> str:
        """Create the runner's runtime if it has one; returns a one-line description."""
        return "nothing to set up"

    @abstractmethod
    def run(self, request: RunRequest) -> RunResult:
        """Run the request; raise BadInputError, RunnerError or RunnerTimeoutError."""

    # helpers for runners --------------------------------------------------------
    def check_graph(self, request: RunRequest) -> Graph:
        g = request.graph
        if g is None:
            raise BadInputError(f"runner {self.name!r} runs IR graphs (a checkpoint or a "
                                f".nir file); got only {request.model_file}")
        fixed = isinstance(g.meta.get("fixed_point"), dict)
        if ("fixed" if fixed else "float") not in self.formats:
            want = " or ".join(self.formats)
            raise BadInputError(f"runner {self.name!r} runs {want} graphs; this one is "
                                f"{'quantized' if fixed else 'float'}")
        self.refuse(g)
        return g

    @classmethod
    def refuse(cls, graph: Graph) -> None:
        """UnsupportedError when the quantizer marked `graph` as one this runner cannot run.

        A back end may quantize a graph that only some of its runners can run
        (Loihi 2 attention: the emulator and onnxruntime, not Lava); it lists the
        others with the reason in ``meta["fixed_point"]["runner_refusals"]`` (JSON).
        """
        fp = graph.meta.get("fixed_point")
        raw = fp.get("runner_refusals") if isinstance(fp, dict) else None
        why = json.loads(raw).get(cls.name) if raw else None
        if why:
            raise UnsupportedError(f"runner {cls.name!r} cannot run this graph: {why}")
