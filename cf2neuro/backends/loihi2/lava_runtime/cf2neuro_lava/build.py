"""A quantized NIR graph -> Lava processes (cf2neuro's docs/fixed_point.md).

`build(graph, x, probes, record_dir)` makes few, wide Lava processes, one per
NIR node that computes:

==============  ==============================================================
NIR node        Lava process
==============  ==============================================================
Input           ``lava.proc.io.source.RingBuffer`` (graded int32 payloads)
Linear/Affine   ``Dense``: ``weight_mant`` as given (columns permuted to the
                port layout; Lava picks the sign mode, clips to 8 bits and
                drops the LSB of mixed-sign weights), ``weight_exp``,
                ``num_message_bits``, one step later. A readout's
                ``bias_int`` (a Dense read only by an Output) is added to
                what the sink recorded, as the runner's own step
recurrent       cf2neuro's ``ResetDense`` (procs/rdense): Lava's bit-accurate
Linear/Affine   Dense whose one-step buffer is zeroed at every sample start
(back edge)     (see "Recurrent graphs" below)
Conv2d          ``Conv``: kernel flipped and transposed to Lava's
                (C_out, kx, ky, C_in/g), stride/padding/dilation as (x, y);
                or, where exact, Lava's ``Sparse`` with the same synapses
                (synapses.py: one sparse product a step, not C_out·C_in
                convolve2d calls)
SumPool2d       ``Conv`` of ones, groups = channels, stride = the pool's
                (or ``Sparse``, as Conv2d)
Flatten         no process: the source port reshaped (C order over Lava's
                (X, Y, C) layout; the next Dense's columns absorb the order)
LIF / IF with   cf2neuro's ``CFNeuron`` (procs/cf), reset every T steps at
CF metadata     its pipeline depth
LIF / IF /      Lava's ``LIFReset`` (reset to zero, Lava's bit-accurate LIF;
CubaLIF         a CubaLIF's synaptic decay is LIF's du)
Output, probes  cf2neuro's ``Recorder`` (procs/recorder: keeps the aligned
                steps, saves them to record_dir after the last step);
                ``v:`` probes record a CF layer's ``v_out`` after each
                sample's last step, or Read Lava LIF's ``v`` then
==============  ==============================================================

Layouts. The IR (and NIR) holds images as (C, H, W); Lava's Conv wants
(X, Y, C) = (W, H, C). Every value keeps its IR shape, its Lava port shape
and an ``index`` with ``ir.ravel()[i] == lava.ravel()[index[i]]``: 3-D
values live transposed, a Flatten keeps its source's order (a virtual
reshape port), and a Dense that reads a permuted vector gets its weight
columns permuted to match (``W_lava[:, index] = W``).

Time. Each Dense/Conv/SumPool delivers one step later, so a node at pipeline
depth d sees sample b's step t at Lava step ``b*T + t + d``; the run has
``B*T + D`` steps, D the deepest node (the input padded with zeros), and
``latency`` is the depth of the Output. Neurons at depth d zero their state
at steps ``b*T + d``, so every sample starts from zero.

Recurrent graphs. Each cycle is cut where cf2neuro's IR cuts it (the same
depth-first search; the last edge on the cycle that leaves a neuron), and
that edge must enter a Dense: Lava's Dense sends at step s what it
computed at s - 1, which *is* the IR's one-step delay on a back edge. So
the recurrent Dense adds no pipeline depth (it sits at its source neuron's
depth, as the quantizer's ``depth`` says), it is built after that neuron,
and its output is connected last into the neuron(s) it feeds (an InPort
with several connections sums them; the depths must agree). Streaming
samples through one run, its buffer would carry sample b - 1's last spikes
into sample b's step 0; ``ResetDense`` zeroes it right before it is sent at
steps ``b*T + d`` (d the depth of the neuron it feeds), the steps at which
that neuron resets, so every sample starts with zero recurrent input, as in
the emulator. Graphs with no cycle build exactly as before.

Anything the builder cannot run exactly raises `GraphError` naming the node
and saying what to do. Numeric ranges of the CF neuron (vth, dv, ...) are
checked by its process model (the one place that defines them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import nir
import numpy as np

from .layers import (KEY_FP, LOWERINGS, GraphError, Network, Value, _connect_recurrent, _Ctx,
                     _image_index,
                     _one_input, _plain)

# --- the graph --------------------------------------------------------------

NEURONS = (nir.LIF, nir.IF, nir.CubaLIF)
DENSE = (nir.Affine, nir.Linear)


@dataclass
class _Plan:
    """The build order of a graph with its recurrent back edges cut (see `_plan`)."""

    order: list[str]                 # nodes, every forward input before its consumer
    back: set                        # IR back edges (neuron, recurrent Dense)
    recurrent: set                   # Denses on a back edge: no depth of their own
    deferred: list                   # (recurrent Dense, neuron) edges, connected last


def _check_edges(graph: nir.NIRGraph) -> None:
    for src, dst in graph.edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise GraphError(f"edge ({src!r}, {dst!r}) names {end!r}, which is not a node "
                                 f"(nested graphs and node ports are not supported)")


def _find_cycle(graph: nir.NIRGraph, cut: set) -> list | None:
    """The edges of one cycle avoiding `cut` (closing edge last), or None.

    The same depth-first search as cf2neuro's ``Graph._find_cycle`` (Input
    nodes first as roots), so both cut the same edges."""
    succ = {n: [] for n in graph.nodes}
    for s, d in graph.edges:
        if (s, d) not in cut:
            succ[s].append(d)
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    state: dict = {}
    for root in inputs + [n for n in graph.nodes if n not in inputs]:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                path = [n for n, _ in stack]
                loop = path[path.index(nxt):]
                return list(zip(loop, loop[1:])) + [(node, nxt)]
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return None


def _plan(graph: nir.NIRGraph) -> _Plan:
    """Cut every cycle where cf2neuro's IR cuts it (the last edge leaving a neuron).

    That edge must enter a Dense (Affine/Linear): Lava's Dense delivers one
    step later, which is the IR's one-step delay on a back edge, so the
    recurrent Dense sits at its source neuron's depth (it adds none). The
    recurrent Dense is built after that neuron; its own outgoing edges
    (into neurons, whose InPorts sum what arrives) are connected last.
    """
    _check_edges(graph)
    back: set = set()
    while (cycle := _find_cycle(graph, back)) is not None:
        leaving = [e for e in cycle if isinstance(graph.nodes[e[0]], NEURONS)]
        if not leaving:
            names = sorted({n for e in cycle for n in e})
            raise GraphError(f"the graph has a cycle through {names} with no neuron on it; the "
                             f"Lava runner runs loops of neuron -> Dense -> ... -> neuron only")
        edge = leaving[-1]
        if not isinstance(graph.nodes[edge[1]], DENSE):
            raise GraphError(f"the recurrent edge {edge} leaves neuron {edge[0]!r} into a "
                             f"{type(graph.nodes[edge[1]]).__name__}; the Lava runner needs a "
                             f"Dense (Affine/Linear) right after the neuron on a loop (its "
                             f"one-step delay is the loop's delay)")
        back.add(edge)
    recurrent = {d for _, d in back}
    deferred = [(s, d) for s, d in graph.edges if s in recurrent]
    for s, d in deferred:
        if not isinstance(graph.nodes[d], NEURONS):
            raise GraphError(f"the recurrent Dense {s!r} feeds {d!r} "
                             f"({type(graph.nodes[d]).__name__}); the Lava runner connects a "
                             f"recurrent Dense into neurons only (their input port sums it)")
    skip = set(deferred)
    preds = {n: [] for n in graph.nodes}
    succs = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        if (src, dst) in skip:
            continue
        preds[dst].append(src)
        succs[src].append(dst)
    pending = {n: len(p) for n, p in preds.items()}
    ready = [n for n in graph.nodes if not pending[n]]
    order = []
    while ready:  # Kahn, ties by insertion order
        n = ready.pop(0)
        order.append(n)
        for s in succs[n]:
            pending[s] -= 1
            if not pending[s]:
                ready.append(s)
    if len(order) != len(graph.nodes):  # cannot happen: every cycle passes a deferred edge
        loop = sorted(n for n in graph.nodes if n not in order)
        raise GraphError(f"the graph has a cycle through {loop} the Lava runner cannot cut")
    return _Plan(order, back, recurrent, deferred)


def input_shape(graph: nir.NIRGraph) -> tuple[str, tuple[int, ...]]:
    """The one Input node's name and per-sample shape."""
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(inputs) != 1:
        raise GraphError(f"the graph needs exactly one Input node, it has {len(inputs)} "
                         f"({inputs})")
    node = graph.nodes[inputs[0]]
    shape = tuple(int(s) for s in np.asarray(next(iter(node.input_type.values()))).ravel())
    return inputs[0], shape


