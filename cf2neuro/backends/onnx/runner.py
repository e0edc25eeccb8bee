"""The ``onnxruntime`` runner: a cf2neuro ONNX export, run by onnxruntime on the CPU.

    runner = OnnxRuntimeRunner()
    res = runner.run(RunRequest(None, x, model_file=Path("model.onnx")))  # an exported file
    res = runner.run(RunRequest(qgraph, x, probes=("layers.2",)))         # exported on the fly

A model file must be one cf2neuro wrote (`lower.export_onnx`): its metadata
states T, the input shape, the probes it records and, for a quantized
model, how float inputs become its int64 payloads (the numerics' own rule:
``round(x · input_scale)``, clipped; integer inputs pass as they are). A
graph is exported to a temporary directory first, with T = x.shape[0] and
the requested probes. Quantized outputs are int64 and equal the emulator's
(latency already removed, as the emulator reports it).

Timeout: the run is stopped through onnxruntime's ``RunOptions.terminate``
when the request's timeout has passed (`RunnerTimeoutError`).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ...errors import BadInputError, RunnerError, RunnerTimeoutError, RuntimeMissingError
from ...ir.engine import check_deadline
from ...runners.contract import Runner, RunRequest, RunResult
from .lower import INSTALL_HINT

log = logging.getLogger(__name__)

TMP_PREFIX = "cf2neuro-onnx-"


def _onnxruntime():
    try:
        import onnx  # noqa: F401  (reads the metadata)
        import onnxruntime
    except ImportError:
        raise RuntimeMissingError(f"the onnxruntime runner needs the 'onnxruntime' and 'onnx' "
                                  f"packages: {INSTALL_HINT}") from None
    return onnxruntime


def load_model(path: Path):
    """(the file's bytes, its cf2neuro metadata); BadInputError for anything else."""
    import onnx

    from .lower import read_metadata

    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInputError(f"cannot read the ONNX file {path} ({e.strerror or e}); pass a "
                            f"readable file `cf2neuro export` wrote") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # noqa: BLE001  (protobuf's DecodeError, or what garbage raises)
        raise BadInputError(f"{path} is not an ONNX model ({type(e).__name__}: "
                            f"{str(e).strip()[:120] or 'unreadable'}); export one with "
                            f"`cf2neuro export CKPT --out model.onnx`") from None
    meta = read_metadata(model, path)
    _check_metadata(meta, path)
    return data, meta


def _check_metadata(meta: dict, path) -> None:
    """The metadata's values have the types the run reads (a hand-edited file may not)."""
    def count(v, low):
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    def names(v):
        return isinstance(v, list) and all(isinstance(n, str) for n in v)

    inp = meta["input"]
    problems = [what for what, ok in (
        ("timesteps must be an int >= 1", count(meta["timesteps"], 1)),
        ("latency must be an int >= 0", count(meta["latency"], 0)),
        ("input.name must be a string", isinstance(inp["name"], str)),
        ("input.shape must be a list of ints >= 1",
         isinstance(inp["shape"], list) and all(count(d, 1) for d in inp["shape"])),
        ("outputs must be a non-empty list of names", names(meta["outputs"])
         and len(meta["outputs"]) > 0),
        ("probes must be a list of names", names(meta["probes"])),
        ("quantized must be true or false", isinstance(meta["quantized"], bool)),
    ) if not ok]
    if problems:
        raise BadInputError(f"{path}: its cf2neuro metadata is damaged ({'; '.join(problems)});"
                            f" export it again with `cf2neuro export CKPT --out model.onnx`")


def check_input(x: np.ndarray, T: int, shape, where) -> None:
    """x must be [T, B, *shape] with the model's T, B >= 1, and finite values."""
    want = [T, "B", *shape]
    if x.ndim >= 2 and x.shape[1] == 0:
        raise BadInputError(f"inputs for {where} hold no sample (B = 0, shape "
                            f"{list(x.shape)}); pass at least one")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise BadInputError(f"inputs for {where} hold NaN or infinite values; clean the "
                            f"data (e.g. np.nan_to_num) before running it")
    if x.ndim != len(shape) + 2 or x.shape[0] != T or list(x.shape[2:]) != list(shape):
        raise BadInputError(f"inputs for {where} must be shaped [{', '.join(map(str, want))}] "
                            f"(T = {T} steps it was exported with, any batch B), got "
                            f"{list(x.shape)}; pass x with that shape, or run the checkpoint, "
                            f"which exports the T of its inputs")


def payloads(meta: dict, x: np.ndarray) -> np.ndarray:
    """The model's input array: float32, or a quantized model's int64 payloads."""
    if not meta["quantized"]:
        return np.ascontiguousarray(x, dtype=np.float32)
    from ...backends import get_backend

    fp = meta["fixed_point"]
    numerics = get_backend(fp.get("backend") or "loihi2").load("numerics")()
    numerics.graph_fp = fp  # the graph's input scale and payload range
    return numerics.prepare_input(x).cpu().numpy()


class OnnxRuntimeRunner(Runner):
    """onnxruntime's CPU execution provider on a cf2neuro ONNX export."""

    name = "onnxruntime"
    formats = ("float", "fixed")

    def available(self) -> tuple[bool, str]:
        try:
            ort = _onnxruntime()
        except RuntimeMissingError as e:
            return False, str(e)
        return True, f"onnxruntime {ort.__version__}"

    def run(self, request: RunRequest) -> RunResult:
        t0 = time.perf_counter()
        ort = _onnxruntime()
        deadline = request.deadline()
        x = np.asarray(request.x)
        timings = {"export": 0.0}
        if request.model_file is not None:
            where = path = Path(request.model_file)
            data, meta = load_model(path)
        else:  # exported for this run, into a directory that goes with it
            where = "the graph (exported to ONNX)"
            with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
                path = Path(tmp) / "model.onnx"
                self._export(request, x, path, deadline)
                data, meta = load_model(path)
            timings["export"] = time.perf_counter() - t0
        check_input(x, int(meta["timesteps"]), meta["input"]["shape"], where)
        missing = [p for p in request.probes if p not in meta["probes"]]
        if missing:
            raise BadInputError(f"{where} records no probe {', '.join(map(repr, missing))} (it "
                                f"records {meta['probes'] or 'none'}); run the checkpoint "
                                f"with --runner onnxruntime --probe NAME, which exports them")
        feed = payloads(meta, x)
        check_deadline(deadline)
        t1 = time.perf_counter()
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are about placement
        try:
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001  (onnxruntime's errors derive from Exception only)
            raise BadInputError(f"onnxruntime cannot load {where} ({str(e).strip()[:200]}); "
                                f"export it again with `cf2neuro export`") from None
        timings["session"] = time.perf_counter() - t1
        names = list(dict.fromkeys(meta["outputs"] + list(request.probes)))
        t2 = time.perf_counter()
        values = self._session_run(session, names, {meta["input"]["name"]: feed}, deadline, ort,
                                   where)
        timings["run"] = time.perf_counter() - t2
        res = dict(zip(names, values))
        timings["total"] = time.perf_counter() - t0
        return RunResult({k: res[k] for k in meta["outputs"]},
                         {p: res[p] for p in request.probes}, int(meta["latency"]), timings)

    def _export(self, request: RunRequest, x: np.ndarray, path: Path, deadline) -> None:
        from .lower import export_onnx

        graph = self.check_graph(request)
        check_deadline(deadline)  # before the export, which cannot be stopped
        name = graph.inputs[0] if len(graph.inputs) == 1 else None
        if x.ndim < 2:
            raise BadInputError(f"inputs must be [T, B, *input_shape] (time first), got "
                                f"{list(x.shape)}")
        if name is not None:
            check_input(x, x.shape[0], graph[name].shape, f"input {name!r} of the graph")
        export_onnx(graph, path, timesteps=x.shape[0], probes=request.probes)

    @staticmethod
    def _session_run(session, names, feed, deadline, ort, where):
        """session.run, stopped through RunOptions.terminate once the deadline has passed."""
        options = ort.RunOptions()
        timer = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                check_deadline(deadline)
            timer = threading.Timer(left, lambda: setattr(options, "terminate", True))
            timer.daemon = True
            timer.start()
        try:
            return session.run(names, feed, options)
        except Exception as e:  # noqa: BLE001  (onnxruntime's errors derive from Exception only)
            if options.terminate:
                raise RunnerTimeoutError(f"onnxruntime running {where} did not finish within "
                                         f"its timeout and was stopped; pass a larger "
                                         f"--timeout (seconds) or fewer samples") from None
            raise RunnerError(f"onnxruntime failed running {where} ({str(e).strip()[:300]}); "
                              f"check the inputs, or run the graph with the reference or "
                              f"emulator runner") from None
        finally:
            if timer is not None:
                timer.cancel()
