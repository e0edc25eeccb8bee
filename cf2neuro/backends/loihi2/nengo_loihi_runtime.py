"""The isolated nengo-loihi runtime: Loihi 1's integer emulator in its own virtual environment.

nengo-loihi 1.1.0 (the last release) runs on nengo 3.2 and numpy < 2, while
cf2neuro runs on current numpy and torch; so, as for Lava (`runtime.py`),
cf2neuro makes a virtual environment of its own on first use and runs
`nengo_loihi_driver.py` in it as a script (nothing of cf2neuro is installed
there; the driver is read from this package, so editing it needs no rebuild).

    find_python() -> Path        a Python 3.10 or 3.11 that actually runs
    setup_nengo_loihi()          create (or reuse) the runtime; returns its python
    runtime_status()             (ok, note) without building anything

Python, in this order, each candidate actually run (a pyenv shim named
``python3.10`` can sit on PATH and refuse to run): ``CF2NEURO_NENGO_LOIHI_PYTHON``
(the only candidate when set); this interpreter when it is a 3.10 or 3.11;
``python3.10`` / ``python3.11`` on PATH; ``pyenv prefix``; ``uv python find``;
the usual install locations. nengo 3.2 was released for Pythons up to 3.10;
3.11 runs it too (measured: the emulator and this project's tests).

The environment lives in ``~/.cache/cf2neuro/nengo-loihi-<hash of REQUIREMENTS>``
(``$XDG_CACHE_HOME`` honoured) or ``CF2NEURO_NENGO_LOIHI_RUNTIME``; a stamp
file says it is complete, a file lock lets concurrent callers wait.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ...errors import RuntimeMissingError
from ...fileio import file_lock
from ...runtimes import clean_env
from .runtime import _clear, _command_output, _which_all

log = logging.getLogger(__name__)

ENV_PYTHON = "CF2NEURO_NENGO_LOIHI_PYTHON"
ENV_RUNTIME = "CF2NEURO_NENGO_LOIHI_RUNTIME"
VERSIONS = ("3.10", "3.11")
REQUIREMENTS = ("nengo==3.2.0", "nengo-loihi==1.1.0", "numpy>=1.21,<2", "scipy>=1.7")
STAMP = ".cf2neuro-runtime.json"
LOCK = ".cf2neuro-runtime.lock"
PROBE = ("import sys, venv, ensurepip; "
         "print('%d.%d' % sys.version_info[:2]); print(sys.executable)")
INSTALL_HINT = (
    "Install a Python 3.10 or 3.11 and try again, e.g. `pyenv install 3.10`, "
    "`apt-get install python3.11 python3.11-venv`, `uv python install 3.10` or "
    f"`brew install python@3.11`; or point {ENV_PYTHON} at one")
DRIVER = Path(__file__).resolve().parent / "nengo_loihi_driver.py"


def runtime_dir() -> Path:
    env = os.environ.get(ENV_RUNTIME)
    if env:
        return Path(env).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    key = hashlib.sha256("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]
    return cache / "cf2neuro" / f"nengo-loihi-{key}"


def runtime_python(root: Path | None = None) -> Path:
    root = runtime_dir() if root is None else root
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


# --- a Python 3.10 / 3.11 ------------------------------------------------------------

def _probe(python: str, timeout: float = 30.0) -> tuple[bool, str]:
    """(True, version) for a Python of VERSIONS with venv and ensurepip, else (False, why)."""
    try:
        r = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return False, "was not found"
    except subprocess.TimeoutExpired:
        return False, f"did not answer within {timeout:g} s"
    except OSError as e:
        return False, f"cannot run ({e})"
    if r.returncode != 0:
        if "ensurepip" in (r.stderr or "") or "venv" in (r.stderr or ""):
            return False, "has no venv/ensurepip module (Debian: apt-get install python3.X-venv)"
        return False, f"exits with status {r.returncode}"
    version = (r.stdout.strip().splitlines() or ["?"])[0]
    if version not in VERSIONS:
        return False, f"is Python {version}, not {' or '.join(VERSIONS)}"
    return True, version


def _candidates():
    if f"{sys.version_info[0]}.{sys.version_info[1]}" in VERSIONS:
        yield "this interpreter", sys.executable
    for v in VERSIONS:
        for p in _which_all(f"python{v}"):
            yield f"python{v} on PATH", p
    for v in VERSIONS:
        prefix = _command_output(["pyenv", "prefix", v])
        for line in (prefix or "").splitlines():
            yield f"pyenv prefix {v}", str(Path(line.strip()) / "bin" / f"python{v}")
        found = _command_output(["uv", "python", "find", v])
        if found:
            yield f"uv python find {v}", found.splitlines()[0].strip()
    home = Path.home()
    for v in VERSIONS:
        for pattern in (f"/usr/bin/python{v}", f"/usr/local/bin/python{v}",
                        f"/opt/homebrew/bin/python{v}",
                        str(home / f".pyenv/versions/{v}*/bin/python{v}"),
                        str(home / f".local/share/uv/python/*{v}*/bin/python{v}")):
            for p in sorted(glob.glob(pattern), reverse=True):
                yield "usual location", p


def find_python() -> tuple[Path, str]:
    """(interpreter, version) of a Python 3.10 or 3.11 that runs."""
    env = os.environ.get(ENV_PYTHON)
    if env:
        target = shutil.which(env) or env
        ok, info = _probe(target)
        if ok:
            return Path(target), info
        raise RuntimeMissingError(
            f"{ENV_PYTHON}={env} does not work as a Python {' or '.join(VERSIONS)} for the "
            f"nengo-loihi runtime: it {info}. {INSTALL_HINT}, or unset {ENV_PYTHON}")
    tried, seen = [], set()
    for how, path in _candidates():
        if path in seen:
            continue
        seen.add(path)
        ok, info = _probe(path)
        if ok:
            log.info("Python %s for nengo-loihi: %s (%s)", info, path, how)
            return Path(path), info
        tried.append(f"{path} ({how}) {info}")
    raise RuntimeMissingError(
        f"the nengo-loihi runtime needs Python {' or '.join(VERSIONS)} (nengo 3.2, numpy < 2) "
        f"and none works here. Tried: {'; '.join(tried) or 'nothing found'}. {INSTALL_HINT}")


# --- the virtual environment ----------------------------------------------------------

def _stamp_key(version: str) -> str:
    return hashlib.sha256(("\n".join(REQUIREMENTS) + version).encode()).hexdigest()


def _is_ready(root: Path) -> bool:
    try:
        stamp = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return (runtime_python(root).exists()
            and stamp.get("key") == _stamp_key(stamp.get("python_version", "")))


def runtime_env() -> dict[str, str]:
    """This environment minus what would leak into the runtime's interpreter."""
    env = clean_env()
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _step(cmd: list[str], what: str, progress: bool, timeout: float = 900.0) -> str:
    log.info("%s: %s", what, " ".join(cmd))
    if progress:
        print(f"[cf2neuro runtime] {what} ...", file=sys.stderr, flush=True)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=runtime_env(),
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeMissingError(f"setting up the nengo-loihi runtime: {what} failed "
                                  f"({e})") from None
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise RuntimeMissingError(
            f"setting up the nengo-loihi runtime: {what} failed (exit status {r.returncode}). "
            f"Command: {' '.join(cmd)}. Its output ends:\n{tail}\nPyPI must be reachable to "
            f"install {', '.join(REQUIREMENTS)}; fix the cause and run "
            f"`cf2neuro runtime setup nengo-loihi` again")
    return r.stdout


