"""Operation counts measured from a real run (DESIGN §6).

    probes = needed_probes(graph)                   # what the run must record
    res = emulate(qgraph, x, probes=probes)         # or Engine(graph).run(x, probes)
    counts = count_operations(qgraph, res, inputs=x)
    counts.layers["fc1"]["synops"]                  # per time step, mean per sample
    counts.totals()                                 # per inference (mean per sample)

Conventions (what counts as what)
---------------------------------
Counts are per layer and per time step, **averaged over the samples** of the
run (a value is "per sample"); ``totals()`` sums the steps: per inference.

Synaptic layers (Linear, Conv2d; SumPool2d/AvgPool2d marked ``pooling``):

- ``events``: nonzero input elements (a spike event; a graded spike of
  payload 3 or -2 is **one** event).
- ``payload``: sum of |input| (the graded payloads; equals ``events`` for
  binary/ternary spikes).
- ``synops`` (spike-fed layers): for every event, the number of *nonzero*
  weights it reaches (its fan-out). Computed exactly as NeuroBench does: the
  layer with its nonzero weights set to 1 and no bias, applied to the event
  indicator (x != 0), summed. So a Linear gives events × out_features with
  dense weights, a Conv gives events × Cout·kh·kw/groups away from the
  borders and **respects stride, padding and dilation edges** (an event near
  a border reaches fewer outputs). A graded payload counts as one synop per
  reached synapse (its multiply is in the payload, not the count);
  ``payload_synops`` is the same sum weighted by |payload| (what an
  accumulate-only machine would need: n additions for payload n).
- ``macs`` (layers fed by non-spike input, e.g. the encoding layer fed by
  direct-current pixels): the same nonzero-input × nonzero-weight sum
  (NeuroBench's *effective* MACs: zero inputs skipped).
- ``dense_macs``: all inputs and weights taken as nonzero (the layer's full
  cost as an ANN layer: in × out per step for a Linear; the exact
  Cout·H'·W'·Cin/g·kh·kw for a Conv).

Which inputs are spikes: a synaptic layer whose input comes (through
Flatten/Identity/Permute/pooling/Add) from neuron layers is spike-fed, graded
spikes included (cf2neuro's CF spikes are integers: Loihi 2 graded events).
A layer fed by the graph's Input is decided per time step from the data, as
NeuroBench does: when every value of that step (over the whole batch given)
is in {-1, 0, 1} the step counts as synops, otherwise as MACs. Any other
non-spike source (e.g. a Linear after a Linear) is MACs.

Which weights: the ones the run used — ``weight`` for a float graph; for a
quantized graph the integer mantissas as the runner applies them (Lava's
Dense drops the LSB, so a mantissa of ±1 may become 0 and its synapse is not
counted). Sparse weights reduce synops as in NeuroBench.

Attention (Spikformer's Q·Kᵀ·V per head, on spikes; no weights):

- ``synops``: the accumulates the spikes trigger. Kᵀ·V: for each token, every
  pair of a nonzero k and a nonzero v of the same head (one AC each); Q·(Kᵀ·V):
  every nonzero q reaches the nonzero entries of its row of Kᵀ·V.
  ``payload_synops`` weighs each by the payloads' product (|k|·|v|, |q|).
- ``events``/``payload``: nonzero Q, K, V elements / their sum of |value|.
- ``dense_macs``: 2·N·d²·heads per step (both products as an ANN computes them).
- kind ``attention``: energy models price its synops as synaptic operations
  and say so in their assumptions (no chip has an attention circuit).

Neuron layers (CFNeuron, LIF, IF, CubaLIF; Threshold, stateless, counts as one):

- ``neuron_updates``: neurons per step (every neuron is updated every step);
- ``active_updates``: neurons that fired at that step (|output| > 0);
- ``spikes``: output events routed (nonzero outputs, a graded spike is one
  event); ``spike_payload``: sum of |output|.

Differences from NeuroBench 2.x ``SynapticOperations`` (Effective_ACs,
Effective_MACs, averaged per sample over all steps):

- NeuroBench decides AC vs MAC for *every* layer per call from the values
  (only {-1, 0, 1} is spiking); cf2neuro decides structurally for
  neuron-fed layers, so graded spikes (K > 1, or sum-pooled spikes) are
  synops here and MACs there. On binary/ternary networks both agree exactly
  (tests/test_neurobench.py).
- NeuroBench ignores pooling layers; cf2neuro counts them (on Loihi sum
  pooling is a Conv process), flagged ``pooling`` so an energy model can
  leave them out (cmos45 does, as the SNN literature does).
- NeuroBench counts whatever batch it is given per call; cf2neuro's per-step
  spiking decision for Input-fed layers is over the batch of the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError
from ..ir.graph import Graph, Node

SYNAPTIC_OPS = ("Linear", "Conv2d")
POOL_OPS = ("SumPool2d", "AvgPool2d")
NEURON_OPS = ("CFNeuron", "LIF", "IF", "CubaLIF", "Threshold")  # Threshold: stateless spikes
_THROUGH = ("Flatten", "Identity", "Permute", "Output", "MaxPool2d", "Delay", *POOL_OPS)
SYNAPSE_KEYS = ("events", "payload", "synops", "payload_synops", "macs", "dense_macs")
NEURON_KEYS = ("neuron_updates", "active_updates", "spikes", "spike_payload")


@dataclass
class Counts:
    """Per-layer, per-step operation counts (mean per sample); see the module doc."""

    layers: dict = field(default_factory=dict)   # name -> {"op", "kind", key: [per step]}
    timesteps: int = 0
    samples: int = 0
    source: str = ""                             # "reference" / "emulator" / runner name

    def layer_totals(self) -> dict:
        """{layer: {key: per-inference total}} (steps summed)."""
        return {name: {k: float(np.sum(v)) for k, v in rec.items() if isinstance(v, list)}
                for name, rec in self.layers.items()}

    def totals(self, include_pooling: bool = True) -> dict:
        """Per-inference totals over all layers (mean per sample)."""
        out = {k: 0.0 for k in (*SYNAPSE_KEYS, *NEURON_KEYS)}
        for name, rec in self.layers.items():
            if rec.get("pooling") and not include_pooling:
                continue
            for k in out:
                if k in rec:
                    out[k] += float(np.sum(rec[k]))
        return out

    def to_dict(self) -> dict:
        return {"timesteps": self.timesteps, "samples": self.samples, "source": self.source,
                "layers": self.layers, "totals": self.totals()}


def _origin(graph: Graph, name: str, seen=None) -> str:
    """'spike' (from neurons), 'input' (from the graph's Input) or 'analog'."""
    seen = seen if seen is not None else set()
    if name in seen:
        return "spike"  # a cycle through stateless ops only closes on a neuron
    seen.add(name)
    node = graph[name]
    if node.op in NEURON_OPS:
        return "spike"
    if node.op == "Input":
        return "input"
    if node.op in _THROUGH:
        return _origin(graph, node.inputs[0], seen)
    if node.op == "Add":
        kinds = {_origin(graph, s, seen) for s in node.inputs}
        return kinds.pop() if len(kinds) == 1 else "analog"
    return "analog"


def _next_neurons(graph: Graph, name: str) -> list[str]:
    """Neuron layers that `name`'s output reaches through non-neuron ops."""
    out, stack, seen = [], list(graph.consumers(name)), set()
    while stack:
        n = stack.pop(0)
        if n in seen:
            continue
        seen.add(n)
        if graph[n].op in NEURON_OPS:
            out.append(n)
        else:
            stack.extend(graph.consumers(n))
    return out


def _counted(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes.values()
            if n.op in SYNAPTIC_OPS + POOL_OPS + NEURON_OPS + ("Attention",)]


def needed_probes(graph: Graph) -> list[str]:
    """Probe names a run must record for `count_operations` (inputs of synaptic ops, neurons)."""
    out = []
    for n in _counted(graph):
        ins = n.inputs if n.op == "Attention" else n.inputs[:1]
        for p in (ins if n.op not in NEURON_OPS else [n.name]):
            if p not in out:
                out.append(p)
    return out


def _weights(node: Node, numerics=None) -> np.ndarray:
    """The weights the run used (see module doc): the back end's effective integer weights."""
    if "weight_mant" in node.params and numerics is not None:
        return numerics.effective_weights(node)
    return np.asarray(node.params["weight"])


def _fanout_fn(node: Node, shape_in, numerics=None):
    """f(indicator [N, *in], all_ones_weights) -> per-row synapse counts [N]."""
    a = node.attrs
    if node.op == "Linear":
        mask = torch.as_tensor(_weights(node, numerics) != 0, dtype=torch.float64)

        def f(x, dense=False):
            m = torch.ones_like(mask) if dense else mask
            return (x @ m.T).flatten(1).sum(1)
        return f
    if node.op == "Conv2d":
        mask = torch.as_tensor(_weights(node, numerics) != 0, dtype=torch.float64)

        def f(x, dense=False):
            m = torch.ones_like(mask) if dense else mask
            y = F.conv2d(x, m, stride=a["stride"], padding=a["padding"],
                         dilation=a["dilation"], groups=a["groups"])
            return y.flatten(1).sum(1)
        return f
    # pooling: a grouped conv of ones (each input reaches the windows covering it)
    c = shape_in[0]
    k = a["kernel"] if isinstance(a["kernel"], (list, tuple)) else [a["kernel"]] * 2
    ones = torch.ones((c, 1, *k), dtype=torch.float64)

    def f(x, dense=False):
        y = F.conv2d(x, ones, stride=a["stride"], padding=a["padding"], groups=c)
        return y.flatten(1).sum(1)
    return f


def _as_tensor(v) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        return v.detach().to("cpu", torch.float64)
    return torch.as_tensor(np.asarray(v), dtype=torch.float64)


def count_operations(graph: Graph, run_result: dict, inputs=None, source: str = "",
                     chunk: int = 256) -> Counts:
    """Counts of one run of `graph` (probes of `needed_probes(graph)` in `run_result`).

    `inputs` ([T, B, ...], the run's input as the runner saw it) serves for
    layers fed directly by the graph's Input when the run did not probe it.
    For the emulator, pass its integer input or probe the Input node.
    """
    graph.validate()
    counts = Counts(source=source)
    numerics = None
    if isinstance(graph.meta.get("fixed_point"), dict):  # the back end's integer weights
        from ..runners.emulator import numerics_for
        numerics = numerics_for(graph)
    T = B = None

    def fetch(name):
        nonlocal T, B
        if name in run_result:
            v = run_result[name]
        elif graph[name].op == "Input" and inputs is not None:
            v = inputs
        else:
            raise BadInputError(f"count_operations needs probe {name!r} in the run result; "
                                f"run with probes=needed_probes(graph) (missing from "
                                f"{sorted(k for k in run_result if k != 'latency')})")
        v = _as_tensor(v)
        if T is None:
            T, B = v.shape[:2]
        elif tuple(v.shape[:2]) != (T, B):
            raise BadInputError(f"probe {name!r} is [{v.shape[0]}, {v.shape[1]}, ...], "
                                f"other probes are [{T}, {B}, ...]")
        return v

    for node in _counted(graph):
        if node.op in NEURON_OPS:
            out = fetch(node.name)
            nz = (out != 0).flatten(2).sum(2)                      # [T, B]
            counts.layers[node.name] = {
                "op": node.op, "kind": "neuron", "neurons": int(math.prod(node.shape)),
                "feeds": _next_neurons(graph, node.name),
                "neuron_updates": [float(math.prod(node.shape))] * out.shape[0],
                "active_updates": (nz.sum(1) / B).tolist(),
                "spikes": (nz.sum(1) / B).tolist(),
                "spike_payload": (out.abs().flatten(2).sum(2).sum(1) / B).tolist(),
            }
            continue
        if node.op == "Attention":
            counts.layers[node.name] = _attention_counts(node, [fetch(s) for s in node.inputs],
                                                         _origin(graph, node.inputs[0]), B)
            continue
        src = node.inputs[0]
        x = fetch(src)
        origin = _origin(graph, src)
        shape_in = graph[src].shape
        f = _fanout_fn(node, shape_in, numerics)
        rec = {k: [] for k in SYNAPSE_KEYS}
        dense = float(f(torch.ones((1, *x.shape[2:]), dtype=torch.float64), dense=True).sum())
        for t in range(x.shape[0]):
            xt = x[t]
            ind, mag = (xt != 0).to(torch.float64), xt.abs()
            s = p = 0.0
            for i in range(0, xt.shape[0], chunk):
                s += float(f(ind[i:i + chunk]).sum())
                p += float(f(mag[i:i + chunk]).sum())
            spiking = origin == "spike" or (
                origin == "input" and bool(((xt == 0) | (xt.abs() == 1)).all()))
            rec["events"].append(float(ind.sum()) / B)
            rec["payload"].append(float(mag.sum()) / B)
            rec["synops"].append(s / B if spiking else 0.0)
            rec["payload_synops"].append(p / B if spiking else 0.0)
            rec["macs"].append(0.0 if spiking else s / B)
            rec["dense_macs"].append(dense)
        kind = "synaptic" if origin == "spike" else ("input" if origin == "input" else "mac")
        counts.layers[node.name] = {"op": node.op, "kind": kind,
                                    "pooling": node.op in POOL_OPS, "source": src,
                                    "fan_in": int(math.prod(shape_in)), **rec}
    counts.timesteps, counts.samples = int(T or 0), int(B or 0)
    return counts


def _attention_counts(node: Node, qkv: list[torch.Tensor], origin: str, B: int) -> dict:
    """Per-step counts of an Attention (see the module doc) from its Q, K, V [T, B, N, D]."""
    heads = int(node.attrs["heads"])
    q, k, v = (t.unflatten(-1, (heads, -1)) for t in qkv)      # [T, B, N, H, d]
    n_tok, d = q.shape[2], q.shape[4]
    nz = [(t != 0).to(torch.float64) for t in (q, k, v)]
    kv_pairs = (nz[1].sum(-1) * nz[2].sum(-1)).sum((2, 3))      # [T, B]
    kv_load = (k.abs().sum(-1) * v.abs().sum(-1)).sum((2, 3))
    m = torch.einsum("tbnha,tbnhc->tbhac", k, v)                 # Kᵀ·V per head
    row_nz = (m != 0).to(torch.float64).sum(-1)                  # [T, B, H, d]
    q_ops = torch.einsum("tbnha,tbha->tb", nz[0], row_nz)
    q_load = torch.einsum("tbnha,tbha->tb", q.abs(), row_nz)
    spiking = origin == "spike"
    syn, load = ((kv_pairs + q_ops).sum(1) / B).tolist(), ((kv_load + q_load).sum(1) / B).tolist()
    zero = [0.0] * len(syn)
    return {"op": "Attention", "kind": "attention", "pooling": False,
            "source": node.inputs[0], "fan_in": int(n_tok * d),
            "events": (sum(t.flatten(2).sum(2) for t in nz).sum(1) / B).tolist(),
            "payload": (sum(t.abs().flatten(2).sum(2) for t in (q, k, v)).sum(1) / B).tolist(),
            "synops": syn if spiking else zero, "payload_synops": load if spiking else zero,
            "macs": zero if spiking else syn,
            "dense_macs": [float(2 * n_tok * d * d * heads)] * len(syn)}


__all__ = ["Counts", "count_operations", "needed_probes", "NEURON_OPS", "SYNAPTIC_OPS",
           "POOL_OPS"]
