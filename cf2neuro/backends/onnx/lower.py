"""An IR graph as an ONNX model: the engine unrolled over T steps by torch's exporter.

    summary = export_onnx(graph, "model.onnx", timesteps=4, probes=("layers.2",))
    meta = read_metadata(model_proto, "model.onnx")   # what cf2neuro wrote into it

The model is the engine itself (`cf2neuro.ir.engine.Engine`) wrapped in a
torch module whose forward maps x ``[T, B, *shape]`` to the output traces
(and the probes' traces) ``[T, B, ...]``; torch's ONNX exporter traces it
with T fixed and the batch dynamic. A float graph runs the float numerics;
a quantized graph runs its back end's numerics in their integer-only mode
(int64 products, convolutions as gathers), and the file is refused unless
every tensor in it is an integer or bool, so onnxruntime computes exactly
what the emulator computes. Quantized models take the int64 input payloads
(the runner converts float inputs with the numerics' own rule).

The cf2neuro metadata (``metadata_props["cf2neuro"]``, JSON) states the
time steps, the input, the outputs and probes, and for a quantized graph
its ``fixed_point`` dict (input scale and payload, latency, target, back end).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings

import numpy as np
import torch

from ...errors import BadInputError, Cf2NeuroError, RuntimeMissingError, UnsupportedError
from ...fileio import atomic_path
from ...ir.engine import Engine
from ...ir.graph import Graph
from ...ir.numerics import FloatNumerics

log = logging.getLogger(__name__)

META_KEY = "cf2neuro"
FORMAT_VERSION = 1
OPSET = 18
INSTALL_HINT = ("pip install -c .venv/constraints.txt onnx onnxscript onnxruntime (the extra "
                "cf2neuro[onnx]; the constraints file keeps torch as it is)")
CHATTY = ("torch.onnx", "onnx_ir", "onnxscript")  # loggers quieted while exporting
EXAMPLE_BATCH = 2  # torch.export specializes a dimension of size 1: trace with 2


def _onnx():
    try:
        import onnx
    except ImportError:
        raise RuntimeMissingError(f"the ONNX back end needs the 'onnx' package: "
                                  f"{INSTALL_HINT}") from None
    return onnx


class _Unrolled(torch.nn.Module):
    """The engine as a torch module: x [T, B, *shape] -> the traces named by `keys`."""

    def __init__(self, engine: Engine, probes: tuple[str, ...], keys: list[str]):
        super().__init__()
        self.engine, self.probes, self.keys = engine, probes, keys
        self.schedule = "auto"

    def forward(self, x):
        res = self.engine.run(x, self.probes, self.schedule)
        return tuple(res[k] for k in self.keys)


def export_onnx(graph: Graph, path, strict: bool = False, dt: float | None = None,
                timesteps: int | None = None, probes=(), **_) -> dict:
    """Write `graph` to `path` as ONNX (atomically), T = `timesteps` steps; see the module doc.

    `probes` ("NAME", "v:NAME") become extra outputs of that name. `strict`
    has nothing to refuse here (ONNX states every op the engine runs).
    Returns {"timesteps", "opset", "nodes", "inputs", "outputs", "probes",
    "integer_only", "latency"}.
    """
    onnx = _onnx()
    if isinstance(timesteps, bool) or not isinstance(timesteps, (int, np.integer)) \
            or timesteps < 1:
        raise BadInputError(f"ONNX export of {path}: needs the number of time steps T >= 1 "
                            f"(the file unrolls them), got {timesteps!r}; pass timesteps=T "
                            f"(a checkpoint's config states train.timesteps)")
    T, probes = int(timesteps), tuple(probes)
    quantized = isinstance(graph.meta.get("fixed_point"), dict)
    if dt is not None and not quantized:
        graph = graph.copy()
        graph.meta["dt"] = float(dt)
    engine = Engine(graph, _numerics(graph) if quantized else FloatNumerics())
    if len(engine.graph.inputs) != 1:
        raise UnsupportedError(f"ONNX export of {path}: the graph has inputs "
                               f"{engine.graph.inputs}; the exporter takes graphs with one "
                               f"Input node")
    name = engine.graph.inputs[0]
    shape = list(engine.graph[name].shape)
    example = torch.zeros((T, EXAMPLE_BATCH, *shape),
                          dtype=torch.int64 if quantized else torch.float32)
    res = engine.run(example, probes)  # eagerly first: bad probes fail here, readably
    outputs = list(res)[:len(engine.graph.outputs)]  # "output" first, other Output nodes
    keys = list(dict.fromkeys(outputs + list(probes)))
    model = _export(_Unrolled(engine, probes, keys).eval(), example, name, keys, quantized,
                    f"ONNX export of {path}")
    got = [o.name for o in model.graph.output]
    if got != keys:
        raise UnsupportedError(f"torch's ONNX exporter named the outputs {got}, not {keys}; "
                               f"rename the probed nodes to plain names and export again")
    fp = graph.meta["fixed_point"] if quantized else None
    latency = int(engine.numerics.latency(engine.graph)) if quantized else 0
    meta = {"format": FORMAT_VERSION, "timesteps": T,
            "input": {"name": name, "shape": shape, "dtype": str(example.dtype)[6:]},
            "outputs": outputs, "probes": list(probes), "quantized": quantized, "latency": latency,
            "fixed_point": _jsonable(fp), "graph": _jsonable(
                {k: graph.meta.get(k) for k in ("name", "source", "dt") if k in graph.meta})}
    del model.metadata_props[:]
    model.metadata_props.add(key=META_KEY, value=json.dumps(meta, sort_keys=True))
    model.producer_name = "cf2neuro"
    _check(model, path)
    if quantized:
        check_integer_only(model, where=str(path))
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    log.info("wrote %s: T = %d, %d ONNX nodes, outputs %s", path, T, len(model.graph.node), keys)
    return {"timesteps": T, "opset": _opset(model), "nodes": len(model.graph.node),
            "inputs": [name], "outputs": outputs, "probes": list(probes),
            "integer_only": quantized, "latency": latency}


def _numerics(graph: Graph):
    """The quantized graph's back-end numerics in integer-only mode."""
    from ...runners.emulator import backend_of

    backend = backend_of(graph)
    try:
        return backend.load("numerics")(None, integer_only=True)
    except TypeError:
        raise UnsupportedError(f"back end {backend.name!r}: its numerics have no integer-only "
                               f"mode (integer_only=True), which an integer ONNX export "
                               f"needs; run the graph with the emulator instead") from None