def setup_nengo_loihi(progress: bool = True, force: bool = False) -> Path:
    """Create the runtime if needed (idempotent, ~10 s); returns its python."""
    root = runtime_dir()
    if not force and _is_ready(root):
        return runtime_python(root)
    base, version = find_python()  # before the lock: a missing Python leaves no directory
    with file_lock(root / LOCK):
        if not force and _is_ready(root):  # made by another process meanwhile
            return runtime_python(root)
        t0 = time.perf_counter()
        if progress:
            print(f"[cf2neuro runtime] creating the nengo-loihi runtime in {root} from {base}",
                  file=sys.stderr, flush=True)
        _clear(root, keep={LOCK})
        _step([str(base), "-m", "venv", str(root)], f"creating a Python {version} virtual "
              f"environment", progress)
        py = runtime_python(root)
        _step([str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               *REQUIREMENTS], f"installing {', '.join(REQUIREMENTS)} (pip)", progress)
        info = _step([str(py), str(DRIVER), "--check"], "checking the runtime imports "
                     "nengo-loihi", progress)
        stamp = {"key": _stamp_key(version), "python_version": version,
                 "base_python": str(base), "requirements": list(REQUIREMENTS),
                 "versions": json.loads(info.strip().splitlines()[-1]),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "seconds": round(time.perf_counter() - t0, 1)}
        (root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if progress:
            print(f"[cf2neuro runtime] nengo-loihi runtime ready in {stamp['seconds']} s: {py}",
                  file=sys.stderr, flush=True)
        return py


def runtime_status() -> tuple[bool, str]:
    """(True, note) when the runtime is built or can be; (False, what to install) otherwise."""
    if _is_ready(runtime_dir()):
        return True, ""
    try:
        python, version = find_python()
    except RuntimeMissingError as e:
        return False, str(e)
    return True, (f"built on first use from {python} (Python {version}; or now: "
                  f"cf2neuro runtime setup nengo-loihi)")
