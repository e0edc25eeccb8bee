"""`cf2neuro compare`: the targets that can hold a network, side by side.

    report = compare(ckpt_dir, data="digits", targets="all")

Per target: deployable or the reason it is not (the target's own checker and
quantizer, `quant.deployable`); accuracy in float and on the target (its
numerics, on the emulator); whether the target's runner equals the emulator
(exact match over every probe, the worst one) or, on a float target, the
reference; the pipeline latency the runner removes; and energy per inference
from the target's energy model (with whether its constants are measured).
Each verify runs as `cf2neuro verify` does; a runner whose runtime is missing
here is replaced by the emulator, and the row says so.
"""

from __future__ import annotations

import logging
import time

from .checkpoint import checkpoint_graph
from .energy import energy_report, energy_targets
from .quant import deployable
from .runners import get_runner
from .targets import known_targets, load_target
from .verify import calibration_inputs, verify

log = logging.getLogger(__name__)


def compare(ckpt_dir, data: str | None = None, targets="all", limit: int | None = None,
            timeout: float | None = None, data_overrides: dict | None = None) -> dict:
    t0 = time.perf_counter()
    names = known_targets() if targets in ("all", ["all"], ("all",)) else (
        [targets] if isinstance(targets, str) else list(targets))
    tgts = [load_target(n) for n in names]  # unknown names fail before any work
    graph = checkpoint_graph(ckpt_dir)
    calibration = calibration_inputs(ckpt_dir, data, overrides=data_overrides)
    priced = [t.name for t in tgts if t.name in energy_targets()]
    energy = energy_report(ckpt_dir, targets=priced, data=data, limit=limit, progress=False,
                           data_overrides=data_overrides) if priced else {"targets": {}}
    rows = {}
    for tgt in tgts:
        why = deployable(graph, tgt, calibration)
        if why is not None:
            rows[tgt.name] = {"deployable": False, "reason": why}
            continue
        rows[tgt.name] = _row(ckpt_dir, tgt, data, limit, timeout, data_overrides,
                              energy["targets"].get(tgt.name))
    return {"checkpoint": str(ckpt_dir), "data": data, "samples": energy.get("samples"),
            "targets": rows, "seconds": round(time.perf_counter() - t0, 2)}


def _row(ckpt_dir, tgt, data, limit, timeout, overrides, priced) -> dict:
    runner, note = tgt.runner, None
    ok, why = get_runner(runner).available()
    if not ok:  # the comparison still has the target's numerics: the emulator runs them
        runner, note = ("emulator" if tgt.numeric is not None else "reference"), \
            f"runner {tgt.runner!r} is not available here ({why}); ran {runner!r} instead"
        log.warning("%s: %s", tgt.name, note)
    r = verify(ckpt_dir, target=tgt.name, data=data, runner=runner, limit=limit,
               timeout=timeout, data_overrides=overrides)
    fixed = r.get("quantized", True)
    exact = (r.get("exact_match") if fixed else r.get("spike_agreement")) or {}
    row = {"deployable": True, "runner": runner, "float_accuracy": r["float_accuracy"],
           "target_accuracy": r["quantized_accuracy"] if fixed else r["runner_accuracy"],
           "accuracy_drop_pp": r["accuracy_drop_pp"] if fixed else 0.0,
           "runner_equals": "emulator" if fixed else "reference",
           "exact_match": min(exact.values()) if exact else None,
           "latency_steps": int(r.get("latency_steps", 0)), "passed": bool(r["passed"])}
    if note:
        row["note"] = note
    if priced is not None:
        row["joules_per_inference"] = priced["total_joules_per_inference"]
        row["energy_measured"] = bool(priced.get("measured", True))
    return row
