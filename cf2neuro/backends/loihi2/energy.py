"""Loihi's energy model (DESIGN §6): counts priced with Davies et al. 2018's per-op energies.

- synops (and the input layer's ops, injected as graded spikes) · E_synop;
- neuron updates · E_active (fired that step) or E_inactive;
- routed spikes · (E_within_tile + hops · E_hop_EW), with a sequential
  placement: layers take whole cores in order, ``cores_per_tile`` a tile
  (see the target's ``assumption``).

Declared as energy model ``loihi`` by this back end; target files name it.
"""

from __future__ import annotations

import math

from ...energy.counts import Counts
from ...energy.models import PJ, const, summed
from ...targets import Target


def _placement(counts: Counts, per_core: int, per_tile: int) -> dict[str, int]:
    """Tile of each neuron layer: layers get whole cores in order, `per_tile` cores a tile."""
    tiles, core = {}, 0
    for name, rec in counts.layers.items():
        if rec["kind"] != "neuron":
            continue
        tiles[name] = core // per_tile
        core += max(1, math.ceil(rec["neurons"] / per_core))
    return tiles


def price(counts: Counts, target: Target) -> dict:
    e_syn = const(target, "synop_pj") * PJ
    e_act = const(target, "neuron_update_active_pj") * PJ
    e_inact = const(target, "neuron_update_inactive_pj") * PJ
    e_tile = const(target, "spike_within_tile_pj") * PJ
    e_hop = const(target, "tile_hop_ew_pj") * PJ
    per_tile = int(const(target, "cores_per_tile"))
    per_core = target.limit("neurons_per_core") or 1024
    tiles = _placement(counts, per_core, per_tile)
    kinds = {"synops": 0.0, "neuron_updates": 0.0, "spike_routing": 0.0}
    by_layer, hops_of = {}, {}
    for name, rec in counts.layers.items():
        if rec["kind"] == "neuron":
            upd, act = summed(rec, "neuron_updates"), summed(rec, "active_updates")
            e_n = act * e_act + (upd - act) * e_inact
            feeds = [f for f in rec.get("feeds", []) if f in tiles]
            hops = max((abs(tiles[f] - tiles[name]) for f in feeds), default=0)
            hops_of[name] = hops
            e_r = summed(rec, "spikes") * (e_tile + hops * e_hop)
            by_layer[name] = {"neuron_updates": e_n, "spike_routing": e_r, "total": e_n + e_r}
            kinds["neuron_updates"] += e_n
            kinds["spike_routing"] += e_r
        else:
            e_s = (summed(rec, "synops") + summed(rec, "macs")) * e_syn
            by_layer[name] = {"synops": e_s, "total": e_s}
            kinds["synops"] += e_s
    return {"total_joules_per_inference": sum(kinds.values()), "by_kind": kinds,
            "by_layer": by_layer, "placement": {"tile": tiles, "hops": hops_of,
                                                "neurons_per_core": per_core,
                                                "cores_per_tile": per_tile}}
