"""Energy per target (DESIGN §6): operation counts from a real run, priced per target.

    rep = energy_report("runs/digits", targets="all", limit=200)
    rep["targets"]["loihi"]["total_joules_per_inference"]
    write_energy_report(rep, "report/")        # energy.json, .md, .html, energy.png

    counts = count_operations(graph, run_result)   # cf2neuro.energy.counts
    energy(counts, "cmos45")                       # cf2neuro.energy.models

Float targets (no ``[numeric]``: cmos45) are counted on the float reference
engine's run; fixed-point targets on the emulator's run of the graph
quantized for that target (``runner="emulator"``, bit-exact with Lava),
calibrated on a slice of the training split as `verify` calibrates. A
target that refuses the model (``loihi``: signed or graded spikes) is
counted on the quantization its file names (``[energy]
fallback_quantization``, ``loihi2`` for loihi) and says so in its
``assumptions`` (``deployable: false``); without one, the refusal stands.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..backends import all_backends, get_backend, load_ref
from ..errors import BadInputError, UnsupportedError
from ..targets import known_targets, load_target
from .counts import Counts, count_operations, needed_probes
from .models import MODELS, energy

log = logging.getLogger(__name__)
DEFAULT_TARGETS = "all"  # every target with an energy model


def energy_targets() -> list[str]:
    """Known targets that have an energy model."""
    out = []
    for name in known_targets():
        try:
            if load_target(name).energy.get("model") in MODELS:
                out.append(name)
        except BadInputError:
            continue
    return out


def _counts_for(tgt, graph, x, calibration, runner: str, cache: dict):
    from ..ir.engine import Engine
    from ..quant import quantize

    notes, deployable = [], True
    if tgt.numeric is None:
        if "reference" not in cache:
            res = Engine(graph).run(x, probes=needed_probes(graph))
            cache["reference"] = count_operations(graph, res, inputs=x, source="reference")
        return cache["reference"], notes, deployable
    qname = tgt.name
    try:
        qgraph = quantize(graph, tgt, calibration=calibration)
    except UnsupportedError as e:
        qname = tgt.energy.get("fallback_quantization")
        if not isinstance(qname, str):  # the target file says how to price what it refuses
            raise
        deployable = False
        notes.append(f"{tgt.name} refuses this model ({e}); counted on the {qname} "
                     f"quantization of the same network and priced with {tgt.name}'s energies")
        qgraph = None
    key = (qname, runner)
    if key not in cache:
        if qgraph is None:
            qgraph = quantize(graph, qname, calibration=calibration)
        probes = needed_probes(qgraph)
        if runner == "emulator":
            from ..runners.emulator import emulate
            res = emulate(qgraph, x, probes=probes)
        else:
            from ..runners import RunRequest, get_runner
            probes = [p for p in probes if qgraph[p].op != "Input"]
            res = get_runner(runner).run(RunRequest(qgraph, x.numpy(), tuple(probes))).arrays()
        cache[key] = count_operations(qgraph, res, inputs=x, source=f"{runner} ({qname})")
    return cache[key], notes, deployable


def _simulate(simulator: str, tgt, graph, x, calibration) -> dict:
    """The target back end's `simulator` on the same run, or {"refused": why}."""
    ref = get_backend(tgt.backend).simulators.get(simulator) if tgt.backend else None
    if ref is None:
        return {"refused": f"target {tgt.name} has no {simulator} model (its back end "
                           f"{tgt.backend or '(float target)'} declares none)"}
    try:
        return load_ref(ref)(graph, x, calibration, tgt)
    except UnsupportedError as err:
        return {"refused": str(err)}


def energy_report(ckpt_dir, targets=DEFAULT_TARGETS, data: str | None = None,
                  limit: int | None = None, runner: str = "emulator",
                  progress: bool = True, data_overrides: dict | None = None,
                  peer: str | None = None, dt: float | None = None,
                  simulator: str | None = None) -> dict:
    """Count and price a checkpoint on its test set for each target; a JSON-able dict.

    {"checkpoint", "samples", "timesteps", "runner", "targets": {name: {
    "total_joules_per_inference", "by_kind", "by_layer", "assumptions",
    "sources", "measured", "deployable", "counts_per_inference", ...}},
    "counts": {source: per-layer counts}, "refused": {name: reason}}.
    A target that cannot hold the network (and names no fallback quantization)
    is listed in "refused" with its reason; the others are still priced.
    `ckpt_dir` may be a NIR file (read as framework `peer` ran it, with `dt`).
    `simulator="sanafe"` also simulates the same samples on each target's SANA-FE
    architecture (the back end's ``simulators``; loihi2's is
    `cf2neuro.backends.loihi2.sanafe_compare.sanafe_report`): the target's
    "sanafe" entry, or {"refused": why} where SANA-FE has no chip for it or cannot
    run the network.
    """
    from ..checkpoint import source_graph
    from ..verify import calibration_inputs, fit_inputs, test_inputs

    if targets == "all" or targets == ["all"] or targets == ("all",):
        names = energy_targets()
    else:
        names = [targets] if isinstance(targets, str) else list(targets)
    if not names:
        raise BadInputError("no targets with an energy model given")
    simulators = {k for b in all_backends() for k in b.simulators}
    if simulator is not None and simulator not in simulators:
        raise BadInputError(f"unknown simulator {simulator!r}; known: "
                            f"{', '.join(sorted(simulators)) or 'none'}")
    tgts = [load_target(n) for n in names]  # fail early on unknown names
    for t in tgts:
        if t.energy.get("model") not in MODELS:
            raise BadInputError(f"target {t.name!r} has no energy model ([energy] model); "
                                f"targets with one: {', '.join(energy_targets())}")
    x, labels = test_inputs(ckpt_dir, data, limit, data_overrides)
    graph = source_graph(ckpt_dir, dt=dt, peer=peer)
    x = fit_inputs(graph, x)
    calibration = fit_inputs(graph, calibration_inputs(ckpt_dir, data,
                                                       overrides=data_overrides))
    from tqdm.auto import tqdm

    cache: dict = {}
    out, refused = {}, {}
    for tgt in tqdm(tgts, desc="energy", unit="target", disable=not progress):
        try:
            counts, notes, deployable = _counts_for(tgt, graph, x, calibration, runner, cache)
        except UnsupportedError as e:
            refused[tgt.name] = str(e)
            continue
        e = energy(counts, tgt)
        e["assumptions"] = notes + e["assumptions"]
        e["deployable"] = deployable
        if simulator is not None:
            e[simulator] = _simulate(simulator, tgt, graph, x, calibration)
        out[tgt.name] = e
    if not out:
        raise UnsupportedError("no target can hold this network: " + "; ".join(
            f"{n}: {why}" for n, why in refused.items()))
    return {"checkpoint": str(ckpt_dir), "samples": int(x.shape[1]),
            "timesteps": int(x.shape[0]), "runner": runner, "targets": out,
            "counts": {c.source: c.to_dict() for c in cache.values()}, "refused": refused}


def write_energy_report(report: dict, directory) -> Path:
    """energy.json (the dict as is), energy.md, energy.html and energy.png into `directory`;
    cf2neuro.report renders them (each file written atomically)."""
    from ..report import EnergyRecord, write_report

    write_report(EnergyRecord.from_json(report), directory)
    return Path(directory)


__all__ = ["Counts", "count_operations", "needed_probes", "energy", "energy_report",
           "energy_targets", "write_energy_report", "MODELS"]
