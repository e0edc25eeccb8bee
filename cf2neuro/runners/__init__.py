"""Runners (DESIGN §4): one typed contract, one explicit registry, loaded lazily.

    runner = get_runner("emulator")          # an instance; its module imported now
    result = runner.run(RunRequest(graph, x, probes=("fc1",), timeout=60))
    runner_names()                           # every runner: generic ones + back ends'

Generic runners live here: ``reference`` (the float IR engine) and
``emulator`` (the engine with the quantized graph's back-end numerics).
Back-end runners (``lava``, ``onnxruntime``, ...) are declared by their
back-end package's `Backend` spec (`cf2neuro.backends`). Nothing registers
itself on import; a name maps to a "module:Class" string until it is used.
"""

from __future__ import annotations

from ..backends import all_backends, load_ref
from ..errors import BadInputError
from .contract import Runner, RunRequest, RunResult, check_deadline

GENERIC = {
    "reference": "cf2neuro.runners.reference:ReferenceRunner",
    "emulator": "cf2neuro.runners.emulator:EmulatorRunner",
}


def runner_refs() -> dict[str, str]:
    """Runner name -> "module:Class", the generic runners first."""
    refs = dict(GENERIC)
    for b in all_backends():
        for name, ref in b.runners.items():
            if name in refs:
                raise BadInputError(f"runner {name!r} is declared twice (back end {b.name} "
                                    f"and {refs[name]})")
            refs[name] = ref
    return refs


def runner_names() -> list[str]:
    return list(runner_refs())


def get_runner(name: str) -> Runner:
    """A runner instance by name; BadInputError naming the known ones otherwise."""
    refs = runner_refs()
    if name not in refs:
        raise BadInputError(f"unknown runner {name!r}; known runners: {', '.join(refs)}")
    return load_ref(refs[name])()


__all__ = ["Runner", "RunRequest", "RunResult", "check_deadline", "get_runner", "runner_names",
           "runner_refs"]
