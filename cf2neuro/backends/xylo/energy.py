"""Xylo's energy model: the published dynamic inference power times the inference's duration.

SynSense publishes no per-operation energies for Xylo; it publishes measured
power of deployed applications. So a network's energy per inference here is
``P_dynamic · T · dt``: the dynamic inference power measured on Xylo Audio 2
(the Aloha keyword-spotting network, Bos & Muir 2024) over the T steps of one
inference at the step ``dt`` the target file states (Rockpool's XyloSim
default, 1 ms). It does not scale with this network's activity or size, and
the idle power (static, whatever the network) is reported apart; both are
said in the assumptions. Declared as energy model ``xylo`` by this back end.
"""

from __future__ import annotations

from ...energy.counts import Counts
from ...energy.models import const
from ...targets import Target

UW = 1e-6


def price(counts: Counts, target: Target) -> dict:
    power = const(target, "dynamic_power_uw") * UW
    idle = const(target, "idle_power_uw") * UW
    step = const(target, "step_ms") * 1e-3
    seconds = counts.timesteps * step
    dynamic = power * seconds
    return {"total_joules_per_inference": dynamic, "by_kind": {"dynamic_power": dynamic},
            "by_layer": {}, "inference_seconds": seconds,
            "idle_joules_per_inference": idle * seconds,
            "notes": [f"{counts.timesteps} steps x {step * 1e3:g} ms at "
                      f"{power / UW:g} uW dynamic power; idle power {idle / UW:g} uW adds "
                      f"{idle * seconds:.3g} J whatever the network"]}
