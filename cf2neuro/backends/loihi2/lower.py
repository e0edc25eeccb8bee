"""Lowering a quantized graph to Lava: the pipeline it forms and the limits it must meet.

    pipeline_depths(graph) -> {node: depth}     graph_latency(graph) -> steps
    avgpool_to_sumpool(graph)                   Lava pools by summing (in place)
    write_lava_nir(qgraph, path)                the NIR file the Lava runtime reads

In Lava every Dense/Conv (and sum pooling, a Conv) delivers its output one
step later, so a node at *pipeline depth* d (the number of such ops on every
path from the Input) sees sample step t at Lava step t + d. Graphs whose
paths into a node have different depths would be misaligned in Lava:
`pipeline_depths` refuses them with the node named (compile time, before
any run). `quantize_graph` first balances residual paths (`balance.py`:
identity synapses and delays), so in a quantized graph only loops are left to refuse.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph

#: Ops that deliver their output one step later in Lava (Dense, Conv, sum pooling).
SYNAPTIC = frozenset({"Linear", "Conv2d", "SumPool2d"})


def pipeline_depths(graph: Graph) -> dict[str, int]:
    """Each node's pipeline depth in Lava: Dense/Conv/SumPool ops on the way from the Input.

    Every edge (s -> n) fixes ``d(n) = d(s) + syn(n) - back(s, n)``: a
    synaptic op adds its one-step delay, and a back edge (the IR's one-step
    delay) is the Dense delay itself. When two paths into a node disagree,
    Lava would deliver them at different steps: UnsupportedError names it.
    """
    graph.validate()
    back = graph.back_edges()
    syn = {n.name: int(n.op in SYNAPTIC) for n in graph.nodes.values()}
    depth: dict[str, int] = {name: 0 for name in graph.inputs}
    edges = graph.edges
    changed = True
    while changed:  # propagate the equalities both ways until nothing new is known
        changed = False
        for s, n in edges:
            off = syn[n] - int((s, n) in back)
            if s in depth and n not in depth:
                depth[n] = depth[s] + off
                changed = True
            elif n in depth and s not in depth:
                depth[s] = depth[n] - off
                changed = True
    for s, n in edges:
        off = syn[n] - int((s, n) in back)
        if s in depth and n in depth and depth[n] != depth[s] + off:
            others = [x for x in graph[n].inputs if x != s]
            raise UnsupportedError(
                f"{graph[n].where()}: its inputs arrive after different numbers of Lava "
                f"synaptic steps ({s!r} at depth {depth[s]}, the node at {depth[n]}; other "
                f"inputs {others}). Lava delays every Dense/Conv by one step, so these paths "
                f"would be misaligned, and delays balance forward paths only (a recurrent "
                f"loop's latency is fixed); change the loop's Dense/Conv count or run the "
                f"float reference")
    missing = [n for n in graph.nodes if n not in depth]
    if missing:
        raise UnsupportedError(f"nodes {missing} are not connected to an Input; cannot place "
                               f"them in Lava's pipeline")
    bad = [n for n, d in depth.items() if d < 0]
    if bad:
        raise UnsupportedError(f"nodes {bad} would run before the input arrives (a recurrent "
                               f"loop without a Dense/Conv on it); Lava loops need one")
    return depth


def graph_latency(graph: Graph, depths: dict[str, int] | None = None) -> int:
    """The pipeline latency in steps: the depth of the Output nodes (all must agree)."""
    depths = pipeline_depths(graph) if depths is None else depths
    outs = {o: depths[o] for o in graph.outputs}
    if len(set(outs.values())) > 1:
        raise UnsupportedError(f"the Output nodes have different pipeline depths {outs}; one "
                               f"Lava run cannot align them")
    return next(iter(outs.values()))


def avgpool_to_sumpool(g: Graph, keep_sums: bool = False) -> None:
    """AvgPool2d -> SumPool2d, its 1/k² folded into the consuming Linear/Conv2d weights.

    With `keep_sums` (graphs Lava does not run), a pool whose 1/k² cannot fold
    (it feeds an Add) sends its sum and says so: ``meta["sum_scale"] = k²``.
    """
    for n in [n for n in g.nodes.values() if n.op == "AvgPool2d"]:
        k = n.attrs["kernel"]
        kh, kw = (k, k) if isinstance(k, int) else k
        pad = n.attrs["padding"]
        if not n.attrs.get("count_include_pad", True) and any(
                (pad if isinstance(pad, list) else [pad])):
            raise UnsupportedError(f"{n.where()}: average pooling that excludes padding from "
                                   f"its count has no sum-pooling form")
        users, todo = [], list(g.consumers(n.name))
        while todo:
            u = g[todo.pop()]
            if u.op == "Flatten":
                todo.extend(g.consumers(u.name))
            elif u.op in ("Linear", "Conv2d"):
                users.append(u)
            elif keep_sums:
                users = None
                break
            else:
                raise UnsupportedError(f"{n.where()} feeds {u.name!r} ({u.op}); its 1/k² can "
                                       f"only fold into a following Linear/Conv2d")
        if users is None:
            n.meta["sum_scale"] = kh * kw
        for u in users or []:
            w = u.params["weight"]
            u.params["weight"] = (w.astype(np.float64) / (kh * kw)).astype(w.dtype)
            u.meta["pool_folded"] = [*u.meta.get("pool_folded", []), n.name]
        n.op = "SumPool2d"
        n.attrs = {"kernel": n.attrs["kernel"], "stride": n.attrs["stride"],
                   "padding": n.attrs["padding"]}
        n.meta["from"] = "AvgPool2d"


def write_lava_nir(qgraph: Graph, path: str | os.PathLike) -> None:
    """The quantized graph as the NIR file (with cf2neuro's integer metadata) Lava runs."""
    from ...nir import write_nir

    export_log = logging.getLogger("cf2neuro.nir.export")
    level = export_log.level
    export_log.setLevel(logging.ERROR)  # its caveats are for third-party readers, not Lava
    try:
        write_nir(qgraph, path)
    finally:
        export_log.setLevel(level)
