"""Python API behind `cf2neuro export` and `cf2neuro run` (DESIGN §8).

    export(ckpt_dir, out_path, strict=False)            checkpoint -> FILE.nir
    run(source, runner="reference", inputs=IN.npz, dt=None, probes=(), out=OUT.npz)

`source` of `run` is a checkpoint directory or a NIR file (cf2neuro's own or
a third party's). Inputs are ``x`` shaped ``[T, B, *input_shape]`` (an array
or an .npz holding array "x"); the result maps "output" (``[T, B, *out]``)
and every probe ("NAME" for a node's output, "v:NAME" for a neuron's
membrane after its reset) to numpy arrays. Every problem with the user's
input raises a `cf2neuro.errors.BadInputError` (CLI exit code 2).

Both paths run the same graph: a checkpoint is traced into the IR and put
through the export passes (`cf2neuro.ir.passes.DEFAULT_PASSES`: fold batch
norm, fold thresholds, drop identities), which is exactly what `export`
writes; so probe names are the IR node names, the same in the checkpoint,
the NIR file and the re-imported graph.
"""

from __future__ import annotations

import logging
import zipfile
from os import PathLike
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import BadInputError
from .fileio import atomic_path

log = logging.getLogger(__name__)

Runner = Callable[..., dict]
RUNNERS: dict[str, Runner] = {}
"""Runner name -> fn(graph, x, probes, target) -> {"output": ..., probe: ...}."""


def register_runner(name: str, fn: Runner) -> Runner:
    """Make `fn` available as `run(..., runner=name)` (and `cf2neuro run --runner`)."""
    RUNNERS[name] = fn
    return fn


# --- export --------------------------------------------------------------------

def checkpoint_graph(ckpt_dir: str | PathLike, dt: float | None = None):
    """A checkpoint as the IR graph `export` writes: traced, then the export passes."""
    from .checkpoint import load_checkpoint
    from .ir.passes import run_passes
    from .ir.trace import trace_model

    model, _, _ = load_checkpoint(ckpt_dir)
    return run_passes(trace_model(model, dt=dt))


def export(ckpt_dir: str | PathLike, out_path: str | PathLike, strict: bool = False,
           dt: float | None = None) -> dict:
    """Write checkpoint `ckpt_dir` as the NIR graph `out_path` (atomically).

    `strict` refuses what NIR cannot state on its own (every CF layer: graded
    or signed spikes, reset by subtraction), with the reasons; otherwise the
    differences a non-cf2neuro consumer will see are logged as warnings. A
    Spikformer (attention) is always refused. `dt` is the seconds per step
    written into the graph (default `cf2neuro.nir.DEFAULT_DT`, 1e-4).
    Returns a summary: path, dt, node and edge counts, neuron layers.
    """
    from .nir import write_nir

    graph = checkpoint_graph(ckpt_dir, dt=dt)
    ng = write_nir(graph, out_path, dt=dt, strict=strict)
    neurons = sorted(n.name for n in graph.nodes.values() if n.op == "CFNeuron")
    return {"path": str(out_path), "dt": float(ng.metadata["dt"]), "nodes": len(ng.nodes),
            "edges": len(ng.edges), "cf_layers": neurons}


# --- run -----------------------------------------------------------------------

def load_source(source: str | PathLike, dt: float | None = None):
    """A checkpoint directory or a NIR file as a validated IR graph."""
    path = Path(source)
    if path.is_dir():
        graph = checkpoint_graph(path, dt=dt)
        if dt is not None:
            from .nir.discretize import check_dt
            graph.meta["dt"] = check_dt(dt, "--dt")
        return graph
    if path.is_file():
        from .nir import from_nir
        return from_nir(path, dt=dt)
    raise BadInputError(f"{source} is neither a checkpoint directory nor a NIR file; pass "
                        f"the directory `cf2neuro train` wrote or a .nir file")


def load_inputs(inputs) -> np.ndarray:
    """`inputs` (an array, or an .npz path holding array "x") as a numeric array."""
    if isinstance(inputs, (str, PathLike)):
        path = Path(inputs)
        if not path.is_file():
            raise BadInputError(f"inputs file {path} does not exist")
        try:
            data = np.load(path, allow_pickle=False)
            if isinstance(data, np.ndarray):  # a .npy, not an .npz
                raise BadInputError(f"{path} is a .npy file; save the inputs as an .npz "
                                    f"with array 'x' (np.savez(path, x=x))")
            with data:
                if "x" not in data.files:
                    raise BadInputError(f"{path} has no array 'x' (it has {data.files}); "
                                        f"save the inputs as np.savez(path, x=x), "
                                        f"x shaped [T, B, *input_shape]")
                x = data["x"]
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise BadInputError(f"{path} is not a readable .npz file ({e}); save the inputs "
                                f"with np.savez(path, x=x)") from None
    elif inputs is None:
        raise BadInputError("no inputs given: pass --inputs IN.npz with array 'x' shaped "
                            "[T, B, *input_shape]")
    else:
        x = inputs
    x = np.asarray(x) if not hasattr(x, "detach") else x.detach().cpu().numpy()
    if x.dtype.kind not in "biuf":
        raise BadInputError(f"inputs 'x' must be numbers, got dtype {x.dtype}")
    return x


def run(source: str | PathLike, runner: str = "reference", inputs=None, dt: float | None = None,
        probes: Iterable[str] = (), out: str | PathLike | None = None,
        target: str | None = None, device: str | None = None) -> dict[str, np.ndarray]:
    """Run `source` (checkpoint directory or NIR file) on `inputs` with `runner`.

    Returns {"output": [T, B, *out], probe: [T, B, ...], ...} as numpy
    arrays; with `out`, also writes them to that .npz (atomically). `dt`
    (seconds per step) overrides the graph's; a NIR graph with LIF, LI or
    CubaLIF neurons needs one of them. `device` ("cuda", ...) runs the
    reference or emulator runner there.
    """
    from . import runners  # noqa: F401  registers the emulator and lava runners

    fn = RUNNERS.get(runner)
    if fn is None:
        raise BadInputError(f"runner {runner!r} is not available; available: "
                            f"{', '.join(sorted(RUNNERS))}")
    options = {}
    if device is not None:
        if runner not in DEVICE_RUNNERS:
            raise BadInputError(f"--device is for the {' and '.join(DEVICE_RUNNERS)} runners; "
                                f"{runner!r} runs where its runtime runs (leave --device out)")
        from .device import pick_device

        options["device"] = pick_device(device)
    probes = list(probes)
    x = load_inputs(inputs)
    graph = load_source(source, dt=dt)
    results = fn(graph, x, probes, target, **options)
    if out is not None:
        save_outputs(out, results)
    return results


def save_outputs(path: str | PathLike, results: dict[str, np.ndarray]) -> Path:
    """Write results to an .npz atomically (never half a file)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in results.items()})
    return path


DEVICE_RUNNERS = ("reference", "emulator")  # the runners that take a torch device


def _reference(graph, x: np.ndarray, probes: list[str], target: str | None,
               device=None) -> dict:
    """The float IR engine (DESIGN §4 `reference`); it has no target-specific numerics."""
    from .ir.engine import Engine
    from .ir.numerics import FloatNumerics

    if target is not None:
        log.warning("runner 'reference' runs float numerics; --target %s is ignored", target)
    res = Engine(graph, FloatNumerics(device=device)).run(x, probes=probes)
    return {k: v.detach().cpu().numpy() for k, v in res.items()}


register_runner("reference", _reference)