def parse_probes(graph: nir.NIRGraph, probes) -> tuple[list[str], list[str]]:
    """Split probes into node names ("NAME") and membranes ("v:NAME"), checking names."""
    spikes, membranes = [], []
    for p in probes:
        mem = p.startswith("v:")
        name = p[2:] if mem else p
        node = graph.nodes.get(name)
        if node is None:
            raise GraphError(f"probe {p!r}: no node named {name!r}; nodes: "
                             f"{', '.join(graph.nodes)}")
        if mem and not isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            raise GraphError(f"probe {p!r}: node {name!r} ({type(node).__name__}) has no "
                             f"membrane; 'v:' probes need a neuron node")
        (membranes if mem else spikes).append(name)
    return spikes, membranes


def build(graph: nir.NIRGraph, x: np.ndarray, probes=(), record_dir=None) -> Network:
    """Build the Lava network for integer inputs x [T, B, *input_shape] (see module doc).

    Recorders save into `record_dir` (a new temporary directory by default).
    """
    import tempfile
    from pathlib import Path

    from lava.proc.io.sink import Read
    from lava.proc.io.source import RingBuffer as Source

    from cf2neuro_lava.procs.recorder.process import Recorder

    in_name, shape = input_shape(graph)
    if x.ndim != len(shape) + 2 or tuple(x.shape[2:]) != shape:
        raise GraphError(f"inputs x must be [T, B, {', '.join(map(str, shape))}] (time first), "
                         f"got {list(x.shape)}")
    T, B = int(x.shape[0]), int(x.shape[1])
    if T < 1 or B < 1:
        raise GraphError(f"inputs x {list(x.shape)} hold no step or no sample")
    if x.min() < -2 ** 31 or x.max() >= 2 ** 31:
        raise GraphError(f"inputs range over [{x.min()}, {x.max()}]; Lava's input port carries "
                         f"int32 payloads")
    spike_probes, mem_probes = parse_probes(graph, probes)
    plan = _plan(graph)
    order = plan.order
    depth = _depths(graph, plan)
    latency = max(depth[n] for n, node in graph.nodes.items() if isinstance(node, nir.Output))
    steps = B * T + max(depth.values())
    meta = _graph_meta(graph)
    if "latency" in meta and int(meta["latency"]) != latency:
        raise GraphError(f"the graph's metadata says latency {meta['latency']}, its Dense/Conv "
                         f"chain gives {latency}; the outputs would be misaligned")
    _check_input_range(x, meta)
    ctx = _Ctx(graph, T, recurrent=plan.recurrent)

    # the input: sample b step t at Lava step b*T + t, then zero steps
    in_index = _image_index(shape) if len(shape) == 3 else np.arange(math.prod(shape))
    lava_shape = (shape[2], shape[1], shape[0]) if len(shape) == 3 else shape
    stream = np.zeros((steps, math.prod(shape)), dtype=np.int64)
    flat = x.reshape(T, B, -1).transpose(1, 0, 2).reshape(B * T, -1)
    stream[:B * T, in_index] = flat
    source = Source(data=np.ascontiguousarray(stream.T.reshape(*lava_shape, steps)))
    ctx.values[in_name] = Value(source.s_out, shape, lava_shape, in_index, 0,
                                bound=int(np.abs(x).max(initial=0)))

    outputs: dict[str, Value] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            continue
        ins = [ctx.values[s] for s, d in graph.edges if d == name and (s, d) not in
               plan.deferred]
        if isinstance(node, nir.Output):
            outputs[name] = _one_input(name, node, ins)
            continue
        lower = LOWERINGS.get(type(node))
        if lower is None:
            known = sorted(t.__name__ for t in LOWERINGS)
            raise GraphError(f"node {name!r}: the Lava runtime has no lowering for NIR "
                             f"{type(node).__name__} (it knows {known})")
        ctx.values[name] = lower(name, node, ins, ctx)
        _check_depth(name, node, ctx.values[name].depth)

    for s_name, d_name in plan.deferred:  # recurrent Dense -> neuron, summed at its a_in
        _connect_recurrent(s_name, d_name, ctx)

    for s_name, d_name in graph.edges:
        biased = ctx.values.get(s_name)
        if biased is not None and biased.offset is not None and \
                not isinstance(graph.nodes[d_name], nir.Output):
            raise GraphError(f"node {s_name!r} has a bias_int (a readout's bias, added after "
                             f"the run) but feeds {d_name!r}; a bias that drives other nodes "
                             f"belongs in the next neuron's bias_mant")
    net = Network(source, steps, T, B, latency, shape, ctx.values[in_name],
                  processes=ctx.processes, meta=meta, cost=ctx.cost)
    names = _output_order(graph, list(outputs))
    for k, name in enumerate(names):
        net.outputs["output" if k == 0 else name] = outputs[name]
    for name in spike_probes:
        net.outputs[name] = outputs[name] if name in outputs else ctx.values[name]
    record_dir = Path(record_dir if record_dir is not None else tempfile.mkdtemp())

    def record(key, port, value, offset, interval, count):
        path = record_dir / f"rec{len(net.records)}.npy"
        rec = Recorder(shape=value.lava_shape, path=str(path), steps=steps, offset=offset,
                       interval=interval, name=f"record {key}")
        port.connect(rec.a_in)
        net.records[key] = (path, value, count)

    for key, value in net.outputs.items():  # sample b's step t at b*T + t + depth
        record(key, value.port, value, value.depth, 1, B * T)
    for name in mem_probes:
        proc, value = ctx.processes[name], ctx.values[name]
        last = T - 1 + value.depth  # sample 0's last step at this depth
        if type(proc).__name__ == "CFNeuron":
            record("v:" + name, proc.v_out, value, last, T, B)
        else:  # Lava's LIF has no v port: a Read process copies v in its post-management
            reads = len(range(last % T, steps, T))
            reader = Read(buffer=reads, interval=T, offset=last % T)
            reader.connect_var(proc.v)
            net.reads["v:" + name] = (reader, value, last // T)
    return net


def _output_order(graph: nir.NIRGraph, names: list[str]) -> list[str]:
    """Output nodes in cf2neuro's node order (its ``cf2neuro.order`` metadata) when the file
    has it, else in the file's node order; the first one is "output"."""
    raw = _plain((graph.metadata or {}).get("cf2neuro.order"))
    order = list(graph.nodes)
    if isinstance(raw, str):
        try:
            listed = [n for n in json.loads(raw) if n in graph.nodes]
            order = listed + [n for n in order if n not in listed]
        except ValueError:
            pass
    return sorted(names, key=order.index)


def _check_input_range(x: np.ndarray, meta: dict) -> None:
    """Inputs must fit the input payload the graph was quantized for (when it says)."""
    if "input_bits" not in meta or x.size == 0:
        return
    bits, signed = int(meta["input_bits"]), bool(meta.get("input_signed", False))
    if bits == 0:
        lo, hi = 0, 1
    elif signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    if x.min() < lo or x.max() > hi:
        raise GraphError(f"inputs range over [{x.min()}, {x.max()}], outside the graph's input "
                         f"payload [{lo}, {hi}] ({bits} bits, signed={signed}); quantize them "
                         f"with the graph's input_scale and clip to that range")


def _check_depth(name: str, node, depth: int) -> None:
    fp = (getattr(node, "metadata", None) or {}).get(KEY_FP)
    if isinstance(fp, dict) and "depth" in fp and int(_plain(fp["depth"])) != depth:
        raise GraphError(f"node {name!r}: the quantizer placed it at pipeline depth "
                         f"{int(_plain(fp['depth']))}, the Lava network at {depth}; the two "
                         f"would not be aligned step for step")


def _depths(graph: nir.NIRGraph, plan: _Plan) -> dict[str, int]:
    """Pipeline depths: +1 per Dense/Conv/SumPool, none for a recurrent Dense (its delay is
    the back edge's); a recurrent Dense's consumer must sit at its depth."""
    delayed = (nir.Affine, nir.Linear, nir.Conv2d, nir.SumPool2d)
    depth = {}
    for name in plan.order:
        preds = [s for s, d in graph.edges if d == name and (s, d) not in plan.deferred]
        base = max((depth[p] for p in preds), default=0)
        own = isinstance(graph.nodes[name], delayed) and name not in plan.recurrent
        depth[name] = base + int(own)
    return depth


def _graph_meta(graph: nir.NIRGraph) -> dict:
    fp = (graph.metadata or {}).get(KEY_FP)
    return {k: _plain(v) for k, v in fp.items()} if isinstance(fp, dict) else {}
