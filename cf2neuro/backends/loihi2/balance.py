"""Balancing residual paths for Lava: identity synapses and delays (DESIGN §4).

    report = balance_paths(graph)   # in place, on the graph being quantized

In Lava every Dense/Conv (and sum pooling) delivers one step later, and a
neuron can take input only through such connections. A residual block
``cf(conv2(cf(conv1(x))) + shortcut(x))`` breaks both rules: an identity
shortcut adds spikes without a synapse, and the shortcut path (0 or 1
synaptic op) is shorter than the conv path (2). For every Add that feeds a
neuron (through Adds) this pass, without changing the float math:

1. **Identity synapse.** An input that is a spike source (a neuron, the
   Input, or a Flatten of one) gets an identity connection on that edge
   only: a 1x1 Conv2d (images) or a Linear (vectors) with identity float
   weights and no bias, ``meta["balance"]["kind"] == "identity synapse"``.
   It is an ordinary producer of the neuron: the quantizer gives it
   mantissas at the neuron's scale S and keeps them exact by lowering S
   to a multiple of its unit (σ of the spikes, times 2^e for a Dense).
2. **Delays.** An input path still k steps shallower than the deepest one
   gets k *delay* nodes right after its spike source (on the edge from the
   source into the path's first op; a source's delays form one chain that
   its branches share), or, when the path shares a pooled/flattened value
   with another path, right after that value. A delay is an identity one
   step later, ``meta["delay"] = True``: a 1x1 SumPool2d over images (NIR's
   SumPool2d; Lava builds it as a Conv of ones grouped by up to 127
   channels, ``cf2neuro_lava.layers.pooling_weights``: C calls of
   convolve2d a step below 128 channels, C²/groups above) and an identity
   Linear over vectors (mantissa 1, weight_exp 0; all weights >= 0, so
   Lava's Dense keeps the 1s: only mixed-sign matrices drop the LSB). The
   quantizer gives it no scale of its own: its output is its input (same
   scale, range, sign, binary) and its num_message_bits are its input's.
   The emulator computes an identity in integers (its depth-aligned frames
   need no delay); Lava runs a real Conv/Dense, one step later, payload
   unchanged. Both agree by construction, and `lower.pipeline_depths`
   finds every path balanced.
3. **Gain.** A Conv has no weight exponent, so an identity synapse over
   images alone would cap S at 255 (vth = 255·θ, and the other convs of
   the neuron lose resolution: an untrained resnet19's conv2 would keep 3
   bits). Its last delay is therefore its own: a 1x1 identity Conv2d
   (``meta["balance"]["private"]``) whose mantissa, the *gain* a, the
   quantizer sets to ceil(S/255) on graded targets, so that a·b = S with
   the synapse's b <= 255: exact, and S is what the other convs allow.
   The delay then carries a·spike (its payload bits grow accordingly).

Identity synapses and gain delays over images are grouped 1x1 convolutions
(`GROUPED_IDENTITY`: groups = the largest divisor of C up to 127, Lava's int8
limit), C²/groups convolve2d calls a step in Lava's Conv instead of C² for a
full C x C one; exact in the IR, the emulator and Lava alike.

Refused (UnsupportedError naming the Add): a shallower path that reaches a
recurrent (back) edge or a node shared with other readers before any spike
source (nothing to delay without changing a loop's latency or another
reader), and values that are neither images nor vectors. Adds whose inputs
lie on a recurrent loop are left to `pipeline_depths`, which refuses them
when misaligned (a loop's delay is fixed).

The report (returned, and stored by the quantizer as JSON in
``graph.meta["fixed_point"]["balance"]``): every inserted node (kind,
the Adds it serves, shape, synapses per step, Lava Conv calls per step),
the totals, and ``extra_latency``: the pipeline latency beyond the longest
path of the unbalanced graph (0: only shorter paths are delayed).
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import UnsupportedError
from ...ir.graph import Graph, Node
from .lower import SYNAPTIC
from .mapping import mant_full
from .numerics import LAVA_LIF_OPS, lava_dense_weights, sign_mode

#: Ops that deliver one step later in Lava (AvgPool2d becomes a sum pool, a Conv).
DELAYING = SYNAPTIC | {"AvgPool2d"}
NEURON_OPS = frozenset({"CFNeuron"}) | LAVA_LIF_OPS
GROUPS_MAX = 127          # Lava's Conv keeps groups as int8
#: Values a delay may follow when the branch shares them: spikes, pooled or flattened.
PAYLOADS = frozenset({"SumPool2d", "AvgPool2d", "Flatten"})
DELAY = "delay"
IDENTITY = "identity synapse"
#: Identity synapses over images as grouped 1x1 Conv2d (C²/groups Lava Conv calls a step)
#: rather than a full C x C one (C² calls); the NIR exporter writes grouped Conv2d.
GROUPED_IDENTITY = True


def is_delay(node: Node) -> bool:
    """A delay node inserted by `balance_paths` (an identity one step later)."""
    return node.meta.get("delay") is True and node.op in ("SumPool2d", "Linear", "Conv2d")


def is_gain_delay(node: Node) -> bool:
    """A delay private to one identity synapse over images (a 1x1 Conv2d): the quantizer
    may give it an integer gain, which the identity synapse's mantissa then divides."""
    return is_delay(node) and node.op == "Conv2d"


