"""Energy per target from operation counts (DESIGN §6).

    e = energy(counts, load_target("loihi"))
    e["total_joules_per_inference"], e["by_kind"], e["by_layer"], e["assumptions"]

The per-operation energies are data: the ``[energy]`` table of the target
file, one ``[energy.<op>_pj]`` sub-table per constant with its ``value`` and
``source``; ``model`` names the formula below, ``measured = false`` marks a
target whose constants are not published for it (``loihi2``: the Loihi 1
figures as an upper bound) and ``assumption`` says what the formula assumes.
Formulas are found by name in `MODELS`: the generic convention here
(``cmos45``) and the chips' own, which their back ends declare
(``Backend.energy_models``; ``loihi`` is in `cf2neuro.backends.loihi2.energy`).

- ``cmos45``: SNN = synops·E_AC + MACs·E_MAC over all steps (pooling layers
  not priced); the same network as an ANN = dense MACs of its Linear/Conv
  layers for ONE forward pass (one step) · E_MAC, reported as
  ``ann_joules_per_inference`` and ``snn_vs_ann`` (SNN / ANN).
- ``loihi`` (the loihi2 back end): synops, neuron updates (active or
  inactive) and routed spikes with a sequential placement.

All energies are per inference (mean per sample), in joules.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import BadInputError
from ..targets import Target, load_target
from .counts import Counts

PJ = 1e-12


def const(target: Target, key: str) -> float:
    raw = target.energy.get(key)
    if not isinstance(raw, dict) or "value" not in raw:
        raise BadInputError(f"target {target.name!r} ({target.path}): the energy model "
                            f"{target.energy.get('model')!r} needs [energy.{key}] with a value "
                            f"and a source")
    return float(raw["value"])


def summed(rec: dict, key: str) -> float:
    return float(np.sum(rec.get(key, 0.0)))


def _cmos45(counts: Counts, target: Target) -> dict:
    e_mac, e_ac = const(target, "mac_pj") * PJ, const(target, "ac_pj") * PJ
    by_layer, kinds = {}, {"synops": 0.0, "macs": 0.0}
    ann = 0.0
    for name, rec in counts.layers.items():
        if rec["kind"] == "neuron" or rec.get("pooling"):
            continue
        syn, mac = summed(rec, "synops") * e_ac, summed(rec, "macs") * e_mac
        by_layer[name] = {"synops": syn, "macs": mac, "total": syn + mac}
        kinds["synops"] += syn
        kinds["macs"] += mac
        dense = rec["dense_macs"]
        ann += float(dense[0] if len(dense) else 0.0) * e_mac   # one forward pass
    total = sum(kinds.values())
    return {"total_joules_per_inference": total, "by_kind": kinds, "by_layer": by_layer,
            "ann_joules_per_inference": ann,
            "snn_vs_ann": total / ann if ann else None}


class _Models(Mapping):
    """Model name -> formula: the generic ones here, then every back end's `energy_models`.

    A back end's formula is imported on first use (`cf2neuro.backends`).
    """

    GENERIC = {"cmos45": _cmos45}

    def _refs(self) -> dict:
        from ..backends import all_backends

        refs: dict = dict(self.GENERIC)
        for b in all_backends():
            refs.update({k: v for k, v in b.energy_models.items() if k not in refs})
        return refs

    def __getitem__(self, name):
        ref = self._refs()[name]
        if isinstance(ref, str):
            from ..backends import load_ref

            return load_ref(ref)
        return ref

    def __iter__(self):
        return iter(self._refs())

    def __len__(self):
        return len(self._refs())


MODELS = _Models()


def energy(counts: Counts, target) -> dict:
    """Price `counts` with `target`'s energy model (a name, path or `Target`)."""
    target = load_target(target)
    model = target.energy.get("model")
    if model not in MODELS:
        raise BadInputError(f"target {target.name!r} ({target.path}) has no known energy model "
                            f"([energy] model = {model!r}); known: {sorted(MODELS)}")
    res = MODELS[model](counts, target)
    measured = bool(target.energy.get("measured", True))
    attention = [n for n, rec in counts.layers.items() if rec["kind"] == "attention"]
    if attention:
        res.setdefault("notes", []).append(
            f"attention products ({', '.join(attention)}) are priced as synaptic operations, "
            f"one per spike-triggered accumulate: an assumption, no chip has an attention "
            f"circuit")
    res.update({
        "target": target.name, "model": model, "measured": measured,
        "assumptions": res.pop("notes", []) + [a for a in [target.energy.get("assumption"),
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
