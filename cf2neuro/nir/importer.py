"""NIR -> IR: read a NIR graph (a file or a `nir.NIRGraph`) into cf2neuro's IR.

One import function per NIR node type in `IMPORTERS` (keyed by the NIR
class; the neurons' are in `neurons.py`, shared helpers in `values.py`).
Each returns the IR op, its parameters and attributes; the graph walk
around them adds the edges. Covered: Input, Output, Affine, Linear,
Conv2d, SumPool2d, AvgPool2d, Flatten, Scale, Threshold, LIF, IF, LI,
CubaLIF, Delay, nested NIRGraphs (flattened), and recurrent edges. Not
covered: Conv1d, I, CubaLI: refused with the reason.

Semantics, following NIR and the frameworks that write it (see
`discretize` for the per-framework table):

- Several edges into one node **sum** (NIR's rule): the IR makes that an
  explicit ``Add`` node in front of it (named by cf2neuro's
  ``cf2neuro.add`` metadata when present, else ``<node>.sum``).
- An edge that closes a cycle is a recurrent connection: the IR delivers
  the source's previous step there (a one-step delay), as snnTorch's
  RLeaky/RSynaptic and the NIR paper's Braille network do.
- LIF, LI and CubaLIF are forward-Euler stepped with dt (the user's, else
  the graph's ``metadata["dt"]``; neither is an error that says to pass
  --dt); IF integrates ``v += r·x`` per step. Spikes are binary, fire when
  ``v > v_threshold`` and reset to ``v_reset`` in the same step.
- Conv2d's ``input_shape`` may be missing: shapes are inferred from the
  Input nodes, and a given ``input_shape`` (or Flatten ``input_type``, or
  Output shape) that disagrees with the inference is an error.
- NIR ``Flatten`` dims count per-sample dims (NIR's own type inference).
- Input and Output nodes may have any names (Spyx calls its Input
  ``input``). An Input type with a leading batch dimension of 1 (``[1, N]``
  or ``[1, C, H, W]``, as Norse and Rockpool write) is read without it when
  the rest then fits the graph (its consumers' weights, the shapes the file
  declares); when only the shape as written fits, it is kept. An Output
  declaring ``[1, *shape]`` is accepted (`shapes`).
- ``Threshold`` is the IR's stateless ``Threshold`` op: ``1`` where the
  input is ``> threshold``, else ``0`` (NIR's Heaviside), per step. The
  float runners run it; fixed-point targets refuse it (no integer form).
- Files cf2neuro wrote portably keep some node metadata in the graph's
  (`compat`); it is put back on the nodes first.
- cf2neuro's own CF neurons (``metadata["cf2neuro.neuron"] ==
  "circulate_firing"``) come back as ``CFNeuron`` nodes with their exact
  θ, β, K and signed, unless ``read_cf_metadata=False``, which reads them as
  the plain NIR LIF/IF any other tool sees.

Every problem is a `cf2neuro.errors.BadInputError` (CLI exit 2) that names
the file and node: not a NIR file, an unknown node type, no Input node,
inconsistent shapes, a missing dt.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from os import PathLike
from pathlib import Path

import nir
import numpy as np

from ..errors import BadInputError, UnsupportedError
from ..ir import Graph, IRError
from .checks import check_imported
from .compat import merge_node_metadata
from .discretize import resolve_dt
from .export import KEY_ADD, KEY_ADD_META, KEY_FIXED, KEY_META, KEY_ORDER
from .neurons import _cubalif, _if, _li, _lif, _needs_dt
from .shapes import check_declared_shapes, leading_batch
from .values import IDENTITY, Imported, Importer, _arr, _Context, _pair, _plain

log = logging.getLogger(__name__)


# --- importers ---------------------------------------------------------------

def _input(name, node: nir.Input, ctx) -> Imported:
    shape = node.input_type.get("input") if node.input_type else None
    if shape is None:
        raise BadInputError(f"{ctx.where}: Input node {name!r} has no shape; cf2neuro needs "
                            f"the per-sample input shape (without batch and time)")
    shape = [int(s) for s in _arr(shape).reshape(-1)]
    return "Input", {}, {"shape": shape[1:] if name in ctx.drop_batch else shape}


def _output(name, node, ctx) -> Imported:
    return "Output", {}, {}


def _affine(name, node: nir.Affine, ctx) -> Imported:
    w = _arr(node.weight)
    if w.ndim != 2:
        raise UnsupportedError(f"{ctx.where}: node {name!r}: only 2-D Affine/Linear weights "
                               f"[out, in] are supported, got shape {list(w.shape)}")
    params = {"weight": w}
    if getattr(node, "bias", None) is not None:
        params["bias"] = _arr(node.bias)
    return "Linear", params, {}


def _conv2d(name, node: nir.Conv2d, ctx) -> Imported:
    w = _arr(node.weight)
    params = {"weight": w}
    if _plain(node.metadata.get("has_bias", True)):
        params["bias"] = _arr(node.bias)
    pad = node.padding
    if isinstance(pad, (str, bytes)):
        pad = _plain(pad)
        if pad == "valid":
            pad = 0
        elif pad == "same" and all(k % 2 for k in w.shape[2:]):
            d = _pair(node.dilation, "dilation", name)
            pad = [d[i] * (w.shape[2 + i] - 1) // 2 for i in range(2)]
        else:
            raise UnsupportedError(f"{ctx.where}: node {name!r}: padding {pad!r} is supported "
                                   f"only as 'valid' or 'same' with odd kernels")
    attrs = {"stride": _pair(node.stride, "stride", name),
             "padding": _pair(pad, "padding", name),
             "dilation": _pair(node.dilation, "dilation", name),
             "groups": int(_plain(node.groups))}
    return "Conv2d", params, attrs


def _pool(op: str) -> Importer:
    def lower(name, node, ctx) -> Imported:
        attrs = {"kernel": _pair(node.kernel_size, "kernel_size", name),
                 "stride": _pair(node.stride, "stride", name),
                 "padding": _pair(node.padding, "padding", name)}
        if op == "AvgPool2d":
            attrs["count_include_pad"] = bool(_plain(node.metadata.get("count_include_pad",
                                                                      True)))
        return op, {}, attrs
    return lower


def _flatten(name, node: nir.Flatten, ctx) -> Imported:
    return "Flatten", {}, {"start_dim": int(_plain(node.start_dim)),
                           "end_dim": int(_plain(node.end_dim))}


def _scale(name, node: nir.Scale, ctx) -> Imported:
    return "Scale", {"scale": _arr(node.scale)}, {}


def _delay(name, node: nir.Delay, ctx) -> Imported:
    """NIR's Delay (seconds) as the IR's Delay in whole steps of dt, one per node."""
    steps = _arr(node.delay).astype(np.float64).reshape(-1) / ctx.dt
    k = int(round(float(steps[0]))) if steps.size else 0
    if not steps.size or not np.allclose(steps, k, rtol=0, atol=1e-6) or k < 0:
        raise BadInputError(f"{ctx.where}: Delay {name!r} delays by {_arr(node.delay).tolist()}"
                            f" s; cf2neuro delays a node by one whole number of steps of dt = "
                            f"{ctx.dt:g} s (check --dt)")
    return ("Delay", {}, {"steps": k}) if k else ("Identity", {}, {})


def _threshold(name, node: nir.Threshold, ctx) -> Imported:
    return "Threshold", {"threshold": _arr(node.threshold)}, {}


IMPORTERS: dict[type, Importer] = {
    nir.Input: _input,
    nir.Output: _output,
    nir.Affine: _affine,
    nir.Linear: _affine,
    nir.Conv2d: _conv2d,
    nir.SumPool2d: _pool("SumPool2d"),
    nir.AvgPool2d: _pool("AvgPool2d"),
    nir.Flatten: _flatten,
    nir.Scale: _scale,
    nir.Threshold: _threshold,
    nir.Delay: _delay,
    nir.LIF: _lif,
    nir.IF: _if,
    nir.LI: _li,
    nir.CubaLIF: _cubalif,
}


# --- reading files -------------------------------------------------------------

def read_nir_file(path: str | PathLike) -> nir.NIRGraph:
    """`nir.read` behind checks that turn every failure into a BadInputError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"NIR file {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise BadInputError(f"{path} is an HDF5 file but not a NIR graph (it has no "
                                    f"'node' group); write it with nir.write")
            _check_types(f["node"], path, "")
    except BadInputError:
        raise
    except Exception as e:  # noqa: BLE001  (damaged HDF5: OSError, RuntimeError, KeyError)
        raise BadInputError(f"{path} is not a NIR file (not readable HDF5: {e}); pass a graph"
                            f" written by nir.write or `cf2neuro export`") from None
    try:
        # type_check=False: cf2neuro infers and checks shapes itself, with errors that
        # name the node (NIR's own check rejects e.g. Rockpool's graphs outright).
        return nir.read(path, type_check=False)
    except Exception as e:  # nir.read raises Assertion/Key/Type/ValueErrors alike
        raise BadInputError(f"{path} is not a readable NIR graph ({type(e).__name__}: "
                            f"{str(e)[:200]})") from None


