"""SANA-FE next to cf2neuro's analytic estimate: one run, both prices, and why they differ.

    rep = sanafe_report(graph, x, calibration, "loihi", samples=50)
    print(format_comparison(rep))
    rep["comparison"]["ratio"]          # SANA-FE / analytic, joules per inference

The analytic side is `cf2neuro.energy.energy` on the counts of the same run
(same samples) that `cf2neuro.energy.sanafe.simulate` drives SANA-FE with.
"""

from __future__ import annotations

from ...errors import UnsupportedError
from ...targets import load_target
from .sanafe import arch_for, simulate

PJ = 1e-12
# SANA-FE unit(s) -> the analytic kind they price (loihi model: cf2neuro.backends.loihi2.energy)
COMPONENTS = {"synapse": (("synapse", "dendrite"), "synops"),
              "neuron": (("soma",), "neuron_updates"),
              "routing": (("network",), "spike_routing")}


def _ratio(a: float, b: float):
    return a / b if b else None


def compare(sim: dict, analytic: dict, counts) -> dict:
    """Ratios SANA-FE / analytic (total, per component, per event class) and the reasons."""
    c, tot = sim["counts_per_inference"], counts.totals()
    layers = counts.layers
    graded_in = not sim["input"].startswith("spike")
    in_layers = [n for n, r in layers.items() if r["kind"] == "input"]
    in_ops = sum(sum(layers[n]["synops"]) + sum(layers[n]["macs"]) for n in in_layers)
    in_events = sum(sum(layers[n]["events"]) for n in in_layers)
    syn_counted = tot["synops"] + tot["macs"] - (in_ops if graded_in else 0.0)
    hidden_spikes = tot["spikes"]
    comps = {}
    for name, (units, kind) in COMPONENTS.items():
        s = sum(sim["by_unit"][u] for u in units)
        a = float(analytic["by_kind"].get(kind, 0.0))
        comps[name] = {"sanafe_j": s, "analytic_j": a, "ratio": _ratio(s, a)}
    events = {
        "synaptic events": {"sanafe": c["synaptic_events"], "cf2neuro": syn_counted},
        "neuron-steps": {"sanafe": c["neuron_steps"], "cf2neuro": tot["neuron_updates"]},
        "spike messages": {"sanafe": c["messages"],
                           "cf2neuro": hidden_spikes + (0.0 if graded_in else in_events)},
    }
    for v in events.values():
        v["ratio"] = _ratio(v["sanafe"], v["cf2neuro"])
    out = {"ratio": _ratio(sim["joules_per_inference"], analytic["total_joules_per_inference"])}
    if graded_in:   # what both price: without the input layer SANA-FE feeds as a bias
        skip = sum(analytic["by_layer"].get(n, {}).get("total", 0.0) for n in in_layers)
        out["ratio_without_input_layer"] = _ratio(
            sim["joules_per_inference"], analytic["total_joules_per_inference"] - skip)
        comps["synapse"]["ratio_without_input_layer"] = _ratio(
            comps["synapse"]["sanafe_j"], comps["synapse"]["analytic_j"] - skip)
    return {**out, "components": comps, "events": events,
            "reasons": _reasons(sim, analytic, events, in_ops if graded_in else 0.0)}


def _reasons(sim, analytic, events, unsimulated_ops) -> list[str]:
    e, src = sim["energies"], analytic["sources"]
    pj = {k: v["value_pj"] for k, v in src.items() if "value_pj" in v}
    f = sim["architecture"]["file"].rsplit("/", 1)[-1]

    def at(unit, key):   # "35.5 pJ (loihi.yaml:73)": a SANA-FE energy and where it is
        return f"{e[unit][key] / PJ:g} pJ ({f}:{sim['energy_lines'][f'{unit}.{key}']})"

    msg = at("loihi_out", "energy_message_out")
    syn, steps = events["synaptic events"], events["neuron-steps"]
    out = [
        f"per synaptic event: SANA-FE {at('loihi_dense_synapse', 'energy_process_spike')} "
        f"for Linear, {at('loihi_conv_synapse', 'energy_process_spike')} for Conv2d; cf2neuro "
        f"{pj.get('synop_pj')} pJ (Davies et al. 2018, Table 2 minimum). The events agree when "
        f"the spikes do: {syn['sanafe']:.0f} vs {syn['cf2neuro']:.0f} per inference",
        f"neurons: SANA-FE charges every mapped LIF neuron "
        f"{at('loihi_lif', 'energy_access_neuron')} each step, "
        f"+{at('loihi_lif', 'energy_update_neuron')} when its potential is nonzero or it gets "
        f"input, +{at('loihi_lif', 'energy_spike_out')} per spike, over all "
        f"{sim['steps_per_inference']} steps (T + pipeline latency) and the readout "
        f"compartments: {steps['sanafe']:.0f} neuron-steps; cf2neuro prices "
        f"{steps['cf2neuro']:.0f} (hidden layers x T) at {pj.get('neuron_update_inactive_pj')} "
        f"pJ inactive / {pj.get('neuron_update_active_pj')} pJ active",
        f"routing: SANA-FE {msg} per spike message, one per spiking neuron per destination "
        f"core, input neurons included, + {at('loihi_tile', 'energy_east_hop')} E/W or "
        f"{at('loihi_tile', 'energy_north_hop')} N/S per hop (tile ids fill a mesh column "
        f"first); cf2neuro {pj.get('spike_within_tile_pj')} pJ per hidden-layer spike + "
        f"{pj.get('tile_hop_ew_pj')} pJ per E/W tile hop",
        f"latency: cf2neuro counts steps only; SANA-FE times each step from its per-event "
        f"latencies, its NoC model and the sync table ({f} latency_sync): "
        f"{sim['latency_per_step_s'] * 1e6:.2f} us a step on average",
    ]
    if unsimulated_ops:
        out.append(f"input: graded inputs (direct-current pixels) have no SANA-FE spike; they are "
                   f"the first layer's bias current, so cf2neuro's {unsimulated_ops:.0f} input "
                   f"ops per inference (priced as synops) have no SANA-FE counterpart")
    else:
        out.append(f"input: SANA-FE input neurons cost no soma energy but each input spike is a "
                   f"{msg} message; cf2neuro prices only the synops they trigger")
    if sim["target"] != "loihi":
        out.append(f"architecture: {sim['match']}")
    return out + list(sim.get("notes", []))