def balance_role(node: Node) -> str | None:
    """"delay", "identity synapse" or None."""
    b = node.meta.get("balance")
    return b.get("kind") if isinstance(b, dict) else None


def identity_groups(c: int) -> int:
    """Groups of an exact, affordable 1x1 identity Conv over c channels (<= 127, divides c)."""
    return max(d for d in range(1, min(c, GROUPS_MAX) + 1) if c % d == 0)


def identity_weight(shape: tuple[int, ...]) -> tuple[str, np.ndarray, dict]:
    """(op, float32 weight, attrs) of an identity synapse over a value of `shape`."""
    if len(shape) == 3:
        c = shape[0]
        g = identity_groups(c) if GROUPED_IDENTITY else 1
        per = c // g
        w = np.zeros((c, per, 1, 1), np.float32)
        w[np.arange(c), np.arange(c) % per, 0, 0] = 1.0
        return "Conv2d", w, {"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1],
                             "groups": g}
    if len(shape) == 1:
        return "Linear", np.eye(shape[0], dtype=np.float32), {}
    raise ValueError(f"no identity synapse for values of shape {list(shape)}")


def delay_node(shape: tuple[int, ...], gain: bool = False) -> tuple[str, dict, dict]:
    """(op, params, attrs) of a one-step delay of a value of `shape`.

    Images: a 1x1 sum pool (an identity, NIR's SumPool2d; Lava builds it as a
    Conv of ones grouped by up to 127 channels), or with `gain` an identity
    1x1 Conv2d (its mantissa may be any 1..255). Vectors: an identity Linear
    (all weights >= 0: Lava's Dense keeps the 1s)."""
    if len(shape) == 3 and gain:
        op, w, attrs = identity_weight(shape)
        return op, {"weight": w}, attrs
    if len(shape) == 3:
        return "SumPool2d", {}, {"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0]}
    if len(shape) == 1:
        return "Linear", {"weight": np.eye(shape[0], dtype=np.float32)}, {}
    raise ValueError(f"no delay for values of shape {list(shape)}")


def _cost(node: Node) -> dict:
    """Synapses a step (one per output element: an identity) and Lava's Conv calls a step."""
    out = {"synops_per_step": int(np.prod(node.shape))}
    if node.op == "Conv2d":
        w = node.params["weight"]
        out["groups"] = int(node.attrs["groups"])
        out["lava_conv_calls_per_step"] = int(w.shape[0] * w.shape[1])
    elif node.op == "SumPool2d":  # cf2neuro_lava.layers.pooling_weights: grouped ones
        c = int(node.shape[0])
        out["groups"] = identity_groups(c)
        out["lava_conv_calls_per_step"] = c * (c // identity_groups(c))
    return out


class _Balancer:
    def __init__(self, g: Graph):
        self.g = g
        self.chains: dict[str, list[str]] = {}   # spike source -> its delay chain
        self.inserted: list[str] = []
        stages: dict[str, dict[int, str]] = {}
        for n in g.nodes.values():  # delays of an earlier balancing (a re-quantized graph)
            if is_delay(n) and isinstance(n.meta.get("balance"), dict) and \
                    "private" not in n.meta["balance"]:
                b = n.meta["balance"]
                stages.setdefault(b["source"], {})[int(b["stage"])] = n.name
        for src, st in stages.items():
            if sorted(st) == list(range(1, len(st) + 1)):  # a whole chain: extend it
                self.chains[src] = [st[i] for i in sorted(st)]

    # --- which Adds --------------------------------------------------------------
    def _feeds_neuron(self, name: str, seen=()) -> bool:
        readers = self.g.consumers(name)
        return bool(readers) and all(
            self.g[r].op in NEURON_OPS or (self.g[r].op == "Add" and r not in seen
                                           and self._feeds_neuron(r, (*seen, name)))
            for r in readers)

    def adds(self) -> list[Node]:
        return [n for n in self.g if n.op == "Add" and self._feeds_neuron(n.name)]

    def _spike_source(self, name: str) -> str | None:
        """The neuron/Input a value is (through Flattens), or None."""
        n = self.g[name]
        while n.op == "Flatten":
            n = self.g[n.inputs[0]]
        return n.name if n.op in NEURON_OPS or n.op == "Input" else None

    # --- 1. identity synapses --------------------------------------------------------
    def identities(self) -> None:
        back = self.g.back_edges()
        for add in self.adds():
            for i, s in enumerate(list(add.inputs)):
                src = self.g[s]
                if src.op in DELAYING or src.op == "Add" or (s, add.name) in back:
                    continue
                if self._spike_source(s) is None:
                    continue  # e.g. a Flatten of a Conv: the quantizer refuses it, naming it
                try:
                    op, w, attrs = identity_weight(src.shape)
                except ValueError:
                    raise UnsupportedError(
                        f"{add.where()} adds {s!r} (shape {list(src.shape)}) without a synapse; "
                        f"an identity synapse exists for images [C, H, W] and vectors only"
                    ) from None
                name = self.g.unique_name(f"{add.name}.identity")
                self.g.add_node(name, op, [s], {"weight": w}, attrs, {
                    "balance": {"kind": IDENTITY, "for": add.name, "source": s}})
                add.inputs[i] = name
                self.inserted.append(name)
        self.g.infer_shapes()

    # --- 2. delays -------------------------------------------------------------------
    def delays(self) -> None:
        for _ in range(4 * len(self.g) + 4):  # each round fixes one Add for good
            d, back = forward_depths(self.g), self.g.back_edges()
            for add in self.adds():
                slots = [(i, s, d[s]) for i, s in enumerate(add.inputs)
                         if (s, add.name) not in back and d[s] is not None]
                if not slots:
                    continue
                top = max(x for _, _, x in slots)
                short = [(i, s, top - x) for i, s, x in slots if x < top]
                if short:
                    for i, _, k in short:
                        self._delay_input(add, add, i, k, back)
                    break  # depths changed upstream: recompute
            else:
                return
        raise UnsupportedError("balancing the graph's paths does not converge; please report "
                               "this with the model's config")

    def _delay_input(self, add: Node, node: Node, slot: int, k: int, back: set) -> None:
        """Delay what `node` reads on input `slot` by k steps (the branch into `add`)."""
        x = self.g[node.inputs[slot]]
        if x.op == "Add":  # a nested Add: delay each of its (balanced) branches
            for j in range(len(x.inputs)):
                if (x.inputs[j], x.name) in back:
                    raise self._refuse(add, x.inputs[j], k, f"it reaches the recurrent edge "
                                                            f"{x.inputs[j]!r} -> {x.name!r}")
                self._delay_input(add, x, j, k, back)
            return
        others = [c for c in self.g.consumers(x.name) if c != node.name]
        if others:
            raise self._refuse(add, x.name, k, f"{x.where()} is also read by {others}, "
                                               f"which must not be delayed")
        while True:  # walk up the branch to its spike source
            s = self.g[x.inputs[0]]
            if (s.name, x.name) in back:
                raise self._refuse(add, node.inputs[slot], k,
                                   f"it starts at the recurrent (back) edge {s.name!r} -> "
                                   f"{x.name!r}, whose one-step delay a loop fixes")
            if is_gain_delay(s):  # private to x: delay what it reads instead
                x = s
                continue
            if is_delay(s):
                b = s.meta["balance"]
                self._attach(x, b["source"], int(b["stage"]) + k, add)
                return
            if s.op in NEURON_OPS or s.op == "Input":
                self._attach(x, s.name, k, add)
                return
            movable = s.op in DELAYING | {"Flatten"}
            if movable and self.g.consumers(s.name) == [x.name]:
                x = s
                continue
            if s.op in PAYLOADS:  # shared with another path: delay after it, still spikes
                self._attach(x, s.name, k, add)
                return
            why = (f"{s.where()} on it is also read by {self.g.consumers(s.name)}" if movable
                   else f"it passes {s.where()}")
            raise self._refuse(add, node.inputs[slot], k, f"{why} before any spike source")

    def _refuse(self, add: Node, branch: str, k: int, why: str) -> UnsupportedError:
        return UnsupportedError(
            f"{add.where()}: its input {branch!r} arrives {k} Lava step(s) before the others, "
            f"and the path cannot be delayed: {why}. A delay goes right after a neuron (or "
            f"the Input) on a path of its own; restructure the graph or run the float "
            f"reference")

    def _new_delay(self, source: str, prev: str, stage: int, add: Node, x: Node,
                   gain: bool) -> str:
        shape = self.g[source].shape
        try:
            op, params, attrs = delay_node(shape, gain)
        except ValueError:
            raise self._refuse(add, x.name, stage, f"its source {source!r} has shape "
                                                   f"{list(shape)}; a delay exists for "
                                                   f"images and vectors only") from None
        name = self.g.unique_name(f"{x.name}.delay" if gain else f"{source}.delay{stage}")
        self.g.add_node(name, op, [prev], params, attrs, {
            "delay": True, "balance": {"kind": DELAY, "source": source, "stage": stage,
                                       "for": [add.name], **({"private": x.name} if gain
                                                             else {})}})
        self.inserted.append(name)
        return name

    def _attach(self, x: Node, source: str, stage: int, add: Node) -> None:
        """Make `x` read the `stage`-th delay after `source` (growing the shared chain).

        An identity synapse over images reads a delay of its own instead (a 1x1 Conv2d,
        after stage - 1 shared ones), which the quantizer may give a gain; a private
        delay x already has (walked through) moves to its new stage."""
        chain = self.chains.setdefault(source, [])
        own = is_gain_delay(x)
        gain = not own and balance_role(x) == IDENTITY and len(self.g[source].shape) == 3
        shared = stage - 1 if gain else stage
        while len(chain) < shared:
            prev = chain[-1] if chain else source
            chain.append(self._new_delay(source, prev, len(chain) + 1, add, x, False))
        for name in chain[:shared]:
            users = self.g[name].meta["balance"]["for"]
            if add.name not in users:
                users.append(add.name)
        before = chain[shared - 1] if shared else source
        if own:  # x is a private delay: it reads the shared stage before it
            x.inputs[0] = before
            x.meta["balance"]["stage"] = stage + 1
        elif gain:
            x.inputs[0] = self._new_delay(source, before, stage, add, x, True)
        else:
            x.inputs[0] = before
        self.g.infer_shapes()


def forward_depths(g: Graph) -> dict[str, int | None]:
    """Lava depths over forward edges, an Add taking its deepest input; None where a node
    depends on a back edge only (a loop's depth is `lower.pipeline_depths`' business)."""
    back = g.back_edges()
    d: dict[str, int | None] = {}
    for n in g:
        if n.op == "Input":
            d[n.name] = 0
            continue
        ins = [d[s] for s in n.inputs if (s, n.name) not in back]
        d[n.name] = None if not ins or any(x is None for x in ins) else \
            max(ins) + int(n.op in DELAYING)
    return d


def longest_path(g: Graph) -> int:
    """The Output's depth with every Add taking its deepest input (forward edges)."""
    depths = forward_depths(g)
    vals = [depths[o] for o in g.outputs if depths[o] is not None]
    return max(vals, default=0)


def balance_paths(g: Graph) -> dict:
    """Insert identity synapses and delays (in place); the cost report (see module doc)."""
    before = longest_path(g)
    b = _Balancer(g)
    b.identities()
    b.delays()
    nodes = []
    for name in b.inserted:
        n = g[name]
        info = n.meta["balance"]
        nodes.append({"node": name, "op": n.op, "kind": info["kind"],
                      "for": info["for"], "source": info["source"], "shape": list(n.shape),
                      **({"stage": info["stage"]} if info["kind"] == DELAY else {}),
                      **_cost(n)})
    return {"inserted": nodes,
            "delays": sum(x["kind"] == DELAY for x in nodes),
            "identity_synapses": sum(x["kind"] == IDENTITY for x in nodes),
            "extra_synops_per_step": sum(x["synops_per_step"] for x in nodes),
            "extra_lava_conv_calls_per_step": sum(x.get("lava_conv_calls_per_step", 0)
                                                  for x in nodes),
            "longest_path": int(before)}


def add_latency(report: dict, latency: int) -> dict:
    """The report with the balanced graph's latency and the extra over the longest path."""
    return {**report, "latency": int(latency),
            "extra_latency": int(latency) - int(report["longest_path"])}


# --- the quantizer's part (quantize._Quantizer calls these) ----------------------

def gain_delay(g: Graph, p: Node) -> str | None:
    """The delay private to identity synapse p over images, which may carry a gain."""
    if balance_role(p) != IDENTITY or p.op != "Conv2d":
        return None
    d = g[p.inputs[0]]
    ok = is_gain_delay(d) and g.consumers(d.name) == [p.name] and \
        d.meta["balance"].get("private") == p.name
    return d.name if ok else None


def exact_identities(q, prods: list[Node], eff: dict, scale: float) -> float:
    """Neuron scale S lowered to a multiple of each identity synapse's unit, so that its
    mantissas (S · gain / σ, per weight exponent for a Dense) are exact integers.

    A Conv's mantissa stops at 255, so an identity synapse with a delay of its own
    splits a larger S: the delay multiplies by a = ceil(S/(255·σ)) (`q.gain`), the
    synapse by S/(a·σ) <= 255, both integers (σ the spikes' scale, 1); not on binary
    targets, whose payloads are 0/1. `q` is the quantizer (its source(), fmt, gain)."""
    full = q.fmt.weight_mant_max
    for p in prods:
        if balance_role(p) != IDENTITY:
            continue
        w, c = eff[p.name]
        vals = np.unique(w[w != 0])
        if vals.size != 1 or vals[0] <= 0:
            continue  # per-neuron gains: no single unit; its report says how close
        sigma = q.source(p.inputs[0]).sigma
        d = gain_delay(q.g, p) if q.fmt.graded_spikes else None  # binary: 0/1 payloads
        if d is not None:
            q.gain[d] = min(max(math.ceil(scale * vals[0] / (full * sigma) - 1e-9), 1), full)
            sigma = q.source(p.inputs[0]).sigma   # now times the gain
        unit = sigma / float(vals[0])
        if p.op == "Linear":
            e = math.ceil(math.log2(scale * c / (sigma * mant_full(sign_mode(w), q.fmt))) - 1e-9)
            unit *= 2.0 ** min(max(e, q.fmt.weight_exp_min), q.fmt.weight_exp_max)
        k = math.floor(scale / unit + 1e-9)
        if k >= 1:
            scale = k * unit
    return scale


def identity_report(p: Node, m: np.ndarray, exact_values: np.ndarray) -> None:
    """Add to an identity synapse's meta["quant"] what it is, for which Add, how exact."""
    exact = bool(np.array_equal(m, exact_values))
    rep = p.meta["quant"]
    if not exact:
        rep["notes"].append(f"identity synapse mantissas {np.unique(m).tolist()} approximate "
                            f"{np.unique(exact_values).tolist()} (per-neuron gains)")
    rep.update(role=IDENTITY, exact=exact, **{"for": p.meta["balance"]["for"]})


def inserted_fan_in(p: Node) -> int:
    """Synapses per neuron of an inserted identity (one)."""
    w = np.asarray(p.params["weight"])
    return int(np.count_nonzero(w.reshape(w.shape[0], -1), axis=1).max(initial=0))


def quantize_delay(q, p: Node) -> None:
    """A delay's integer form: an identity one step later, carrying its input's payload.

    Images: a 1x1 SumPool2d, or a 1x1 Conv2d private to one identity synapse whose
    mantissa is its gain (`exact_identities`; else 1); vectors: an identity Linear
    (mantissa 1, weight_exp 0; all weights >= 0: Lava's Dense keeps them). Its
    num_message_bits are its input's; its output is its input times the gain."""
    fp: dict = {}
    a = q.gain.get(p.name, 1)
    if p.op in ("Linear", "Conv2d"):
        w = np.asarray(p.params["weight"], np.float64)
        m = np.rint(w).astype(np.int16)
        ident = np.zeros(m.shape)
        ident[(np.arange(m.shape[0]), np.arange(m.shape[0]) % m.shape[1])] = 1
        if not (np.array_equal(m, w) and np.array_equal(m, ident)):
            raise UnsupportedError(f"{p.where()} is marked as a delay but its weight is not "
                                   f"an identity")
        m = (m * a).astype(np.int16)
        if p.op == "Linear":
            assert np.array_equal(lava_dense_weights(m), m)
            fp["weight_exp"] = 0
        p.params["weight_mant"] = m
    elif p.op != "SumPool2d" or p.attrs["kernel"] not in (1, [1, 1]) or \
            p.attrs["stride"] not in (1, [1, 1]) or p.attrs["padding"] not in (0, [0, 0]):
        raise UnsupportedError(f"{p.where()} is marked as a delay but is no identity (a "
                               f"1x1 SumPool2d or an identity Linear)")
    fp["num_message_bits"] = q.message_bits(p)
    src = q.source(p.inputs[0])
    p.attrs["fixed_point"] = fp
    b = p.meta.get("balance", {})
    p.meta["quant"] = {"kind": DELAY, "for": list(b.get("for", [])),
                       "source": b.get("source"), "stage": b.get("stage"), "gain": int(a),
                       "scale": float(src.sigma * a), "input_scale": float(src.sigma), **fp,
                       "notes": []}
    q.scale_out[p.name] = src.sigma * a


__all__ = ["balance_paths", "add_latency", "is_delay", "is_gain_delay", "balance_role",
           "identity_weight", "identity_groups", "delay_node", "longest_path", "gain_delay",
           "exact_identities", "identity_report", "inserted_fan_in", "quantize_delay", "DELAY",
           "IDENTITY"]