def _check_types(group, path, prefix: str) -> None:
    """Name the first node whose type neither NIR nor cf2neuro knows."""
    if "nodes" not in group:
        raise BadInputError(f"{path} is not a NIR graph: {prefix or 'the root'} has no nodes")
    for key, node in group["nodes"].items():
        t = node.get("type") if hasattr(node, "get") else None
        t = _plain(t[()]) if t is not None else None
        if t == "NIRGraph":
            _check_types(node, path, f"{prefix}{key}.")
        elif t not in {c.__name__ for c in IMPORTERS}:
            known = "Conv1d, I, CubaLI"
            kind = ("a NIR node type cf2neuro does not import" if t in known.split(", ")
                    else "an unknown node type")
            raise BadInputError(
                f"{path}: node {prefix + key!r} has {kind} {t!r}; cf2neuro reads "
                f"{', '.join(sorted(c.__name__ for c in IMPORTERS))} and nested NIRGraphs")


# --- the graph ---------------------------------------------------------------

def _flatten_subgraphs(ng: nir.NIRGraph, prefix: str = ""):
    """Nodes and edges with nested NIRGraphs inlined; their Input/Output become Identity."""
    nodes: dict[str, object] = {}
    redirect_in: dict[str, str] = {}
    redirect_out: dict[str, str] = {}
    edges: list[tuple[str, str]] = []
    for key, node in ng.nodes.items():
        name = prefix + key
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten_subgraphs(node, name + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise UnsupportedError(f"subgraph {name!r} has {len(ins)} Input and "
                                       f"{len(outs)} Output nodes; cf2neuro inlines only "
                                       f"subgraphs with one of each")
            for k in (ins[0], outs[0]):
                sub_nodes[f"{name}.{k}"] = IDENTITY
            redirect_in[name], redirect_out[name] = f"{name}.{ins[0]}", f"{name}.{outs[0]}"
            nodes.update(sub_nodes)
            edges += sub_edges
        else:
            nodes[name] = node
    for a, b in ng.edges:
        a, b = prefix + _plain(a), prefix + _plain(b)
        edges.append((redirect_out.get(a, a), redirect_in.get(b, b)))
    return nodes, edges


def _order(nodes: dict, edges, metadata: dict) -> list[str]:
    """cf2neuro's recorded node order, else breadth-first from the Inputs by edge order."""
    recorded = metadata.get(KEY_ORDER)
    if recorded is not None:
        try:
            order = json.loads(_plain(recorded))
            if isinstance(order, list) and set(order) == set(nodes):
                return order
        except (json.JSONDecodeError, TypeError):
            pass
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        succ[a].append(b)
    order, seen = [], set()
    queue = deque(n for n, v in nodes.items() if isinstance(v, nir.Input))
    while queue:
        n = queue.popleft()
        if n in seen:
            continue
        seen.add(n)
        order.append(n)
        queue.extend(succ[n])
    return order + [n for n in nodes if n not in seen]


def from_nir(source: str | PathLike | nir.NIRGraph, dt: float | None = None, *,
             read_cf_metadata: bool = True, peer: str | None = None) -> Graph:
    """Read a NIR graph (path or `nir.NIRGraph`) into a validated IR `Graph`.

    `dt` (seconds per step) overrides the graph's ``metadata["dt"]``; one of
    them is required when the graph has LIF, LI or CubaLIF neurons. `peer`
    ("snntorch", "norse", "sinabs", "rockpool", "spyx") reads the graph as
    that framework runs it (`peers`), its default dt included.
    """
    if isinstance(source, nir.NIRGraph):
        ng, where = source, "the NIR graph"
    else:
        ng, where = read_nir_file(source), str(source)
    if peer is not None:
        from .peers import read_as

        ng, dt = read_as(peer, ng, dt)
        where = f"{where} (read as {peer} runs it)"
    metadata = {k: _plain(v) for k, v in (ng.metadata or {}).items()}
    merge_node_metadata(ng.nodes, metadata)
    nodes, edges = _flatten_subgraphs(ng)
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise BadInputError(f"{where}: edge ({a!r}, {b!r}) names {end!r}, which is "
                                    f"not a node of the graph")
    if not any(isinstance(v, nir.Input) for v in nodes.values()):
        raise BadInputError(f"{where} has no Input node: cf2neuro needs one to know where "
                            f"data enters and its shape (add nir.Input(input_type=[...]))")
    for name, node in nodes.items():
        if node is not IDENTITY and type(node) not in IMPORTERS:
            raise BadInputError(f"{where}: node {name!r} has the unsupported NIR type "
                                f"{type(node).__name__}; cf2neuro reads "
                                f"{', '.join(sorted(c.__name__ for c in IMPORTERS))}")
    ctx = _Context(where, None, read_cf_metadata)
    needs = any(_needs_dt(v, ctx) for v in nodes.values() if v is not IDENTITY)
    ctx.dt = resolve_dt(dt, metadata.get("dt"), needs, where)
    ctx.drop_batch = leading_batch(nodes)
    if ctx.drop_batch:
        try:
            graph = _checked(nodes, edges, metadata, ctx)
            log.info("%s: read the leading 1 of Input %s as a batch dimension", where,
                     sorted(ctx.drop_batch))
        except BadInputError:  # the 1 is a real dimension of the data: keep it
            ctx.drop_batch = frozenset()
    if not ctx.drop_batch:
        graph = _checked(nodes, edges, metadata, ctx)
    check_imported(graph, where)  # NaN parameters, dt/tau >= 1, cycles without a neuron
    return graph


def _checked(nodes: dict, edges, metadata: dict, ctx: _Context) -> Graph:
    """The IR graph, validated and checked against the shapes the file declares."""
    graph = _build(nodes, edges, metadata, ctx)
    try:
        graph.validate()
    except IRError as e:
        raise BadInputError(f"{ctx.where}: inconsistent graph: {e}") from None
    check_declared_shapes(nodes, graph, ctx.where, IDENTITY)
    return graph


def _build(nodes: dict, edges, metadata: dict, ctx: _Context) -> Graph:
    meta = _json(metadata.get(KEY_META))
    if ctx.dt is not None:
        meta["dt"] = ctx.dt
    if isinstance(metadata.get(KEY_FIXED), dict):
        meta["fixed_point"] = {k: _plain(v) for k, v in metadata[KEY_FIXED].items()}
    graph = Graph(meta)
    sources: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a in sources[b]:
            raise BadInputError(f"{ctx.where}: duplicate edge ({a!r}, {b!r})")
        sources[b].append(a)
    for name in _order(nodes, edges, metadata):
        node = nodes[name]
        if node is IDENTITY:
            op, params, attrs, node_meta = "Identity", {}, {}, {}
        else:
            op, params, attrs = IMPORTERS[type(node)](name, node, ctx)
            node_meta = _json(node.metadata.get(KEY_META))
            _read_fixed_point(node.metadata.get(KEY_FIXED), params, attrs)
        ins = sources[name]
        if op == "Input":
            if ins:
                raise BadInputError(f"{ctx.where}: Input node {name!r} has incoming edges "
                                    f"from {ins}")
        elif not ins:
            raise BadInputError(f"{ctx.where}: node {name!r} ({op}) has no incoming edge; "
                                f"connect it to the Input or remove it")
        elif len(ins) > 1:  # NIR sums fan-in; the IR says so with an Add
            m = getattr(node, "metadata", {})
            add = base = _plain(m.get(KEY_ADD)) or f"{name}.sum"
            k = 1
            while add in graph or add in nodes:  # NIR names are taken first
                add, k = f"{base}_{k}", k + 1
            graph.add_node(add, "Add", ins, meta=_json(m[KEY_ADD_META]) if KEY_ADD_META in m
                           else {"nir": f"fan-in of {name}"})  # cf2neuro's own Add: its meta
            ins = [add]
        graph.add_node(name, op, ins, params, attrs, node_meta)
    return graph


def _read_fixed_point(fixed, params: dict, attrs: dict) -> None:
    """A quantized node's integer form: arrays back to params, scalars to attrs["fixed_point"]."""
    if not isinstance(fixed, dict):
        return
    attrs["fixed_point"] = {}
    for k, v in fixed.items():
        if isinstance(v, np.ndarray) and v.ndim > 0:
            params[k] = v
        else:
            attrs["fixed_point"][k] = _plain(v)


def _json(raw) -> dict:
    """A JSON-string metadata entry written by cf2neuro ({} when absent or unreadable)."""
    if raw is None:
        return {}
    try:
        value = json.loads(_plain(raw))
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}
