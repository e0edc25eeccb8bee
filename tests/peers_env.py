"""The peers' venv (`make venv-peers`): Sinabs and Rockpool with nir 1.0.4, run in subprocesses.

`make test` builds it, so under CI (CI set) its absence is a failure; elsewhere
the tests that need it skip with the command that makes it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
DRIVERS = Path(__file__).resolve().parent / "peers"


def peers_python() -> Path:
    if not PEERS_PYTHON.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{PEERS_PYTHON} is missing: `make test` builds it (make venv-peers)")
        pytest.skip(f"{PEERS_PYTHON} is not here: run `make venv-peers`")
    return PEERS_PYTHON


def drive(driver: str, *args, venv: bool = True, timeout: float = 600) -> str:
    """Run tests/peers/`driver` with `args` in the peers' venv (or this python); its stdout."""
    python = str(peers_python()) if venv else sys.executable
    r = subprocess.run([python, str(DRIVERS / driver), *map(str, args)], capture_output=True,
                       text=True, timeout=timeout, cwd=REPO)
    assert r.returncode == 0, f"{driver} {' '.join(map(str, args))} failed:\n{r.stderr[-3000:]}"
    return r.stdout
