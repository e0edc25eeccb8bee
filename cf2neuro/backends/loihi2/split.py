"""Fan-in beyond one core: split a layer into synapse groups whose partial sums add up.

    split_fan_in(graph, limit) -> the number of layers split (in place)
    fan_in(node) -> synapses per neuron that carry a weight

A Loihi neuron accumulates the synaptic input of every connection into its
dendrite, so a layer whose fan-in exceeds the per-core limit can be spread
over several synapse groups (cores), each holding a slice of the input
channels, all feeding the same neurons: dendritic accumulation. In the IR a
split Conv2d (Linear) becomes k Conv2d (Linear) nodes that keep the full
input but carry only their slice's weights (the others zero), joined by an
Add into the neuron; Lava runs them as k Conv (Dense) processes connected to
one InPort, which sums them, and the emulator adds them the same way (each
part wrapped to its own 24-bit output first, as Lava's processes do).

The limit is the target's ``[resources.fan_in]`` (loihi2: 4096, Loihi's
input axons per core, Davies et al. 2018; not published for Loihi 2).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph, Node


def fan_in(node: Node) -> int:
    """Synapses per output neuron that carry a weight (slices a split zeroed do not count)."""
    w = np.asarray(node.params["weight"])
    if node.op == "Linear":
        return int(np.count_nonzero(np.any(w != 0, axis=0)))
    if node.op == "Conv2d":  # input channels in use x the kernel's taps
        used = np.any(w != 0, axis=(0, 2, 3))
        return int(np.count_nonzero(used)) * int(np.prod(w.shape[2:]))
    return 0


def _per_channel(node: Node) -> int:
    return 1 if node.op == "Linear" else int(np.prod(node.params["weight"].shape[2:]))


def split_fan_in(g: Graph, limit: int | None) -> int:
    """Split every Linear/Conv2d feeding a neuron whose fan-in exceeds `limit`; returns how many."""
    if limit is None:
        return 0
    count = 0
    for node in [n for n in g if n.op in ("Linear", "Conv2d")]:
        fan = fan_in(node)
        if fan <= limit:
            continue
        taps = _per_channel(node)
        if taps > limit:
            raise UnsupportedError(f"{node.where()}: one input channel alone needs {taps} "
                                   f"synapses, over the fan-in limit of {limit}; use a "
                                   f"smaller kernel")
        if node.op == "Conv2d" and node.attrs.get("groups", 1) != 1:
            raise UnsupportedError(f"{node.where()}: a grouped convolution with fan-in {fan} "
                                   f"over the limit {limit}; split its groups by hand")
        _split(g, node, limit // taps)
        count += 1
    return count


def _split(g: Graph, node: Node, per_part: int) -> None:
    """node -> parts `name.part<i>` over channel slices of <= per_part, summed by an Add."""
    readers = [g[c] for c in g.consumers(node.name)]
    if not readers or any(r.op == "Output" for r in readers):
        raise UnsupportedError(f"{node.where()}: fan-in {fan_in(node)} over the limit, and it "
                               f"is a readout (read by the Output); only a layer that feeds a "
                               f"neuron can be split over several cores. Add a hidden layer")
    w = np.asarray(node.params["weight"])
    channels = w.shape[1]
    parts = math.ceil(channels / per_part)
    per_part = math.ceil(channels / parts)  # balanced: 512 channels -> 2 x 256, not 455 + 57
    names = []
    for i in range(parts):
        lo, hi = i * per_part, min(channels, (i + 1) * per_part)
        wi = np.zeros_like(w)
        wi[:, lo:hi] = w[:, lo:hi]
        params = {"weight": wi}
        if i == 0 and "bias" in node.params:
            params["bias"] = node.params["bias"]
        name = f"{node.name}.part{i}"
        g.add_node(name, node.op, list(node.inputs), params, dict(node.attrs),
                   {**node.meta, "split": {"of": node.name, "part": i, "parts": parts,
                                           "channels": [lo, hi]}})
        names.append(name)
    add = f"{node.name}.sum"
    g.add_node(add, "Add", names, meta={"split": {"of": node.name, "parts": parts}})
    g.replace_uses(node.name, add)
    g.remove_node(node.name)