def _integer_div(self, other, rounding_mode=None):
    """aten.div with a rounding mode, exact on integers (torchlib divides those in float32)."""
    from onnxscript import opset18 as op
    from onnxscript.function_libs.torch_lib.ops.core import aten_div_mode

    dtype = getattr(self, "dtype", None)
    if dtype is not None and dtype.is_integer() and rounding_mode == "trunc":
        # |a| / |b| is the same in every rounding; the signs put it back toward zero
        return op.Mul(op.Div(op.Abs(self), op.Abs(other)),
                      op.Mul(op.Sign(self), op.Sign(other)))
    return aten_div_mode(self, other, rounding_mode)


def _export(module, example, name: str, keys: list[str], quantized: bool, where: str):
    """The ModelProto of torch's exporter (dynamo; TorchScript where dynamo is unknown)."""
    onnx = _onnx()
    buf, caught = io.StringIO(), []
    # the exporter's progress: "torchvision is not installed", initializers deduplicated, ...
    quiet = [logging.getLogger(logger) for logger in CHATTY]
    levels = [q.level for q in quiet]
    try:
        for q in quiet:
            q.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(buf), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kw = {"opset_version": OPSET, "input_names": [name], "output_names": keys}
            try:
                table = {torch.ops.aten.div.Tensor_mode: _integer_div,
                         torch.ops.aten.div.Scalar_mode: _integer_div} if quantized else None
                program = torch.onnx.export(
                    module, (example,), dynamo=True, verbose=False, external_data=False,
                    dynamic_shapes=({1: torch.export.Dim("batch")},),
                    custom_translation_table=table, **kw)
                return program.model_proto
            except TypeError as e:  # torch < 2.5: no dynamo=True
                if "dynamo" not in str(e) and "custom_translation_table" not in str(e):
                    raise
                out = io.BytesIO()
                module.schedule = "step"  # TorchScript's trace would fix B in T·B reshapes
                torch.onnx.export(module, (example,), out, dynamic_axes={name: {1: "batch"}},
                                  **kw)
                return onnx.load_from_string(out.getvalue())
    except Exception as e:
        ours = _cause(e)
        if ours is not None:
            raise ours from None
        if isinstance(e, ImportError):
            raise RuntimeMissingError(f"{where}: torch's ONNX exporter needs a package that "
                                      f"is not installed ({e}): {INSTALL_HINT}") from None
        raise UnsupportedError(f"{where}: torch's ONNX exporter cannot lower the graph "
                               f"({_first_line(e)}); run it with the reference or emulator "
                               f"runner, or report the op it names") from e
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
        for w in caught:
            log.debug("torch.onnx: %s", w.message)
        if buf.getvalue():
            log.debug("torch.onnx output:\n%s", buf.getvalue())


