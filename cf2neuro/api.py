"""Python API behind `cf2neuro export`, `run` and `targets` (DESIGN §8).

    export(ckpt_dir, "model.nir" | "model.onnx", strict=False, target=None)
    run(source, runner="reference", inputs=IN.npz, target=None, probes=(), out=OUT.npz)
    targets() -> [{name, backend, numeric, limits, runners: {name: {available, note}}}]

`source` of `run` is a checkpoint directory, a NIR file (cf2neuro's own or a
third party's) or an ONNX file cf2neuro exported. Inputs are ``x`` shaped
``[T, B, *input_shape]`` (an array or an .npz holding array "x"); the result
maps "output" (``[T, B, *out]``), every probe ("NAME" for a node's output,
"v:NAME" for a neuron's membrane after its reset) and "latency" to numpy
arrays. Every problem with the user's input raises a
`cf2neuro.errors.BadInputError` (CLI exit code 2).

A checkpoint is traced into the IR and put through the export passes (fold
batch norm, fold thresholds, drop identities), which is exactly what
`export` writes; so probe names are the IR node names, the same in the
checkpoint, the NIR file and the re-imported graph. This module is the
face: it quantizes a float graph when the runner runs a fixed-point target
(the inputs calibrate it), then hands a `RunRequest` to the runner.
"""

from __future__ import annotations

import logging
import zipfile
from os import PathLike
from pathlib import Path
from typing import Iterable

import numpy as np

from .backends import all_backends, load_ref
from .checkpoint import checkpoint_graph, source_graph
from .errors import BadInputError
from .fileio import atomic_path, check_output_file
from .runners import RunRequest, get_runner, runner_names

log = logging.getLogger(__name__)

FORMATS = {".nir": "nir"}  # generic exporters; back ends add theirs (e.g. ".onnx")


# --- export --------------------------------------------------------------------

def _exporters() -> dict[str, str]:
    """File suffix -> "module:function" of every exporter (NIR, then the back ends')."""
    found = {".nir": "cf2neuro.nir:export_graph"}
    for b in all_backends():
        found.update(b.exporters)
    return found


def export(ckpt_dir: str | PathLike, out_path: str | PathLike, strict: bool = False,
           dt: float | None = None, target: str | None = None, fmt: str | None = None,
           calibration=None, probes: Iterable[str] = (), timesteps: int | None = None,
           peer: str | None = None) -> dict:
    """Write checkpoint `ckpt_dir` as `out_path` (atomically), the format from its suffix.

    ``.nir``: NIR (`strict` refuses what NIR cannot state on its own; `dt` is
    the seconds per step written, default 1e-4). ``.onnx``: ONNX with the
    time steps unrolled. With `target`, the graph is quantized for it first
    (`calibration`: inputs that set the input scale; default the checkpoint's
    training inputs) and the file holds its integer form. `fmt` ("nir",
    "onnx") overrides the suffix. `probes` ("NAME", "v:NAME") become extra
    outputs of an ONNX file; `timesteps` is the T an ONNX file unrolls
    (default: the checkpoint's). `peer` ("snntorch", "norse", "sinabs",
    "rockpool"; None or "nir": NIR as specified) writes the NIR graph that
    framework's own importer runs exactly as cf2neuro does, or refuses
    (`cf2neuro.nir.peers`). Returns a summary of what was written.
    """
    exporters = _exporters()
    suffix = f".{fmt.lstrip('.')}" if fmt else Path(out_path).suffix.lower()
    if suffix not in exporters:
        raise BadInputError(f"cannot tell the format of {out_path}: export writes "
                            f"{', '.join(sorted(exporters))} (or pass --format)")
    peer = None if peer == "nir" else peer
    if peer is not None and suffix != ".nir":
        raise BadInputError(f"--for {peer} writes NIR for that framework; {out_path} is "
                            f"{suffix}, not .nir")
    check_output_file(out_path, "the export file")  # before any work
    from .checkpoint import load_checkpoint

    _, config, _ = load_checkpoint(ckpt_dir)
    graph = checkpoint_graph(ckpt_dir, dt=dt)
    if target is not None:
        graph = _quantized(graph, target, calibration if calibration is not None
                           else _checkpoint_calibration(ckpt_dir))
    if timesteps is None:
        timesteps = (config.get("train") or {}).get("timesteps")
    probes = tuple(probes)
    if probes and suffix != ".onnx":
        raise BadInputError(f"--probe is for ONNX exports (extra outputs); a {suffix} file "
                            f"keeps every node, probe it when you run it")
    summary = load_ref(exporters[suffix])(graph, out_path, strict=strict, dt=dt,
                                          timesteps=timesteps, probes=probes, peer=peer)
    return {"path": str(out_path), "format": suffix.lstrip("."), "target": target,
            "for": peer or "nir", **summary}


