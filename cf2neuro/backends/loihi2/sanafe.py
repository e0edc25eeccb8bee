"""SANA-FE's simulated energy and latency of a run, next to cf2neuro's analytic estimate.

    sim = simulate(qgraph, x, "loihi")       # a quantized graph and its inputs [T, B, ...]
    sim["joules_per_inference"], sim["by_unit"], sim["latency_per_inference_s"]
    sim["agreement"]["exact"]                # SANA-FE's spikes == the emulator's

`cf2neuro.energy.sanafe_compare` puts it next to the analytic estimate.

SANA-FE (pip ``sanafe``; Boyle et al., IEEE TCAD 2025) simulates a chip
described in YAML at time-step granularity. The network is built from the
quantized graph: each neuron layer (CFNeuron, or Lava's LIF/IF as the loihi
target lowers binary CF layers) a group of SANA-FE's Loihi LIF
(``leaky_integrate_fire``), each Linear/Conv2d its nonzero effective weights
as synapses, a Linear readout a group of compartments that never fire.
Layers fill cores in order, each from a new core, at most min(target,
architecture) neurons a core. SANA-FE runs the dynamics itself; with
potentials in units of 1/64 of the integer state its LIF computes the CF
neuron with reset=zero and Lava's LIF with du = 4095 exactly (leak, bias,
floor and lower clamp included), so it prices the measured spikes; every
run checks that its spikes equal the emulator's.

Inputs: binary input spikes are input neurons with the sample's spike train;
graded inputs (direct-current pixels) are the first layer's bias current
per step, as SANA-FE's own DVS script drives Loihi (no synaptic events).

Time: a layer at pipeline depth d computes sample step t at SANA-FE step
t + d + (1 with input neurons): the emulator's depth-aligned frame. A
layer's bias is on only during its frame (Lava resets each layer at its
depth), so SANA-FE's events are exactly the run's; every neuron is still
accessed at each of the T + latency steps (one fewer with graded inputs).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

from ...errors import RuntimeMissingError, UnsupportedError
from ...targets import load_target

LSB = 64.0            # potentials in units of 1/64: SANA-FE's LIF truncates to 1/64 each step
STATE_MAX = (1 << 23) - 1
# cf2neuro target -> SANA-FE architecture. SANA-FE 2.2.9 ships loihi.yaml, truenorth.yaml
# (every energy 0.0, no input unit) and toy examples; nothing for Loihi 2, Xylo or CMOS.
ARCHS = {
    "loihi": {"file": "loihi.yaml", "match": "exact: SANA-FE's Loihi (1) model"},
    "loihi2": {"file": "loihi.yaml", "match": "closest: SANA-FE ships no Loihi 2 model; its "
               "Loihi (1) model (1,024 neurons a core, binary spikes) stands in, as cf2neuro's "
               "loihi2 energies are Loihi 1's"},
}
UNITS = {"lif": "loihi_lif", "input": "loihi_inputs[{}]", "Linear": "loihi_dense_synapse",
         "Conv2d": "loihi_conv_synapse"}
_PASS = ("Flatten", "Identity")
NEURONS = ("CFNeuron", "LIF", "IF", "CubaLIF")


def arch_for(target) -> dict:
    tgt = load_target(target)
    if tgt.name not in ARCHS:
        raise UnsupportedError(f"SANA-FE has no architecture for target {tgt.name!r}; mapped: "
                               + ", ".join(f"{k} -> {v['file']}" for k, v in ARCHS.items()))
    return {**ARCHS[tgt.name], "target": tgt.name}


def arch_energies(path) -> dict:
    """{unit: {energy_key: (joules, line)}} read from an architecture YAML (lines for citing)."""
    out, unit = {}, None
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        m = re.match(r"\s*- name:\s*(\S+)", line)
        if m:
            unit = re.sub(r"\[\d+\.\.\d+\]$", "", m.group(1))
            out.setdefault(unit, {})
            continue
        m = re.match(r"\s*(energy_\w+):\s*([-+0-9.eE]+)\s*$", line)
        if m and unit:
            out[unit][m.group(1)] = (float(m.group(2)), i)
    return out


def _layout(text: str) -> tuple[int, int, int]:
    """(tiles, cores a tile, neurons a core) of a SANA-FE architecture YAML like loihi.yaml."""
    tiles, cores = (int(m) + 1 for m in re.findall(r"- name: \w+\[0\.\.(\d+)\]\n\s+attributes:"
                                                   r"\n\s+(?:energy_north_hop|buffer_pos)", text))
    return tiles, cores, int(re.search(r"max_neurons_supported:\s*(\d+)", text)[1])


def _trimmed_arch(src: Path, tiles: int, tmp: Path) -> Path:
    """The shipped file with only the tiles used (mesh size kept: same coordinates and hops)
    and per-core energy logging on (per-layer energies); no energy or latency changes."""
    text = src.read_text()
    text, n = re.subn(r"(name: \w+)\[0\.\.\d+\](\n\s+attributes:\n\s+energy_north_hop)",
                      rf"\1[0..{tiles - 1}]\2", text)
    text, m = re.subn(r"(\n(\s+)max_neurons_supported: \d+\n)", r"\1\2log_energy: true\n", text)
    if n != 1 or m != 1:
        raise UnsupportedError(f"{src}: not laid out like SANA-FE 2.2.9's loihi.yaml")
    out = tmp / src.name
    out.write_text(text)
    return out


# --- the network ------------------------------------------------------------------------

def _layers(qg, binary_input: bool):
    """Groups [{name, kind, size, depth, node}] and connections [(src, dst, node)] in order."""
    from .lower import pipeline_depths

    if qg.back_edges():
        raise UnsupportedError("recurrent graphs (back edges) have no SANA-FE mapping here")
    depths = pipeline_depths(qg)
    groups, conns, alias, fed = {}, [], {}, {}
    out_of = {n.name: list(qg.consumers(n.name)) for n in qg.nodes.values()}
    for node in qg.nodes.values():
        op, depth = node.op, depths[node.name]
        if op == "Input":
            alias[node.name] = node.name
            groups[node.name] = {"kind": "input", "size": math.prod(node.shape), "depth": 0,
                                 "node": node}
        elif op in _PASS:
            alias[node.name] = alias.get(node.inputs[0])
        elif op == "Output":
            continue
        elif op in NEURONS:
            fp = node.attrs["fixed_point"]
            if op == "CFNeuron" and (int(fp["max_spikes"]) != 1 or fp["signed"]):
                raise UnsupportedError(f"{node.where()}: SANA-FE sends binary spikes only; this "
                                       f"layer sends graded/signed ones (max_spikes="
                                       f"{fp['max_spikes']}, signed={fp['signed']}); train "
                                       f"with --neuron max_spikes=1 signed=false")
            alias[node.name] = node.name
            groups[node.name] = {"kind": "neuron", "size": math.prod(node.shape), "depth": depth,
                                 "node": node}
        elif op in ("Linear", "Conv2d"):
            src = alias.get(node.inputs[0])
            if src is None:
                raise UnsupportedError(f"{node.where()}: its input is not a neuron layer")
            nxt = out_of[node.name]
            while len(nxt) == 1 and qg[nxt[0]].op == "Identity":
                nxt = out_of[nxt[0]]
            if len(nxt) != 1 or qg[nxt[0]].op not in (*NEURONS, "Output"):
                raise UnsupportedError(f"{node.where()}: feeds {nxt}; SANA-FE mapping needs one "
                                       f"neuron layer (or the Output) after each synaptic layer")
            if qg[nxt[0]].op == "Output":
                groups[node.name] = {"kind": "readout", "size": math.prod(node.shape),
                                     "depth": depth, "node": node}
            dst = nxt[0] if qg[nxt[0]].op in NEURONS else node.name
            if groups[src]["kind"] == "input" and not binary_input:
                fed[dst] = node.name   # graded input: the destination's bias per step
            else:
                conns.append((src, dst, node))
        else:
            raise UnsupportedError(f"{node.where()}: op {op} has no SANA-FE mapping (mapped: "
                                   f"Input, Linear, Conv2d, {', '.join(NEURONS)}, Flatten, "
                                   f"Output)")
    for dst, src in fed.items():
        groups[dst]["input_current"] = src
    if not binary_input:
        groups = {k: g for k, g in groups.items() if g["kind"] != "input"}
    return groups, conns


def _synapses(node, src_shape, unit: int = 1):
    """(pre, post, weight) arrays of the nonzero effective weights, in potential units
    (`unit`: state units a synaptic unit adds at the destination)."""
    from .numerics import lava_dense_weights

    fp = node.attrs["fixed_point"]
    if node.op == "Linear":   # Lava's Dense legalizes its mantissas, then shifts by weight_exp
        w = lava_dense_weights(node.params["weight_mant"]) * 2.0 ** int(fp.get("weight_exp", 0))
        post, pre = np.nonzero(w)
        return pre, post, w[post, pre] * unit / LSB
    w = np.asarray(node.params["weight_mant"], dtype=np.float64)   # Lava's Conv: no exponent
    a, (_, h, wd) = node.attrs, src_shape
    co, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw), g = a["stride"], a["padding"], a["dilation"], a["groups"]
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    o, c, ky, kx, oy, ox = np.meshgrid(np.arange(co), np.arange(cg), np.arange(kh), np.arange(kw),
                                       np.arange(ho), np.arange(wo), indexing="ij")
    iy, ix, ic = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw, (o // (co // g)) * cg + c
    wt = w[o, c, ky, kx]
    ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd) & (wt != 0)
    pre = (ic * h + iy) * wd + ix
    post = (o * ho + oy) * wo + ox
    return pre[ok], post[ok], wt[ok] * unit / LSB


def _neuron_attrs(node):
    """(group attributes, per-neuron bias and floor in potential units, the state units a
    synaptic unit adds, notes) of a neuron layer: cf2neuro's CF process adds a to v, Lava's
    LIF adds a << 6 (docs/fixed_point.md); SANA-FE fires on potential > threshold."""
    fp, notes = node.attrs["fixed_point"], []
    vth, dv = int(fp["vth"]), int(fp["dv"])
    from .numerics import LIF_SHIFT, scale_bias

    bias = np.zeros(node.shape)
    if "bias_mant" in node.params:
        bias = np.broadcast_to(scale_bias(node.params["bias_mant"], int(fp.get("bias_exp", 0))),
                               node.shape).astype(np.float64)
    floor = np.broadcast_to(np.asarray(node.params.get("v_min_int", -STATE_MAX)), node.shape)
    attrs = {"reset": 0.0, "leak_decay": (4096 - dv) / 4096.0, "reverse_reset_mode": "saturate"}
    if node.op == "CFNeuron":   # spike when v >= vth: v > vth - 1/2 for integer v
        zero, unit = fp.get("reset", "subtract") == "zero", 1
        attrs.update(threshold=(vth - 0.5) / LSB, reset_mode="hard" if zero else "soft")
        if not zero:
            notes.append(f"{node.name}: reset=subtract is approximated (SANA-FE's soft reset "
                         f"subtracts its threshold, vth - 1/2 here); see the spike agreement")
    else:                        # Lava's LIF: spike when v > vth << 6, then v = 0
        unit, du = 1 << LIF_SHIFT, int(fp["du"])
        attrs.update(threshold=float(vth << LIF_SHIFT) / LSB, reset_mode="hard")
        if du != 4095:   # SANA-FE keeps the current unrounded; Lava truncates u each step
            attrs["input_decay"] = (4096 - (du + 1)) / 4096.0
            notes.append(f"{node.name}: du = {du} (a decaying current) is approximated: "
                         f"SANA-FE does not round the current as Lava does")
    return attrs, bias.reshape(-1) / LSB, floor.reshape(-1) / LSB, unit, notes


def _place(groups: dict, per_core: int, n_cores: int) -> dict:
    """Each group from a new core, `per_core` neurons a core, in graph order."""
    core, out = 0, {}
    for name, g in groups.items():
        k = max(1, math.ceil(g["size"] / per_core))
        out[name] = list(range(core, core + k))
        core += k
    if core > n_cores:
        raise UnsupportedError(f"the network needs {core} cores of {per_core} neurons; the "
                               f"architecture has {n_cores}")
    return out


class _Chip:
    """The SANA-FE network of a quantized graph, loaded on the (trimmed) architecture."""

    def __init__(self, qg, target, binary_input: bool, neurons_per_core=None, tmp=None):
        try:
            import sanafe
        except ImportError as e:
            raise RuntimeMissingError("SANA-FE is not installed: pip install "
                                      "'cf2neuro[sanafe]' (sanafe 2.2.9)") from e

        spec, tgt = arch_for(target), load_target(target)
        self.src = Path(str(files("sanafe.examples") / spec["file"]))
        self.energies, self.spec, self.notes = arch_energies(self.src), spec, []
        n_tiles, per_tile, max_core = _layout(self.src.read_text())
        self.per_core = min(int(neurons_per_core or tgt.limit("neurons_per_core") or max_core),
                            max_core)
        self.groups, self.conns = _layers(qg, binary_input)
        self.placement = _place(self.groups, self.per_core, n_tiles * per_tile)
        used = max(c for cs in self.placement.values() for c in cs) + 1
        self.arch_path = _trimmed_arch(self.src, math.ceil(used / per_tile), Path(tmp))
        self.arch = sanafe.load_arch(str(self.arch_path))
        cores, net = self.arch.cores(), sanafe.Network()
        self.bias = {}
        for name, g in self.groups.items():
            kw = dict(log_spikes=g["kind"] == "neuron", log_potential=g["kind"] == "readout")
            g["unit"] = 1
            if g["kind"] == "input":
                grp = net.create_neuron_group(name, g["size"], soma_hw_name=UNITS["input"]
                                              .format(0), **kw)
            else:
                syn = [c[2].op for c in self.conns if c[1] == name] or ["Linear"]
                attrs = {"threshold": 1e300, "leak_decay": 0.0}   # readout: a of each step
                if g["kind"] == "neuron":
                    attrs, self.bias[name], floor, g["unit"], notes = _neuron_attrs(g["node"])
                    self.notes += notes
                grp = net.create_neuron_group(name, g["size"], model_attributes=attrs,
                                              soma_hw_name=UNITS["lif"],
                                              default_synapse_hw_name=UNITS[syn[0]], **kw)
            for i, n in enumerate(grp):
                if g["kind"] == "input":   # one input unit per neuron: each holds one train
                    n.set_attributes(soma_hw_name=UNITS["input"].format(i % self.per_core))
                elif g["kind"] == "neuron":
                    n.set_attributes(model_attributes={"reverse_threshold": float(floor[i])})
                n.map_to_core(cores[self.placement[name][i // self.per_core]])
        shapes = {n.name: n.shape for n in qg.nodes.values()}
        self.synapses = 0
        for src, dst, node in self.conns:
            if int(node.attrs["fixed_point"].get("weight_exp", 0)) < 0:
                self.notes.append(f"{node.name}: weight_exp < 0: Lava floors each step's sum, "
                                  f"SANA-FE adds fractional weights; see the spike agreement")
            pre, post, w = _synapses(node, shapes[node.inputs[0]], self.groups[dst]["unit"])
            net[src].connect_neurons_sparse(net[dst], {"w": w.tolist()},
                                            list(zip(pre.tolist(), post.tolist())))
            self.synapses += len(w)
        self.chip = sanafe.SpikingChip(self.arch)
        self.chip.load(net)
        self.mapped = self.chip.mapped_neuron_groups
        self.core_names = [f"{t.name}.{c.name}" for t in self.arch.tiles for c in t.cores]

    def set_bias(self, name: str, values) -> None:
        for n, b in zip(self.mapped[name], np.asarray(values, dtype=np.float64).tolist()):
            n.set_attributes(model_attributes={"bias": b})

    def run(self, steps: int, timing_model: str) -> dict:
        with contextlib.redirect_stdout(io.StringIO()):   # SANA-FE prints its progress
            return self.chip.sim(steps, timing_model=timing_model, spike_trace=True,
                                 potential_trace=True, perf_trace=True)


# --- simulation -----------------------------------------------------------------------------

def probes(qg) -> list[str]:
    """What `simulate` reads from the emulator's run: inputs, spikes, synaptic currents."""
    return [n.name for n in qg.nodes.values()
            if n.op in ("Input", "Linear", "Conv2d", *NEURONS)]


