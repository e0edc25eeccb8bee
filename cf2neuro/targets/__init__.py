"""Targets: hardware descriptions as data (DESIGN §4), ``cf2neuro/targets/<name>.toml``.

    target = load_target("loihi2")          # or a path to a .toml file
    target.numeric.weight_bits, target.resources["fan_in"].value, target.runner

A target file holds:

- ``name``, ``description``;
- ``backend``: the back-end package (`cf2neuro.backends`) whose numerics,
  quantizer and runners implement it (fixed-point targets need one; a float
  target has none: the float reference computes it);
- ``runner`` (the default runner) and ``runners`` (every runner that can
  simulate it, the default included);
- ``[numeric]`` (absent for float targets): the fixed-point format, see
  `NumericFormat` (weight bits and exponent range, state bits, threshold and
  decay encoding, bias mantissa/exponent, spike payload bits, whether spikes
  may be signed or graded, input payload bits);
- ``[resources.<limit>]`` with ``value`` (int, or absent when unknown) and
  ``source`` (where the number is published, or that it is not):
  ``cores``, ``neurons_per_core``, ``fan_in``;
- ``[energy.<op>]`` (optional, read by the energy report): ``value`` and
  ``source`` per operation, units in the key name.

Targets are looked up in ``$CF2NEURO_TARGETS`` (a directory), then this
package's own files (package data, so an installed wheel has them). A name that is not there is a `BadInputError`
that lists the known ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import BadInputError, RuntimeMissingError

TARGETS_ENV = "CF2NEURO_TARGETS"
TARGETS_DIR = Path(__file__).resolve().parent
RESOURCE_LIMITS = ("cores", "neurons_per_core", "fan_in")
DEFAULT_TARGET = "loihi2"  # the fixed-point target meant when none is named


class TargetError(BadInputError):
    """A target name is unknown or its file is malformed."""


@dataclass(frozen=True)
class NumericFormat:
    """A target's fixed-point number format (see docs/fixed_point.md)."""

    weight_bits: int               # weight mantissa bits (8: Lava Dense clips to 8 bits)
    weight_exp_min: int            # shared per-layer weight exponent range
    weight_exp_max: int
    state_bits: int                # neuron state (u, v) bits, saturating
    threshold_bits: int            # largest vth is 2^threshold_bits - 1
    threshold_encoding: str
    decay_bits: int                # du, dv: d/2^decay_bits per step
    decay_encoding: str
    bias_mant_bits: int            # signed bias mantissa bits
    bias_exp_min: int
    bias_exp_max: int
    spike_payload_bits: int        # graded spike payload bits (0: binary spikes only)
    signed_spikes: bool
    graded_spikes: bool
    input_bits: int                # payload bits of analog inputs (0: binary input spikes)

    @property
    def weight_mant_max(self) -> int:
        return (1 << self.weight_bits) - 1

    @property
    def bias_mant_range(self) -> tuple[int, int]:
        half = 1 << (self.bias_mant_bits - 1)
        return -half, half - 1

    @property
    def vth_max(self) -> int:
        return (1 << self.threshold_bits) - 1


@dataclass(frozen=True)
class Limit:
    """A resource limit and where it is published (value None: not known)."""

    value: int | None
    source: str


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    runner: str
    numeric: NumericFormat | None
    backend: str | None = None
    runners: tuple[str, ...] = ()
    resources: dict[str, Limit] = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)   # [training]: what train --target sets
    path: str = ""

    def limit(self, name: str) -> int | None:
        lim = self.resources.get(name)
        return None if lim is None else lim.value

    def require_numeric(self) -> NumericFormat:
        if self.numeric is None:
            raise TargetError(f"target {self.name!r} (runner {self.runner}) has no fixed-point "
                              f"format to quantize for; pick a neuromorphic target such as "
                              f"{', '.join(t for t in known_targets() if load_target(t).numeric)}")
        return self.numeric


