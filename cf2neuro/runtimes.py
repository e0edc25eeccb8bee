"""What every isolated runtime's build shares (Lava, Xylo): a clean environment, one step.

A runtime is a virtual environment cf2neuro builds on first use in the user
cache, each step a subprocess whose output is shown with `progress` and whose
failure is a `RuntimeMissingError` that ends with the output's tail and what
to do (`hint`). The back ends keep what differs: which Python, which packages,
the check that the runtime imports.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from .errors import RuntimeMissingError

log = logging.getLogger(__name__)

SCRUB = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PIP_REQUIRE_VIRTUALENV")


def clean_env() -> dict[str, str]:
    """This process's environment without what would leak our Python into the runtime's."""
    return {k: v for k, v in os.environ.items() if k not in SCRUB}


def setup_step(cmd: list[str], what: str, progress: bool, env: dict | None, runtime: str,
               hint: str) -> None:
    """Run one build command of the `runtime` ("Lava", "Xylo"); failing: RuntimeMissingError."""
    log.info("%s: %s", what, " ".join(cmd))
    if progress:
        print(f"[cf2neuro runtime] {what} ...", file=sys.stderr, flush=True)
    lines: list[str] = []
    try:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, stdin=subprocess.DEVNULL) as proc:
            for line in proc.stdout:
                lines = (lines + [line.rstrip()])[-40:]
                if progress:
                    print(f"    {line.rstrip()}", file=sys.stderr, flush=True)
            code = proc.wait()
    except OSError as e:
        raise RuntimeMissingError(f"setting up the {runtime} runtime: {what} failed to start "
                                  f"({e}). {hint}") from None
    if code != 0:
        tail = "\n".join(lines[-25:])
        raise RuntimeMissingError(f"setting up the {runtime} runtime: {what} failed (exit "
                                  f"status {code}). Command: {' '.join(cmd)}. Its output "
                                  f"ends:\n{tail}\n{hint}")