def _quantized(graph, tgt, calibration):
    from ...quant import quantize

    try:
        return quantize(graph, tgt, calibration=calibration), []
    except UnsupportedError as e:
        fb = tgt.energy.get("fallback_quantization")
        if not isinstance(fb, str):
            raise
        return quantize(graph, fb, calibration=calibration), [
            f"{tgt.name} refuses this model ({e}); run on its {fb} quantization"]


def sanafe_report(graph, x, calibration, target, samples: int | None = None,
                  **sim_options) -> dict:
    """Quantize for `target`, run the emulator, price the counts analytically and simulate
    the same samples in SANA-FE; {"target", "analytic", "sanafe", "comparison", "notes"}."""
    import numpy as np

    from ...runners.emulator import emulate
    from ...energy.counts import count_operations, needed_probes
    from ...energy.models import energy
    from .sanafe import probes

    tgt = load_target(target)
    arch_for(tgt)                            # a target SANA-FE has no chip for: say so first
    qg, notes = _quantized(graph, tgt, calibration)
    x = np.asarray(x)
    x = x[:, :samples] if samples else x
    run = emulate(qg, x, probes=list(dict.fromkeys(needed_probes(qg) + probes(qg))))
    counts = count_operations(qg, run, inputs=x, source="emulator")
    analytic = energy(counts, tgt)
    sim = simulate(qg, x, tgt, run=run, **sim_options)
    keep = ("total_joules_per_inference", "by_kind", "placement", "measured")
    rep = {"target": tgt.name, "samples": int(x.shape[1]), "notes": notes,
           "analytic": {k: analytic[k] for k in keep if k in analytic},
           "sanafe": {k: v for k, v in sim.items() if k != "architecture"} | {
               "architecture": {k: v for k, v in sim["architecture"].items() if k != "text"}},
           "comparison": compare(sim, analytic, counts)}
    rep["summary"] = format_comparison(rep)  # what `energy --simulator sanafe` prints
    return rep


def format_comparison(rep: dict) -> str:
    """A few lines: both totals, the ratio, per component, the agreement, the reasons."""
    s, a, c = rep["sanafe"], rep["analytic"], rep["comparison"]
    ag = s["agreement"]
    lines = [f"{rep['target']}: analytic {a['total_joules_per_inference']:.4g} J, SANA-FE "
             f"{s['joules_per_inference']:.4g} J per inference (ratio {c['ratio']:.3g}); "
             f"latency {s['latency_per_inference_s'] * 1e6:.1f} us ({s['steps_per_inference']} "
             f"steps); {rep['samples']} samples"
             + (f"; without the input layer (a bias in SANA-FE) ratio "
                f"{c['ratio_without_input_layer']:.3g}" if "ratio_without_input_layer" in c
                else ""),
             "  spikes " + ("equal to the emulator's" if ag["exact"] else
                            f"DIFFER: {ag['spikes_mismatched']} of {ag['spikes_compared']}, "
                            f"{ag['extra_spikes']} extra, {ag['readout_mismatched']} readout")]
    for k, v in c["components"].items():
        r = "-" if v["ratio"] is None else f"{v['ratio']:.3g}"
        lines.append(f"  {k:<8} analytic {v['analytic_j']:.4g} J  SANA-FE {v['sanafe_j']:.4g} J"
                     f"  ratio {r}")
    return "\n".join(lines + [f"  - {r}" for r in rep["notes"] + c["reasons"]])


__all__ = ["compare", "sanafe_report", "format_comparison"]