def _cause(e: BaseException) -> Cf2NeuroError | None:
    """Our own error raised while the exporter traced the engine (torch wraps it)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, Cf2NeuroError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _first_line(e: BaseException) -> str:
    while e.__cause__ is not None:  # the innermost error says what failed
        e = e.__cause__
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    text = f"{type(e).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:297] + "..."


def _check(model, where) -> None:
    """The checker's full check and strict shape inference, or an UnsupportedError."""
    onnx = _onnx()
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise UnsupportedError(f"the ONNX model for {where} fails onnx's checker "
                               f"({_first_line(e)}); this is an exporter bug: run the graph "
                               f"with the reference or emulator runner and report it") from None


#: ONNX element types that hold integers (and bool): a quantized model uses nothing else.
INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 9, 10, 12, 13})  # uint8..int64, bool, u32, u64


def check_integer_only(model, where: str = "the model") -> None:
    """UnsupportedError naming the first tensor (and its op) that is not an integer or bool."""
    onnx = _onnx()
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    made_by = {o: f"{n.op_type} node {n.name!r}" for n in g.node for o in n.output}
    names = [*types, *(o for n in g.node for o in n.output if o and o not in types)]
    for tensor in names:
        typ = types.get(tensor, 0)
        if typ not in INTEGER_TYPES:
            kind = onnx.TensorProto.DataType.Name(typ) if typ else "untyped"
            raise UnsupportedError(
                f"{where}: tensor {tensor!r} ({kind}, made by "
                f"{made_by.get(tensor, 'an input or initializer')}) is not an integer; a "
                f"quantized model must compute in integers only to match the emulator. "
                f"Export the float graph instead, or report the op")


def read_metadata(model, where) -> dict:
    """The cf2neuro metadata of a ModelProto; BadInputError when it has none."""
    raw = next((p.value for p in model.metadata_props if p.key == META_KEY), None)
    if raw is None:
        raise BadInputError(f"{where} is not a cf2neuro export (no {META_KEY!r} metadata); "
                            f"export one with `cf2neuro export CKPT --out model.onnx`")
    try:
        meta = json.loads(raw)
        version = meta.get("format") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise ValueError(f"it states format {version!r}")
        lacks = [k for k in ("timesteps", "input", "outputs", "probes", "quantized", "latency")
                 if k not in meta]
        if lacks or not {"name", "shape"} <= set(meta["input"]) or \
                (meta["quantized"] and not isinstance(meta.get("fixed_point"), dict)):
            raise ValueError(f"it lacks {lacks or 'input name/shape or fixed_point'}")
    except (ValueError, TypeError) as e:
        raise BadInputError(f"{where}: its {META_KEY!r} metadata is not cf2neuro's format "
                            f"{FORMAT_VERSION} ({e}); export it again with this cf2neuro "
                            f"(`cf2neuro export CKPT --out model.onnx`)") from None
    return meta


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _jsonable(obj):
    """Graph metadata as JSON values (numpy scalars and arrays become numbers and lists)."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist")
                                 else str(o)))
