"""What `cf2neuro train --target NAME` changes so that the target can hold the network.

A target file's ``[training]`` table says what its neurons must be:
``neuron`` values the training sets (``signed = false`` where the chip has
no negative spikes, ``reset = "zero"`` where it resets to zero) and
``neuron_max`` upper bounds (``max_spikes = 31``: Xylo's hidden neurons emit
at most 31 spikes per step), with the ``reason``. `constrain` applies them
to a training config and lists every change, which training reports; what
stays out of reach (sizes, layer kinds) the target's checker still refuses
before the first step.
"""

from __future__ import annotations

import dataclasses

from ..nn.neuron import NeuronConfig
from . import load_target


def constrain(cfg, target) -> tuple[object, list[str]]:
    """`cfg` (a TrainConfig) with `target`'s [training] applied, and the changes made."""
    tgt = load_target(target)
    rules = tgt.training
    if not rules:
        return cfg, []
    given = dict(cfg.neuron)
    have = dataclasses.asdict(NeuronConfig.from_dict(given))  # the model's defaults filled in
    changes, neuron = [], dict(given)
    for key, value in (rules.get("neuron") or {}).items():
        if have.get(key) != value:
            changes.append(f"neuron {key}: {have.get(key)!r} -> {value!r}")
        neuron[key] = value
    for key, cap in (rules.get("neuron_max") or {}).items():
        if have.get(key) is not None and have[key] > cap:
            changes.append(f"neuron {key}: {have[key]!r} -> {cap!r} (at most)")
            neuron[key] = cap
    if changes and rules.get("reason"):
        changes.append(f"because {rules['reason']}")
    return dataclasses.replace(cfg, neuron=neuron), changes