def _checkpoint_calibration(ckpt_dir):
    from .verify import calibration_inputs

    return calibration_inputs(ckpt_dir)


def _quantized(graph, target: str, calibration):
    from .quant import quantize

    return quantize(graph, target, calibration=calibration)


# --- run -----------------------------------------------------------------------

def load_source(source: str | PathLike, dt: float | None = None, peer: str | None = None):
    """A checkpoint directory or a NIR file (read as `peer` runs it) as a validated IR graph."""
    return source_graph(source, dt=dt, peer=peer)


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


def prepare_graph(graph, runner, target: str | None, x):
    """The graph in the form `runner` runs: quantized for a fixed-point target when needed."""
    fixed = isinstance(graph.meta.get("fixed_point"), dict)
    if fixed:
        have = graph.meta["fixed_point"].get("target")
        if target is not None and have is not None and target != have:
            raise BadInputError(f"the graph is quantized for target {have!r}, not {target!r}; "
                                f"run the float graph to quantize it for {target!r}")
        if "fixed" not in runner.formats:
            raise BadInputError(f"runner {runner.name!r} runs float graphs; this one is "
                                f"quantized for {have!r}")
        return graph
    if target is not None:
        from .targets import load_target

        if load_target(target).numeric is None:  # a float target: run the float graph
            if "float" not in runner.formats:
                raise BadInputError(f"target {target!r} is float; runner {runner.name!r} runs "
                                    f"fixed-point graphs only")
            return graph
    elif "float" in runner.formats:
        return graph
    name = target or runner.default_target
    if "fixed" not in runner.formats or name is None:
        raise BadInputError(f"runner {runner.name!r} cannot run a graph for target {name!r}")
    q = _quantized(graph, name, x)
    log.info("quantized for %s on the fly (input scale %g)", name,
             q.meta["fixed_point"]["input_scale"])
    return q


def run(source: str | PathLike, runner: str = "reference", inputs=None, dt: float | None = None,
        probes: Iterable[str] = (), out: str | PathLike | None = None,
        target: str | None = None, device: str | None = None,
        timeout: float | None = None, peer: str | None = None) -> dict[str, np.ndarray]:
    """Run `source` (checkpoint directory, NIR or ONNX file) on `inputs` with `runner`.

    Returns {"output": [T, B, *out], probe: [T, B, ...], ..., "latency": int}
    as numpy arrays; with `out`, also writes them to that .npz (atomically).
    `dt` (seconds per step) overrides the graph's; a NIR graph with LIF, LI
    or CubaLIF neurons needs one of them. `device` ("cuda", ...) runs a
    torch-based runner (reference, emulator) there. `timeout` (seconds)
    stops any runner that runs longer. `peer` reads a NIR file as that
    framework ran it (`cf2neuro.nir.peers`).
    """
    if out is not None:
        check_output_file(out, "the results file")  # before any work
    r = get_runner(runner)
    if device is not None and not r.uses_device:
        users = [n for n in runner_names() if get_runner(n).uses_device]
        raise BadInputError(f"--device is for the {' and '.join(users)} runners; "
                            f"{runner!r} runs where its runtime runs (leave --device out)")
    if device is not None:
        from .device import pick_device

        device = str(pick_device(device))
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise BadInputError(f"--timeout must be a number of seconds > 0, got {timeout!r}")
    x = load_inputs(inputs)
    path = Path(source)
    if path.is_file() and path.suffix.lower() == ".onnx":
        request = RunRequest(None, x, tuple(probes), timeout, device, model_file=path)
    else:
        graph = prepare_graph(load_source(source, dt=dt, peer=peer), r, target, x)
        request = RunRequest(graph, x, tuple(probes), timeout, device)
    results = r.run(request).arrays()
    if out is not None:
        save_outputs(out, results)
    return results


def save_outputs(path: str | PathLike, results: dict[str, np.ndarray]) -> Path:
    """Write results to an .npz atomically (never half a file)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: np.asarray(v) for k, v in results.items()})
    return path


# --- targets ---------------------------------------------------------------------

def targets() -> list[dict]:
    """Every target: back end, numeric format, limits, runners and whether each runs here."""
    from dataclasses import asdict

    from .targets import known_targets, load_target

    rows = []
    for name in known_targets():
        t = load_target(name)
        runners = {}
        for rn in t.runners:
            try:
                ok, note = get_runner(rn).available()
            except BadInputError as e:
                ok, note = False, str(e)
            runners[rn] = {"available": ok, "note": note, "default": rn == t.runner}
        rows.append({"name": t.name, "description": t.description, "backend": t.backend,
                     "numeric": asdict(t.numeric) if t.numeric else None,
                     "limits": {k: v.value for k, v in t.resources.items()},
                     "runners": runners})
    return rows
