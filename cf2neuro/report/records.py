"""Typed records of the verify and energy reports; `to_json()` is the file's dict, key for key.

    rec = VerifyRecord.from_json(verify(...))      # what cf2neuro.verify computed
    rec.to_json() == that dict                      # verify.json, unchanged for its readers

The stages keep returning plain dicts (the CLI, scripts and tests index them);
a record is how the report module reads one. Keys a record has no field for
ride along in `extra`, so a stage that adds a key never loses it on the way
to the file. Fields marked optional are keys only one shape of report has
(a fixed-point vs a float target): None there means "absent", not null.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


def optional(default=None):
    """A key that only some reports have: omitted from the JSON while None."""
    return field(default=default, metadata={"optional": True})


class Record:
    """from_json(dict) -> record -> to_json() gives the same dict back."""

    # fields holding records: {"flips": ("list", Flip)}, {"targets": ("dict", TargetEnergy)}
    _NESTED: ClassVar[dict] = {}

    @classmethod
    def from_json(cls, d: dict):
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        for key, (container, sub) in cls._NESTED.items():
            value = known.get(key)
            if value is None:
                continue
            if container == "list":
                known[key] = [sub.from_json(x) for x in value]
            elif container == "dict":
                known[key] = {k: sub.from_json(x) for k, x in value.items()}
            else:
                known[key] = sub.from_json(value)
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or f.metadata.get("json") is False:
                continue
            if value is None and f.metadata.get("optional"):
                continue
            out[f.name] = _plain(value)
        return {**out, **self.extra}


def _plain(v):
    if isinstance(v, Record):
        return v.to_json()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ---- verify -----------------------------------------------------------------------------

@dataclass
class Flip(Record):
    """An output spike a float runner emitted differently from the float reference."""

    probe: str
    step: int
    sample: int
    index: list
    reference: float
    runner: float
    margin: float  # |pre-fire potential - threshold level| in units of θ: ~1e-7 is rounding
    extra: dict = field(default_factory=dict)


@dataclass
class VerifyRecord(Record):
    """`cf2neuro.verify.verify`'s result: float vs (quantized emulator vs) the target's runner.

    Fixed-point targets (quantized=True) carry calibration, quantization and
    per-layer emulator rates; float targets (quantized=False) carry
    spike_agreement, spike_agreement_min and flips instead.
    """

    STEM: ClassVar[str] = "verify"
    _NESTED: ClassVar[dict] = {"flips": ("list", Flip)}

    target: str
    runner: str
    samples: int
    float_accuracy: float
    quantized_accuracy: float
    runner_accuracy: float
    accuracy_drop_pp: float
    argmax_agreement: float
    exact_match: dict[str, float]
    passed: bool
    timesteps: int | None = optional()
    quantized: bool = True
    max_drop_pp: float | None = None
    runner_argmax_agreement: float | None = None
    spike_rates: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_steps: int = 0
    quantization: list[dict] = field(default_factory=list)
    calibration: dict | None = optional()          # fixed point: {split, samples}
    spike_agreement: dict[str, float] | None = optional()   # float targets from here on
    spike_agreement_min: float | None = optional()
    flips: list[Flip] | None = optional()
    lava_missing: str | None = optional()          # the demo fell back to the emulator
    seconds: float | None = optional()
    warnings: list[str] | None = optional()        # silent layers, saturated formats
    extra: dict = field(default_factory=dict)

    @property
    def min_exact_match(self) -> float | None:
        return min(self.exact_match.values()) if self.exact_match else None

    @property
    def calibration_samples(self) -> int | None:
        return (self.calibration or {}).get("samples")


# ---- energy -----------------------------------------------------------------------------

@dataclass
class TargetEnergy(Record):
    """One target's estimate (`cf2neuro.energy.energy`'s dict), joules per inference."""

    total_joules_per_inference: float
    by_kind: dict[str, float]
    by_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)
    measured: bool = True          # False: the per-op constants are an assumption
    deployable: bool = True        # False: counted on another target's quantization
    counts_per_inference: dict[str, float] = field(default_factory=dict)
    counts_source: str | None = optional()
    ann_joules_per_inference: float | None = optional()  # the same network as an ANN
    snn_vs_ann: float | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = super().to_json()
        if self.ann_joules_per_inference is None:  # the pair exists only where an ANN is priced
            out.pop("snn_vs_ann", None)
        return out


@dataclass
class EnergyRecord(Record):
    """`cf2neuro.energy.energy_report`'s result: per target, counted on one run, priced."""

    STEM: ClassVar[str] = "energy"
    _NESTED: ClassVar[dict] = {"targets": ("dict", TargetEnergy)}

    checkpoint: str
    samples: int
    timesteps: int
    runner: str
    targets: dict[str, TargetEnergy]
    counts: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, str] = optional()   # target -> why it cannot hold the network
    extra: dict = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return sorted({k for t in self.targets.values() for k in t.by_kind})


@dataclass
class CompareRecord(Record):
    """`cf2neuro.compare.compare`'s result: one row per target (a plain dict each)."""

    STEM: ClassVar[str] = "compare"

    checkpoint: str
    data: str | None
    samples: int | None
    targets: dict[str, dict]
    seconds: float | None = optional()
    extra: dict = field(default_factory=dict)


__all__ = ["Record", "Flip", "VerifyRecord", "TargetEnergy", "EnergyRecord", "CompareRecord",
           "optional"]
