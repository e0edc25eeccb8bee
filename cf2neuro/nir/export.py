"""IR -> NIR: write a cf2neuro graph as a `nir.NIRGraph` (DESIGN §3).

Each IR op has one lowering function in `EXPORTERS`, keyed by op name (as
Norse's ``export_nir.py`` maps module types). Ops NIR cannot state are in
`REFUSED` with the reason; `Add` and `Identity` are not written as nodes
(see "Add" below).

What goes into the file
-----------------------
- A CF neuron becomes ``nir.LIF`` (``nir.IF`` when β = 1) with per-neuron
  arrays, ``tau = dt/(1-β)``, ``r = tau/dt = 1/(1-β)`` (unit input gain),
  ``v_leak = 0``, ``v_threshold = θ``, ``v_reset = 0``, and node metadata
  ``{"cf2neuro.neuron": "circulate_firing", "K", "signed", "reset":
  "subtract", "threshold", "beta"}`` (plus ``threshold_array`` /
  ``beta_array`` for per-neuron parameters) so cf2neuro reads it back
  exactly. dt is ``graph.meta["dt"]``, else `DEFAULT_DT` (1e-4 s, what
  snnTorch's importer assumes), and is stored in the graph metadata.
- Linear -> ``nir.Affine`` (``nir.Linear`` without bias); Conv2d ->
  ``nir.Conv2d`` with ``input_shape`` (a zero bias when the IR has none,
  metadata ``has_bias = False``); AvgPool2d / SumPool2d / Flatten / Scale /
  Threshold -> the NIR node of the same name; LIF / IF / LI / CubaLIF ->
  themselves.
- **Pooling**: a float ``AvgPool2d`` stays ``nir.AvgPool2d`` (NIR has it:
  the window's mean, what Norse and snnTorch build); a sum pooling in the IR
  (a quantized graph's pools, `cf2neuro.quant.quantize` turns each AvgPool2d
  into a SumPool2d with 1/k² folded into its consumer; an imported
  SumPool2d) is ``nir.SumPool2d``, which Norse, Sinabs and Spyx import.
- **Names**: NIR nodes keep the IR's names; ``input_name`` / ``output_name``
  rename the graph's one Input / Output node (Spyx looks for ``input``).
- **Portable files** (``write_nir(..., portable=True)``, what ``cf2neuro
  export`` writes): readable by every nir release from 1.0.4 (Sinabs and
  Rockpool pin it) to the newest; see `compat` for the two rewrites (a zero
  ``v_reset`` left out, node metadata of node types 1.0.4 gives none kept in
  the graph's metadata).
- **Delay** (k steps) -> ``nir.Delay`` of ``k·dt`` seconds per element (nir
  1.0.4 has it too); the importer turns whole steps of dt back into it.
- **Add**: NIR has no Add node; in NIR several edges into one node sum
  their sources. So an IR ``Add(a, b) -> c`` is written as the edges
  ``a -> c`` and ``b -> c`` (Adds feeding Adds are flattened; an operand
  that appears k times goes through a ``nir.Scale`` of k). ``c`` records the
  Add's name in ``metadata["cf2neuro.add"]`` and the importer rebuilds the
  same Add. Back edges (recurrence) are ordinary NIR edges that close a
  cycle.
- Metadata never holds None or lists of strings (they do not survive
  ``nir.write``/``nir.read``): lists go in as JSON strings
  (``cf2neuro.order``, ``cf2neuro.meta``).
- Attention, MaxPool2d, Permute, Mean and unfolded BatchNorm have no NIR
  primitive: the export is refused with the reason, never written wrongly.

What a non-cf2neuro consumer gets from a CF model
-------------------------------------------------
NIR cannot state the CF neuron, so a tool that ignores cf2neuro's metadata
(snnTorch, Norse, Sinabs, Lava's NIR import, ...) reads each CF layer as the
plain NIR neuron written in its place: a LIF (IF when β = 1) that charges
exactly like the CF neuron (``v = β·v + x`` once Euler-stepped with the
file's dt) but

1. fires a **binary** spike when ``v > θ`` (strictly), where CF emits
   ``n = clip(trunc(u/θ), -K·signed, K)``: no graded spikes (K > 1 counts
   become 1) and **no negative spikes** (signed CF layers lose every -1 ...
   -K spike), and a potential exactly at θ fires in CF but not in NIR;
2. **resets to zero** (v_reset = 0), where CF subtracts n·θ and keeps the
   residue, so a strongly driven neuron fires less often, and the inhibition
   a negative spike would have sent downstream never happens.

The charge, weights, pooling and the network's topology are read correctly;
only the spike and reset rules differ. Measured with snnTorch 1.0.0's
``import_from_nir`` on a signed (ternary) CF-MLP: snnTorch computes what
cf2neuro's importer gives with ``read_cf_metadata=False`` (the plain-LIF
reading; same spikes, readout equal to float rounding), and that differs
from the CF network: its hidden layer's spikes are {0, 1} where CF's are
{-1, 0, 1}, and the readout changes. Framework quirks on top of that:

- snnTorch 1.0.0 assumes dt = 1e-4 s (cf2neuro's default, so β comes out
  right), reads ``nir.IF`` (CF layers with β = 1) as a *leaky*
  ``Leaky(beta=0.9)`` built with ``init_hidden=False`` (its graph then fails
  to run), has no SumPool2d, and builds ``Flatten`` with NIR's per-sample
  dims as PyTorch dims (so it flattens the batch of an image input).
- Norse's ``from_nir`` (read from its source; Norse is not installed here)
  ignores LIF's ``r`` (it warns when r != 1), so it scales a CF layer's
  input by ``dt/tau = 1-β`` instead of 1, and its dt defaults to 1e-3 s:
  pass ``dt=1e-4``.
- The NIR paper's Lava importer (``paper/nir_to_lava.py``) also takes r as
  1 (input weight ``dt/tau = 1-β``) and reads only Affine (zero bias) and
  LIF. (cf2neuro's own Lava runner, DESIGN §4, is to read the metadata.)

`export --strict` refuses every CF layer for these reasons; without it each
is logged as a warning.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from os import PathLike
from typing import Callable

import nir
import numpy as np

from .. import __version__
from ..errors import BadInputError, UnsupportedError
from ..fileio import atomic_path
from ..ir import Graph, Node
from ..ir.ops import OPS
from .compat import make_portable
from .discretize import DEFAULT_DT, cf_to_lif, check_dt
from .values import CF_NEURON, KEY_NEURON, KEY_ORDER

log = logging.getLogger(__name__)

KEY_ADD = "cf2neuro.add"
KEY_ADD_META = "cf2neuro.add_meta"
KEY_META = "cf2neuro.meta"
KEY_VERSION = "cf2neuro.version"
KEY_FIXED = "cf2neuro.fixed_point"  # integer form of quantized graphs (docs/fixed_point.md)

PASS_THROUGH = {"Add", "Identity"}  # become NIR edges (fan-in sums), not nodes

REFUSED: dict[str, str] = {
    "Attention": ("spiking self-attention (Q·Kᵀ·V·s) has no NIR primitive: NIR holds only "
                  "fixed weights, and attention multiplies two activations. A Spikformer "
                  "cannot be exported to NIR; run it with cf2neuro's own runners"),
    "MaxPool2d": "NIR has no max pooling (only SumPool2d and AvgPool2d); use 'A' pools",
    "Permute": "NIR has no transpose/permute node",
    "Mean": "NIR has no mean over tokens or dims (only 2-D average pooling)",
    "BatchNorm": ("NIR has no batch norm: fold it into the preceding Conv2d/Linear first "
                  "(cf2neuro.ir.passes.fold_batchnorm, which `cf2neuro export` runs)"),
}


@dataclass
class _Context:
    graph: Graph
    dt: float
    caveats: list[tuple[str, str]] = field(default_factory=list)  # (node, reason)

    def in_shape(self, node: Node) -> tuple[int, ...]:
        return self.graph[node.inputs[0]].shape


Lowering = Callable[[Node, _Context], nir.NIRNode]


def _full(value, shape, dtype=None) -> np.ndarray:
    """A per-neuron array of the node's full shape (scalars break NIR's type inference)."""
    a = np.asarray(value, dtype=dtype)
    return np.array(np.broadcast_to(a, tuple(shape)))


def _param(node: Node, name: str, default=0.0) -> np.ndarray:
    p = node.params.get(name)
    return _full(default if p is None else p, node.shape,
                 np.float64 if p is None else None)


def _pair(v) -> np.ndarray:
    return np.array([v, v] if isinstance(v, int) else list(v), dtype=np.int64)


# --- lowerings ---------------------------------------------------------------

def _input(node: Node, ctx: _Context) -> nir.NIRNode:
    return nir.Input(input_type={"input": np.array(node.shape)})


def _output(node: Node, ctx: _Context) -> nir.NIRNode:
    return nir.Output(output_type={"output": np.array(node.shape)})


def _linear(node: Node, ctx: _Context) -> nir.NIRNode:
    if len(ctx.in_shape(node)) != 1:
        raise UnsupportedError(
            f"{node.where()} applies its weight over the last dim of a "
            f"{list(ctx.in_shape(node))} input (tokens); NIR's Affine/Linear maps one "
            f"vector. Flatten before it, or run the model with cf2neuro's runners")
    w = node.params["weight"]
    b = node.params.get("bias")
    return nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=b)


def _conv2d(node: Node, ctx: _Context) -> nir.NIRNode:
    w = node.params["weight"]
    b = node.params.get("bias")
    a = node.attrs
    meta = {} if b is not None else {"has_bias": False}
    conv = nir.Conv2d(input_shape=tuple(int(s) for s in ctx.in_shape(node)[1:]), weight=w,
                      stride=tuple(_pair(a["stride"])), padding=tuple(_pair(a["padding"])),
                      dilation=tuple(_pair(a["dilation"])), groups=int(a["groups"]),
                      bias=np.zeros(w.shape[0], w.dtype) if b is None else b, metadata=meta)
    # nir 1.0.8 types the input with weight.shape[1] channels (not x groups) and the output
    # with a square kernel; state both as the IR inferred them
    conv.input_type = {"input": np.array(ctx.in_shape(node))}
    conv.output_type = {"output": np.array(node.shape)}
    return conv


def _pool_args(node: Node) -> dict:
    a = node.attrs
    return dict(kernel_size=_pair(a["kernel"]), stride=_pair(a["stride"]),
                padding=_pair(a["padding"]))


def _avgpool(node: Node, ctx: _Context) -> nir.NIRNode:
    cip = bool(node.attrs.get("count_include_pad", True))
    if not cip and np.any(_pair(node.attrs["padding"])):
        ctx.caveats.append((node.name, "average pooling that excludes padding from the count "
                                       "(NIR does not say; consumers divide by the kernel size)"))
    return nir.AvgPool2d(**_pool_args(node), metadata={"count_include_pad": cip})


def _sumpool(node: Node, ctx: _Context) -> nir.NIRNode:
    return nir.SumPool2d(**_pool_args(node))


def _flatten(node: Node, ctx: _Context) -> nir.NIRNode:
    shape = ctx.in_shape(node)
    start, end = node.attrs["start_dim"], node.attrs["end_dim"]
    # NIR's shape inference counts dims per sample and understands -1 but no other
    # negative dim: normalize those, keep the rest as the IR has them.
    start = start % len(shape)
    end = end if end >= -1 else end % len(shape)
    return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=end)


def _scale(node: Node, ctx: _Context) -> nir.NIRNode:
    return nir.Scale(scale=_full(node.params["scale"], node.shape))


def _delay(node: Node, ctx: _Context) -> nir.NIRNode:
    return nir.Delay(delay=np.full(node.shape, node.attrs["steps"] * ctx.dt))


def _threshold(node: Node, ctx: _Context) -> nir.NIRNode:
    return nir.Threshold(threshold=_full(node.params["threshold"], node.shape))


def _cf(node: Node, ctx: _Context) -> nir.NIRNode:
    a = node.attrs
    theta = node.params.get("threshold")
    beta = node.params.get("beta")
    theta_full = _full(a["threshold"] if theta is None else theta, node.shape,
                       np.float64 if theta is None else None)
    beta_full = _full(a["beta"] if beta is None else beta, node.shape, np.float64)
    meta = {KEY_NEURON: CF_NEURON, "K": int(a["max_spikes"]), "signed": bool(a["signed"]),
            "reset": str(a.get("reset", "subtract")), "threshold": float(a["threshold"]),
            "beta": float(a["beta"])}
    if theta is not None:
        meta["threshold_array"] = np.array(theta)
    if beta is not None:
        meta["beta_array"] = np.array(beta)
    if "v_min" in node.params:  # a membrane floor (read --from sinabs)
        meta["v_min"] = np.array(np.broadcast_to(node.params["v_min"], node.shape), np.float64)
    ctx.caveats.append((node.name, _cf_caveat(a)))
    zeros = np.zeros(node.shape)
    lif = cf_to_lif(beta_full, ctx.dt, node.where())
    if lif is None:
        return nir.IF(r=np.ones(node.shape), v_threshold=theta_full, v_reset=zeros,
                      metadata=meta)
    tau, r = lif
    return nir.LIF(tau=tau, r=r, v_leak=zeros, v_threshold=theta_full, v_reset=zeros,
                   metadata=meta)


def _cf_caveat(a: dict) -> str:
    spikes = []
    if a["signed"]:
        spikes.append("negative spikes")
    if a["max_spikes"] > 1:
        spikes.append(f"graded spikes up to K={a['max_spikes']}")
    zero = a.get("reset", "subtract") == "zero"
    what = f"CF neuron (K={a['max_spikes']}, signed={bool(a['signed'])}, reset={a.get('reset')})"
    lost = (", ".join(spikes) + " are lost; ") if spikes else ""
    rule = ("" if zero else "CF subtracts n·θ (reset by subtraction) and ")
    return (f"{what}: NIR states a binary LIF/IF that resets to zero and fires at v > θ; "
            f"{rule}CF fires at u >= θ (a potential exactly at θ differs); {lost}"
            f"a consumer without cf2neuro reads the plain LIF/IF")


def _neuron(nir_type, names: tuple[str, ...], resets: bool = True,
            defaults: dict | None = None) -> Lowering:
    """Lower an IR neuron that NIR has as-is: every parameter as a per-neuron array.

    Optional parameters missing from the IR node take `defaults` (NIR's own).
    """
    defaults = defaults or {}

    def lower(node: Node, ctx: _Context) -> nir.NIRNode:
        kw = {k: _param(node, k, defaults.get(k, 0.0)) for k in names}
        meta = {}
        if resets:
            kw["v_reset"] = _param(node, "v_reset")
            if node.attrs.get("reset") == "subtract":
                meta["reset"] = "subtract"
                ctx.caveats.append((node.name, f"{node.op} with reset by subtraction: NIR "
                                               f"states reset to v_reset"))
        return nir_type(**kw, metadata=meta)

    return lower


EXPORTERS: dict[str, Lowering] = {
    "Input": _input,
    "Output": _output,
    "Linear": _linear,
    "Conv2d": _conv2d,
    "AvgPool2d": _avgpool,
    "SumPool2d": _sumpool,
    "Flatten": _flatten,
    "Scale": _scale,
    "Threshold": _threshold,
    "Delay": _delay,
    "CFNeuron": _cf,
    "LIF": _neuron(nir.LIF, ("tau", "r", "v_leak", "v_threshold")),
    "IF": _neuron(nir.IF, ("r", "v_threshold")),
    "LI": _neuron(nir.LI, ("tau", "r", "v_leak"), resets=False),
    "CubaLIF": _neuron(nir.CubaLIF, ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold",
                                     "w_in"), defaults={"w_in": 1.0}),
}


# --- the graph ---------------------------------------------------------------

def _refuse_unsupported(g: Graph) -> None:
    bad = [(n, REFUSED.get(n.op, f"cf2neuro has no NIR lowering for op {n.op!r}"))
           for n in g.nodes.values() if n.op not in EXPORTERS and n.op not in PASS_THROUGH]
    if not bad:
        return
    bad.sort(key=lambda nr: nr[0].op != "Attention")  # the headline reason first
    first, reason = bad[0]
    more = (f" (and {len(bad) - 1} more: {sorted({n.op for n, _ in bad[1:]})})"
            if len(bad) > 1 else "")
    raise UnsupportedError(f"cannot export to NIR: {first.where()}: {reason}{more}")


def _sources(g: Graph, name: str, seen: frozenset = frozenset()) -> list[str]:
    """The NIR sources that `name` stands for: itself, or a pass-through's operands."""
    n = g[name]
    if n.op not in PASS_THROUGH:
        return [name]
    if name in seen:
        raise UnsupportedError(f"{n.where()} sits on a cycle of Add/Identity nodes only; "
                               f"a recurrent loop needs a weight or a neuron")
    return [s for i in n.inputs for s in _sources(g, i, seen | {name})]


def _edges(g: Graph, nodes: dict[str, nir.NIRNode]) -> list[tuple[str, str]]:
    edges = []
    for n in g.nodes.values():
        if n.op in PASS_THROUGH:
            continue
        if len(n.inputs) == 1 and g[n.inputs[0]].op == "Add":  # to rebuild the same Add
            add = g[n.inputs[0]]
            nodes[n.name].metadata[KEY_ADD] = add.name
            if add.meta:
                nodes[n.name].metadata[KEY_ADD_META] = json.dumps(add.meta, sort_keys=True)
        counts = Counter(s for i in n.inputs for s in _sources(g, i))
        for src, k in counts.items():
            if k == 1:
                edges.append((src, n.name))
                continue
            # NIR rejects duplicate edges: x + x goes through a Scale of 2.
            via = f"{n.name}.x{k}.{src}"
            nodes[via] = nir.Scale(scale=np.full(g[src].shape, float(k)))
            edges += [(src, via), (via, n.name)]
    return edges


def to_nir(graph: Graph, dt: float | None = None, strict: bool = False, *,
           input_name: str | None = None, output_name: str | None = None,
           peer: str | None = None) -> nir.NIRGraph:
    """Lower an IR graph to a `nir.NIRGraph`; see the module docstring.

    `dt` (seconds per step) defaults to ``graph.meta["dt"]``, then
    `DEFAULT_DT`. `strict` refuses anything but binary, reset-to-zero LIF/IF
    semantics (raises `UnsupportedError` with every reason); otherwise each
    difference a non-cf2neuro consumer will see is logged as a warning.
    `input_name` / `output_name` name the NIR Input / Output node (default:
    the IR's names, ``x`` and ``output`` for a traced model). `peer`
    ("snntorch", "norse", ...) writes the graph that this framework's own
    importer runs exactly as cf2neuro does, or refuses (`peers`).
    """
    g = graph.copy()
    g.validate()
    _refuse_unsupported(g)
    _rename(g, "Input", input_name)
    _rename(g, "Output", output_name)
    dt = check_dt(dt if dt is not None else g.meta.get("dt", DEFAULT_DT), "dt")
    ctx = _Context(g, dt)
    nodes: dict[str, nir.NIRNode] = {}
    for n in g.nodes.values():
        if n.op in PASS_THROUGH:
            continue
        node = EXPORTERS[n.op](n, ctx)
        if n.meta:
            node.metadata[KEY_META] = json.dumps(n.meta, sort_keys=True)
        fixed = fixed_point_metadata(n)
        if fixed:
            node.metadata[KEY_FIXED] = fixed
        nodes[n.name] = node
    if peer is None:  # a peer's writer decides itself what it can run
        _report(ctx, strict)
    edges = _edges(g, nodes)
    meta = {k: v for k, v in g.meta.items() if k not in ("dt", "fixed_point")}
    metadata = {"dt": dt, KEY_VERSION: __version__, KEY_ORDER: json.dumps(list(nodes))}
    if meta:
        metadata[KEY_META] = json.dumps(meta, sort_keys=True)
    if isinstance(g.meta.get("fixed_point"), dict):
        metadata[KEY_FIXED] = dict(g.meta["fixed_point"])
    try:
        ng = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as e:  # NIR's own type check: a lowering bug
        raise UnsupportedError(f"NIR rejects the exported graph ({e}); please report this "
                               f"with the model's config") from None
    if peer is not None:
        from .peers import write_for

        ng = write_for(peer, ng)
        ng.metadata["cf2neuro.for"] = peer
    return ng


def _rename(g: Graph, op: str, name: str | None) -> None:
    """Give the graph's one `op` node (Input or Output) the NIR name `name`."""
    if name is None:
        return
    found = [n.name for n in g.nodes.values() if n.op == op]
    if len(found) != 1:
        raise BadInputError(f"cannot name the NIR {op} node {name!r}: the graph has "
                            f"{len(found)} {op} nodes {found}; only a graph with one can be "
                            f"renamed")
    if not name or "/" in name or "." in name:
        raise BadInputError(f"NIR {op} node name {name!r} must be non-empty, without '/' "
                            f"or '.'")
    if name != found[0] and name in g:
        raise BadInputError(f"cannot name the NIR {op} node {name!r}: the graph already "
                            f"has a {g[name].op} node of that name")
    node = g.nodes[found[0]]
    g.replace_uses(node.name, name)
    node.name = name
    g.nodes = {n.name: n for n in g.nodes.values()}  # same order, the new key


def fixed_point_metadata(n: Node) -> dict:
    """A quantized node's integer form as one flat dict: attrs["fixed_point"] + integer arrays.

    Scalars (ints, bools) and integer numpy arrays round-trip through
    nir.write/nir.read with their dtypes; the importer splits them back.
    """
    fp = n.attrs.get("fixed_point")
    if not isinstance(fp, dict):
        return {}
    arrays = {k: np.asarray(n.params[k]) for k in OPS[n.op].integer if k in n.params}
    return {**fp, **arrays}


def _report(ctx: _Context, strict: bool) -> None:
    """Strict: refuse with every reason. Otherwise: one warning per distinct reason."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in ctx.caveats:
        by_reason.setdefault(reason, []).append(name)
    if strict and by_reason:
        lines = "; ".join(f"{reason} [nodes: {', '.join(names)}]"
                          for reason, names in by_reason.items())
        raise UnsupportedError(
            f"--strict: NIR cannot state this model on its own (it states only binary, "
            f"reset-to-zero LIF/IF neurons): {lines}. Export without --strict to write it "
            f"with cf2neuro metadata that only cf2neuro reads")
    for reason, names in by_reason.items():
        log.warning("NIR export: %s [nodes: %s]", reason, ", ".join(names))


def write_nir(graph: Graph, path: str | PathLike, dt: float | None = None,
              strict: bool = False, *, portable: bool = False, input_name: str | None = None,
              output_name: str | None = None, peer: str | None = None) -> nir.NIRGraph:
    """`to_nir` then `nir.write`, atomically: a reader never sees half a file.

    `portable` writes a file that every nir release from 1.0.4 to the newest
    reads (`compat`; what ``cf2neuro export`` writes). Without it, node
    metadata stays where nir 1.0.8 puts it (Conv2d and Linear carry their
    integer form there, where the Lava runtime reads it).
    """
    ng = to_nir(graph, dt=dt, strict=strict, input_name=input_name, output_name=output_name,
                peer=peer)
    with atomic_path(path) as tmp:
        nir.write(tmp, ng)
        if portable:
            make_portable(tmp)
    return ng
