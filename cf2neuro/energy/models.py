"""Energy per target from operation counts (DESIGN §6).

    e = energy(counts, load_target("loihi"))
    e["total_joules_per_inference"], e["by_kind"], e["by_layer"], e["assumptions"]

The per-operation energies are data: the ``[energy]`` table of the target
file, one ``[energy.<op>_pj]`` sub-table per constant with its ``value`` and
``source``; ``model`` names the formula below, ``measured = false`` marks a
target whose constants are not published for it (``loihi2``: the Loihi 1
figures as an upper bound) and ``assumption`` says what the formula assumes.
Formulas are registered by name in `MODELS`.

- ``cmos45``: SNN = synops·E_AC + MACs·E_MAC over all steps (pooling layers
  not priced); the same network as an ANN = dense MACs of its Linear/Conv
  layers for ONE forward pass (one step) · E_MAC, reported as
  ``ann_joules_per_inference`` and ``snn_vs_ann`` (SNN / ANN).
- ``loihi``: synops (and the input layer's ops, injected as graded spikes)
  · E_synop; neuron updates · E_active (fired that step) or E_inactive;
  routed spikes · (E_within_tile + hops · E_hop_EW) with a sequential
  placement (see the target's ``assumption``).

All energies are per inference (mean per sample), in joules.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import BadInputError
from ..targets import Target, load_target
from .counts import Counts

PJ = 1e-12


def _const(target: Target, key: str) -> float:
    raw = target.energy.get(key)
    if not isinstance(raw, dict) or "value" not in raw:
        raise BadInputError(f"target {target.name!r} ({target.path}): the energy model "
                            f"{target.energy.get('model')!r} needs [energy.{key}] with a value "
                            f"and a source")
    return float(raw["value"])


def _sum(rec: dict, key: str) -> float:
    return float(np.sum(rec.get(key, 0.0)))


def _cmos45(counts: Counts, target: Target) -> dict:
    e_mac, e_ac = _const(target, "mac_pj") * PJ, _const(target, "ac_pj") * PJ
    by_layer, kinds = {}, {"synops": 0.0, "macs": 0.0}
    ann = 0.0
    for name, rec in counts.layers.items():
        if rec["kind"] == "neuron" or rec.get("pooling"):
            continue
        syn, mac = _sum(rec, "synops") * e_ac, _sum(rec, "macs") * e_mac
        by_layer[name] = {"synops": syn, "macs": mac, "total": syn + mac}
        kinds["synops"] += syn
        kinds["macs"] += mac
        dense = rec["dense_macs"]
        ann += float(dense[0] if len(dense) else 0.0) * e_mac   # one forward pass
    total = sum(kinds.values())
    return {"total_joules_per_inference": total, "by_kind": kinds, "by_layer": by_layer,
            "ann_joules_per_inference": ann,
            "snn_vs_ann": total / ann if ann else None}


def _placement(counts: Counts, per_core: int, per_tile: int) -> dict[str, int]:
    """Tile of each neuron layer: layers get whole cores in order, `per_tile` cores a tile."""
    tiles, core = {}, 0
    for name, rec in counts.layers.items():
        if rec["kind"] != "neuron":
            continue
        tiles[name] = core // per_tile
        core += max(1, math.ceil(rec["neurons"] / per_core))
    return tiles


def _loihi(counts: Counts, target: Target) -> dict:
    e_syn = _const(target, "synop_pj") * PJ
    e_act = _const(target, "neuron_update_active_pj") * PJ
    e_inact = _const(target, "neuron_update_inactive_pj") * PJ
    e_tile = _const(target, "spike_within_tile_pj") * PJ
    e_hop = _const(target, "tile_hop_ew_pj") * PJ
    per_tile = int(_const(target, "cores_per_tile"))
    per_core = target.limit("neurons_per_core") or 1024
    tiles = _placement(counts, per_core, per_tile)
    kinds = {"synops": 0.0, "neuron_updates": 0.0, "spike_routing": 0.0}
    by_layer, hops_of = {}, {}
    for name, rec in counts.layers.items():
        if rec["kind"] == "neuron":
            upd, act = _sum(rec, "neuron_updates"), _sum(rec, "active_updates")
            e_n = act * e_act + (upd - act) * e_inact
            feeds = [f for f in rec.get("feeds", []) if f in tiles]
            hops = max((abs(tiles[f] - tiles[name]) for f in feeds), default=0)
            hops_of[name] = hops
            e_r = _sum(rec, "spikes") * (e_tile + hops * e_hop)
            by_layer[name] = {"neuron_updates": e_n, "spike_routing": e_r, "total": e_n + e_r}
            kinds["neuron_updates"] += e_n
            kinds["spike_routing"] += e_r
        else:
            e_s = (_sum(rec, "synops") + _sum(rec, "macs")) * e_syn
            by_layer[name] = {"synops": e_s, "total": e_s}
            kinds["synops"] += e_s
    return {"total_joules_per_inference": sum(kinds.values()), "by_kind": kinds,
            "by_layer": by_layer, "placement": {"tile": tiles, "hops": hops_of,
                                                "neurons_per_core": per_core,
                                                "cores_per_tile": per_tile}}


MODELS = {"cmos45": _cmos45, "loihi": _loihi}


def energy(counts: Counts, target) -> dict:
    """Price `counts` with `target`'s energy model (a name, path or `Target`)."""
    target = load_target(target)
    model = target.energy.get("model")
    if model not in MODELS:
        raise BadInputError(f"target {target.name!r} ({target.path}) has no known energy model "
                            f"([energy] model = {model!r}); known: {sorted(MODELS)}")
    res = MODELS[model](counts, target)
    measured = bool(target.energy.get("measured", True))
    res.update({
        "target": target.name, "model": model, "measured": measured,
        "assumptions": [a for a in [target.energy.get("assumption"),
                                    None if measured else
                                    f"{target.name}: per-operation energies are NOT published; "
                                    f"the numbers are an assumption, not a measurement"] if a],
        "sources": {k: {"value_pj" if k.endswith("_pj") else "value": v["value"],
                        "source": v["source"]}
                    for k, v in target.energy.items() if isinstance(v, dict)},
        "counts_per_inference": counts.totals(),
        "counts_source": counts.source,
        "samples": counts.samples, "timesteps": counts.timesteps,
    })
    return res


__all__ = ["energy", "MODELS"]