def _schedule(chip, run, xin, b: int, T: int, off: int) -> dict[int, list]:
    """What to set before which SANA-FE step (1-based) for sample b: the input spike trains,
    each layer's bias on at its frame's first step (with the graded input current per step
    for the input layer) and off after its last: so no event falls outside a frame."""
    todo: dict[int, list] = {1: []}
    for name, g in chip.groups.items():
        first = g["depth"] + off
        if g["kind"] == "input":
            trains = (xin[:, b].reshape(T, -1) != 0).T.tolist()
            todo[1].append(lambda tr=trains, nm=name: [
                n.set_attributes(model_attributes={"spikes": t})
                for n, t in zip(chip.mapped[nm], tr)])
        elif g["kind"] == "neuron":
            graded = "input_current" in g
            cur = (np.asarray(run[g["input_current"]])[:, b].reshape(T, -1) * g["unit"] / LSB
                   if graded else np.zeros((T, 1)))
            chip.set_bias(name, np.zeros(g["size"]))
            for t in range(T if graded else 1):
                todo.setdefault(first + t, []).append(
                    lambda v=chip.bias[name] + cur[t], nm=name: chip.set_bias(nm, v))
            todo.setdefault(first + T, []).append(
                lambda nm=name, n=g["size"]: chip.set_bias(nm, np.zeros(n)))
    return todo


