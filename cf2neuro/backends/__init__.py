"""Back ends: one package per family of targets (DESIGN §4), found through this registry.

    backend = get_backend("loihi2")          # its spec; imports nothing heavy
    backend.load("numerics")                 # the class, imported on first use
    backend_names()                          # every back-end package here

A back end is a package ``cf2neuro/backends/<name>/`` whose ``__init__``
declares one `Backend` spec and nothing else (no imports of its own
modules, no registration as a side effect). Its parts are named as
"module:attribute" strings and imported only when used:

- ``numerics``: the target's integer semantics, an engine numerics class
  (`cf2neuro.ir.numerics` has the interface; the generic emulator runs it);
- ``checker``: ``fn(graph, target)``, raising UnsupportedError for what the
  target cannot run (the layer, the limit, the way out) before any work;
- ``quantizer``: ``fn(graph, target, options, input_format) -> graph``, the
  back end's part of `cf2neuro.quant.quantize`;
- ``runners``: runner name -> a `cf2neuro.runners.Runner` class;
- ``exporters``: file suffix -> ``fn(graph, path, **options) -> summary``;
- ``energy_models``: model name (a target file's ``[energy] model``) ->
  ``fn(counts, target) -> energies`` (`cf2neuro.energy.models`);
- ``simulators``: name (``energy --simulator``) -> ``fn(graph, x, calibration,
  target) -> report``, an architecture simulator that prices the same run.

A target file (``cf2neuro/targets/<name>.toml``) names its back end. Adding
a target family costs its package and a target file; no generic module
changes, because the registry lists the packages it finds here.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field

from ..errors import BadInputError


@dataclass(frozen=True)
class Backend:
    """What a back-end package provides, each part as a lazy "module:attribute" path."""

    name: str
    description: str
    numerics: str | None = None
    checker: str | None = None
    quantizer: str | None = None
    runners: dict[str, str] = field(default_factory=dict)
    exporters: dict[str, str] = field(default_factory=dict)
    energy_models: dict[str, str] = field(default_factory=dict)
    simulators: dict[str, str] = field(default_factory=dict)

    def load(self, part: str, key: str | None = None):
        """Import and return a part ("numerics", "checker", "quantizer", a runner/exporter by key)."""
        ref = getattr(self, part) if key is None else getattr(self, part)[key]
        if ref is None:
            raise BadInputError(f"back end {self.name!r} has no {part}")
        return load_ref(ref)


def load_ref(ref: str):
    """The object a "package.module:attribute" string names."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def backend_names() -> list[str]:
    """The back-end packages under cf2neuro/backends (found, not imported)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg)


def get_backend(name: str) -> Backend:
    """The spec a back-end package declares; BadInputError for an unknown name."""
    if name not in backend_names():
        raise BadInputError(f"unknown back end {name!r}; known: {', '.join(backend_names())}")
    spec = getattr(importlib.import_module(f"{__name__}.{name}"), "BACKEND", None)
    if not isinstance(spec, Backend):
        raise BadInputError(f"back-end package {name!r} declares no BACKEND = Backend(...)")
    return spec


def all_backends() -> list[Backend]:
    return [get_backend(n) for n in backend_names()]