def _search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get(TARGETS_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(TARGETS_DIR)
    return dirs


def known_targets() -> list[str]:
    """Names of the target files found (sorted, first directory wins)."""
    names = set()
    for d in _search_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def _toml():
    try:
        import tomllib
        return tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli
            return tomli
        except ModuleNotFoundError:
            raise RuntimeMissingError("reading target files on Python 3.10 needs the 'tomli' "
                                      "package: pip install tomli") from None


def load_target(name: str | os.PathLike | Target) -> Target:
    """A target by name (``targets/<name>.toml``) or by path to a .toml file."""
    if isinstance(name, Target):
        return name
    text = str(name)
    path = Path(text)
    if not (text.endswith(".toml") and path.is_file()):
        path = next((d / f"{text}.toml" for d in _search_dirs()
                     if (d / f"{text}.toml").is_file()), None)
        if path is None:
            known = known_targets()
            raise TargetError(f"unknown target {text!r}; known targets: "
                              f"{', '.join(known) if known else '(none found)'} "
                              f"(files in {', '.join(str(d) for d in _search_dirs())})")
    toml = _toml()
    try:
        with open(path, "rb") as f:
            data = toml.load(f)
    except (OSError, UnicodeDecodeError, toml.TOMLDecodeError) as e:
        raise TargetError(f"target file {path} cannot be read: {e}; fix or replace it "
                          f"(the shipped ones are in {TARGETS_DIR})") from None
    return _parse(data, path)


# Bit widths the integer arithmetic (int64 in the emulator) can hold: (least, most).
BIT_RANGES = {"weight_bits": (1, 31), "state_bits": (2, 62), "threshold_bits": (1, 62),
              "decay_bits": (1, 31), "bias_mant_bits": (1, 31), "spike_payload_bits": (0, 62),
              "input_bits": (0, 31)}


def _check_bits(numeric: NumericFormat, where: str) -> None:
    for key, (lo, hi) in BIT_RANGES.items():
        v = getattr(numeric, key)
        if not lo <= v <= hi:
            raise TargetError(f"{where}: [numeric] {key} = {v} is outside {lo}..{hi} bits; "
                              f"fix the target file")
    for key in ("weight_exp_min", "weight_exp_max", "bias_exp_min", "bias_exp_max"):
        if abs(getattr(numeric, key)) > 62:
            raise TargetError(f"{where}: [numeric] {key} = {getattr(numeric, key)} is "
                              f"outside -62..62; fix the target file")


def _parse(data: dict, path: Path) -> Target:
    where = f"target file {path}"
    for key in ("name", "runner"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise TargetError(f"{where}: needs a string {key!r}")
    numeric = None
    if "numeric" in data:
        raw = data["numeric"]
        if not isinstance(raw, dict):
            raise TargetError(f"{where}: [numeric] must be a table")
        kw = {}
        for f in fields(NumericFormat):
            if f.name not in raw:
                raise TargetError(f"{where}: [numeric] lacks {f.name!r}")
            v = raw[f.name]
            want = {"int": int, "bool": bool, "str": str}[f.type if isinstance(f.type, str)
                                                          else f.type.__name__]
            if type(v) is not want:  # bool is an int subclass: compare exactly
                raise TargetError(f"{where}: [numeric] {f.name} must be {want.__name__}, "
                                  f"got {v!r}")
            kw[f.name] = v
        unknown = sorted(set(raw) - set(kw))
        if unknown:
            raise TargetError(f"{where}: unknown [numeric] keys {unknown}; known: "
                              f"{[f.name for f in fields(NumericFormat)]}")
        numeric = NumericFormat(**kw)
        _check_bits(numeric, where)
        if numeric.graded_spikes != (numeric.spike_payload_bits > 0):
            raise TargetError(f"{where}: graded_spikes and spike_payload_bits > 0 must agree")
        if numeric.weight_exp_min > numeric.weight_exp_max or \
                numeric.bias_exp_min > numeric.bias_exp_max:
            raise TargetError(f"{where}: exponent ranges must have min <= max")
    resources = {}
    for key, raw in (data.get("resources") or {}).items():
        if not isinstance(raw, dict) or not isinstance(raw.get("source"), str) \
                or not raw["source"]:
            raise TargetError(f"{where}: [resources.{key}] needs a 'source' string (where "
                              f"the number is published, or 'not published ...')")
        value = raw.get("value")
        if value is not None and (type(value) is not int or value <= 0):
            raise TargetError(f"{where}: [resources.{key}] value must be a positive int")
        resources[key] = Limit(value, raw["source"])
    energy = data.get("energy") or {}
    if not isinstance(energy, dict):
        raise TargetError(f"{where}: [energy] must be a table")
    for key, raw in energy.items():
        if isinstance(raw, dict) and (
                not isinstance(raw.get("source"), str) or not raw["source"]
                or isinstance(raw.get("value"), bool)
                or not isinstance(raw.get("value"), (int, float)) or raw["value"] < 0):
            raise TargetError(f"{where}: [energy.{key}] needs a number 'value' >= 0 and a "
                              f"'source' string (where the constant is published, or that "
                              f"it is an assumption)")
    backend = data.get("backend")
    if backend is not None and (not isinstance(backend, str) or not backend.isidentifier()):
        raise TargetError(f"{where}: backend must name a package of cf2neuro.backends, "
                          f"got {backend!r}")
    if numeric is not None and backend is None:
        raise TargetError(f"{where}: a fixed-point target ([numeric]) needs a 'backend' that "
                          f"implements its arithmetic")
    training = data.get("training") or {}
    if not isinstance(training, dict) or not all(
            isinstance(training.get(k, {}), dict) for k in ("neuron", "neuron_max")) or \
            not isinstance(training.get("reason", ""), str):
        raise TargetError(f"{where}: [training] takes tables 'neuron' (values train --target "
                          f"sets) and 'neuron_max' (upper bounds) and a 'reason' string")
    runners = data.get("runners", [data["runner"]])
    if not isinstance(runners, list) or not all(isinstance(r, str) and r for r in runners):
        raise TargetError(f"{where}: runners must be a list of runner names")
    if data["runner"] not in runners:
        runners = [data["runner"], *runners]
    return Target(name=data["name"], description=str(data.get("description", "")),
                  runner=data["runner"], numeric=numeric, backend=backend,
                  runners=tuple(runners), resources=resources, energy=energy,
                  training=training, path=str(path))