def _run_sample(chip, todo: dict, steps: int, timing_model: str) -> dict:
    """Run `steps` steps, applying `todo` between runs; SANA-FE's sums and traces."""
    out = {"energy": {}, "counts": {}, "sim_time": 0.0, "spikes": [], "pots": [], "perf": {}}
    edges = sorted(s for s in todo if s <= steps) + [steps + 1]
    for s, nxt in zip(edges[:-1], edges[1:]):
        for f in todo[s]:
            f()
        r = chip.run(nxt - s, timing_model)
        for k, v in r["energy"].items():
            out["energy"][k] = out["energy"].get(k, 0.0) + v
        for k in ("spikes", "packets_sent", "neurons_updated", "neurons_fired"):
            out["counts"][k] = out["counts"].get(k, 0) + r[k]
        out["sim_time"] += r["sim_time"]
        out["spikes"] += r["spike_trace"]
        out["pots"] += r["potential_trace"]
        for k, v in r["perf_trace"].items():
            out["perf"][k] = out["perf"].get(k, 0.0) + float(np.sum(v))
    return out


def simulate(qgraph, x, target="loihi", samples: int | None = None, run: dict | None = None,
             neurons_per_core: int | None = None, timing_model: str = "detailed") -> dict:
    """SANA-FE energy and latency per inference of the quantized graph on inputs x [T, B, ...].

    `run`: the emulator's result with the `probes` of the graph (run here if None).
    Returns joules_per_inference, by_unit (SANA-FE's synapse/dendrite/soma/network),
    by_layer (the energy of each group's cores, NoC hops apart), counts_per_inference,
    latency, placement, the architecture file, the spike agreement and notes.
    """
    from .lower import graph_latency
    from ...runners.emulator import emulate

    t0, x = time.perf_counter(), np.asarray(x)
    T, B = x.shape[:2]
    samples = B if samples is None else min(int(samples), B)
    if run is None or any(p not in run for p in probes(qgraph)):
        run = emulate(qgraph, x[:, :samples], probes=probes(qgraph))
    xin = next(np.asarray(run[n.name]) for n in qgraph.nodes.values() if n.op == "Input")
    binary = bool(np.isin(xin[:, :samples], (0, 1)).all())
    off = 1 if binary else 0                 # input neurons take one step to send
    steps = T + graph_latency(qgraph) + off - 1
    with tempfile.TemporaryDirectory() as tmp:
        chip = _Chip(qgraph, target, binary, neurons_per_core, tmp)
    groups = chip.groups
    tot: dict = {"energy": {}, "counts": {}, "sim_time": 0.0}
    by_layer = dict.fromkeys(groups, 0.0)
    agree = dict.fromkeys(("spikes_compared", "spikes_mismatched", "extra_spikes",
                           "readout_values", "readout_mismatched"), 0)
    for b in range(samples):
        chip.chip.reset()
        r = _run_sample(chip, _schedule(chip, run, xin, b, T, off), steps, timing_model)
        for key in ("energy", "counts"):
            for k, v in r[key].items():
                tot[key][k] = tot[key].get(k, 0.0) + v / samples
        tot["sim_time"] += r["sim_time"] / samples
        for name, cs in chip.placement.items():
            by_layer[name] += sum(r["perf"].get(f"{chip.core_names[c]}.energy", 0.0)
                                  for c in cs) / samples
        _agree(agree, chip, run, b, r["spikes"], r["pots"], T, off)
    e, c = tot["energy"], tot["counts"]
    hops = e["total"] - sum(by_layer.values())      # tile (NoC hop) energy: in no core
    return {
        "simulator": "sanafe", "target": chip.spec["target"], "match": chip.spec["match"],
        "architecture": {"file": str(chip.src), "used": "the same file with only the tiles used "
                         "(mesh size kept) and log_energy: true on the cores"},
        "samples": samples, "timesteps": T, "steps_per_inference": steps,
        "input": "spike trains on input neurons" if binary else
                 "graded: the first layer's bias current per step",
        "joules_per_inference": e["total"],
        "by_unit": {k: v for k, v in e.items() if k != "total"},
        "by_layer": {**by_layer, "noc_hops": hops if abs(hops) > 1e-9 * e["total"] else 0.0},
        "counts_per_inference": {
            "synaptic_events": c["spikes"], "messages": c["packets_sent"],
            "neurons_updated": c["neurons_updated"], "neurons_fired": c["neurons_fired"],
            "neuron_steps": steps * sum(g["size"] for g in groups.values()
                                        if g["kind"] != "input")},
        "latency_per_inference_s": tot["sim_time"], "latency_per_step_s": tot["sim_time"] / steps,
        "placement": {"neurons_per_core": chip.per_core, "synapses": chip.synapses,
                      "groups": {n: {"kind": g["kind"], "neurons": g["size"],
                                     "cores": [chip.core_names[c] for c in chip.placement[n]]}
                                 for n, g in groups.items()}},
        "agreement": {**agree, "exact": agree["spikes_mismatched"] == agree["extra_spikes"]
                      == agree["readout_mismatched"] == 0},
        "energies": {u: {k: v[0] for k, v in en.items()} for u, en in chip.energies.items()},
        "energy_lines": {f"{u}.{k}": v[1] for u, en in chip.energies.items()
                         for k, v in en.items()},
        "notes": chip.notes, "wall_seconds": time.perf_counter() - t0,
    }


def _agree(acc, chip, run, b, spikes, pots, T, off) -> None:
    """Count SANA-FE's spikes (per group frame) and readout values against the emulator's."""
    for name, g in chip.groups.items():
        first = g["depth"] + off - 1                       # 0-based trace index of step t=0
        if g["kind"] == "neuron":
            got = np.zeros((len(spikes), g["size"]), bool)
            for s, evs in enumerate(spikes):
                for ev in evs:
                    if ev.group_name == name:
                        got[s, ev.neuron_offset] = True
            want = np.asarray(run[name])[:, b].reshape(T, -1) != 0
            acc["spikes_compared"] += int(want.sum())
            acc["spikes_mismatched"] += int((got[first:first + T] != want).sum())
            acc["extra_spikes"] += int(got.sum() - got[first:first + T].sum())
        elif g["kind"] == "readout" and "output" in run and len(pots[0]) == g["size"]:
            bias = np.asarray(g["node"].params.get("bias_int", 0)).reshape(-1)
            want = np.asarray(run["output"])[:, b].reshape(T, -1) - bias
            got = np.rint(np.asarray(pots[first:first + T]) * LSB)
            acc["readout_values"] += want.size
            acc["readout_mismatched"] += int((got != want).sum())
