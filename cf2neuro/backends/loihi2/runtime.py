"""External runtimes cf2neuro creates for itself: the isolated Lava runtime (DESIGN §4).

lava-nc 0.10.0 needs Python 3.10 exactly and numpy < 2, while cf2neuro runs
on any Python >= 3.10 with current torch. So Lava runs in a virtual
environment of its own, made from a Python 3.10 interpreter found on this
machine, with the runtime package ``lava_runtime/`` (``cf2neuro_lava``:
lava-nc==0.10.0, numpy<2, nir) installed into it.

    find_python310() -> Path     a Python 3.10 that actually runs
    setup_lava(progress=True)    create (or reuse) the runtime; returns its python
    lava_python()                the runtime's python, created on first use

Finding Python 3.10, in this order, each candidate actually *run*
(``-c "import sys, venv, ensurepip; ..."``), because a pyenv shim named
``python3.10`` can sit on PATH and refuse to run:

1. ``CF2NEURO_LAVA_PYTHON`` (an interpreter path or a command on PATH);
   when it is set it is the only candidate, and one that fails is an error;
2. this interpreter, when it is a 3.10;
3. every ``python3.10`` on PATH;
4. ``pyenv prefix 3.10`` + ``/bin/python3.10``, when pyenv exists;
5. ``uv python find 3.10``, when uv exists;
6. the usual install locations (``/usr/bin``, ``/usr/local/bin``,
   ``/opt/homebrew/bin``, ``~/.pyenv/versions/3.10.*/bin``,
   ``~/.local/share/uv/python/*3.10*/bin``).

None works: `RuntimeMissingError` saying what to install.

The runtime lives in ``~/.cache/cf2neuro/lava-runtime-<hash of the package path>``
(``$XDG_CACHE_HOME`` honoured), or in
``CF2NEURO_LAVA_RUNTIME`` when that is set. Creating it is idempotent: a stamp
file keyed by a hash of the runtime package's ``pyproject.toml``, its path and
the interpreter's version says the environment is complete; a file lock lets
concurrent callers wait for one another. The package is installed editable,
so changes to ``cf2neuro_lava``'s code need no reinstall (changes to its
pyproject do, and get one).
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
from ...runtimes import clean_env, setup_step

log = logging.getLogger(__name__)

ENV_PYTHON = "CF2NEURO_LAVA_PYTHON"
ENV_RUNTIME = "CF2NEURO_LAVA_RUNTIME"
STAMP = ".cf2neuro-runtime.json"
LOCK = ".cf2neuro-runtime.lock"
PROBE = ("import sys, venv, ensurepip; "
         "print('%d.%d' % sys.version_info[:2]); print(sys.executable)")
INSTALL_HINT = (
    "Install a Python 3.10 and try again, e.g. `pyenv install 3.10` (pyenv), "
    "`apt-get install python3.10 python3.10-venv` (Debian/Ubuntu, deadsnakes PPA), "
    "`uv python install 3.10` (uv) or `brew install python@3.10` (macOS); or point "
    f"{ENV_PYTHON} at a Python 3.10 interpreter")


def lava_package_dir() -> Path:
    """``lava_runtime/``: the runtime package, shipped inside this back end."""
    here = Path(__file__).resolve().parent / "lava_runtime"
    if not (here / "pyproject.toml").is_file():
        raise RuntimeMissingError(
            f"the Lava runtime package is not at {here} (a broken install?); reinstall "
            f"cf2neuro (pip install -e . from a checkout)")
    return here


def runtime_dir() -> Path:
    """Where the runtime's virtual environment lives: a cache directory, never the package.

    Outside the source tree (and site-packages, which may be read-only): the
    user's cache, one directory per runtime package location (a hash of its
    path), so two checkouts do not rebuild each other's runtime.
    """
    env = os.environ.get(ENV_RUNTIME)
    if env:
        return Path(env).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    key = hashlib.sha256(str(lava_package_dir()).encode()).hexdigest()[:12]
    return cache / "cf2neuro" / f"lava-runtime-{key}"


# --- Python 3.10 ---------------------------------------------------------------

def _probe(python: str, timeout: float = 30.0) -> tuple[bool, str]:
    """Run `python` once: (True, resolved executable) for a working 3.10, else (False, why)."""
    try:
        r = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return False, "not found"
    except PermissionError:
        return False, "not executable"
    except subprocess.TimeoutExpired:
        return False, f"did not answer within {timeout:g} s"
    except OSError as e:
        return False, f"cannot run ({e})"
    if r.returncode != 0:
        detail = (r.stderr or r.stdout).strip().splitlines()
        missing = "ensurepip" in (r.stderr or "")
        why = ("has no venv/ensurepip module (Debian: apt-get install python3.10-venv)"
               if missing else f"exits with status {r.returncode}")
        return False, why + (f": {detail[-1]}" if detail and not missing else "")
    lines = r.stdout.strip().splitlines()
    if not lines or lines[0] != "3.10":
        return False, f"is Python {lines[0] if lines else '?'}, not 3.10"
    return True, lines[1] if len(lines) > 1 else python


def _which_all(name: str) -> list[str]:
    found = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d or ".") / name
        if p.is_file() and os.access(p, os.X_OK):
            found.append(str(p))
    return found


def _command_output(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _candidates():
    """(description, interpreter) pairs in the order of the module docstring (after the env var)."""
    if sys.version_info[:2] == (3, 10):
        yield "this interpreter", sys.executable
    for p in _which_all("python3.10"):
        yield "python3.10 on PATH", p
    prefix = _command_output(["pyenv", "prefix", "3.10"])
    if prefix:
        for line in prefix.splitlines():
            yield "pyenv prefix 3.10", str(Path(line.strip()) / "bin" / "python3.10")
    found = _command_output(["uv", "python", "find", "3.10"])
    if found:
        yield "uv python find 3.10", found.splitlines()[0].strip()
    home = Path.home()
    patterns = ["/usr/bin/python3.10", "/usr/local/bin/python3.10", "/opt/homebrew/bin/python3.10",
                str(home / ".pyenv/versions/3.10*/bin/python3.10"),
                str(home / ".local/share/uv/python/*3.10*/bin/python3.10")]
    for pattern in patterns:
        for p in sorted(glob.glob(pattern), reverse=True):
            yield "usual location", p


def find_python310() -> Path:
    """A Python 3.10 interpreter that runs (see the module docstring for the search)."""
    env = os.environ.get(ENV_PYTHON)
    if env:
        target = shutil.which(env) or env
        ok, info = _probe(target)
        if ok:
            return Path(target)
        raise RuntimeMissingError(
            f"{ENV_PYTHON}={env} does not work as a Python 3.10 for the Lava runtime: it "
            f"{info}. Point {ENV_PYTHON} at a working Python 3.10 interpreter, or unset it "
            f"to let cf2neuro search PATH, pyenv and uv")
    tried: list[str] = []
    seen: set[str] = set()
    for how, path in _candidates():
        if path in seen:
            continue
        seen.add(path)
        ok, info = _probe(path)
        if ok:
            log.info("Python 3.10 for Lava: %s (%s)", path, how)
            return Path(path)
        tried.append(f"{path} ({how}) {info}")
    what = ("; ".join(tried)) if tried else "no python3.10 on PATH, no pyenv or uv 3.10"
    raise RuntimeMissingError(f"the Lava runtime needs Python 3.10 (lava-nc 0.10.0 runs on "
                              f"3.10 only) and none works here. Tried: {what}. {INSTALL_HINT}")


# --- the virtual environment ---------------------------------------------------------

def runtime_python(root: Path | None = None) -> Path:
    root = runtime_dir() if root is None else root
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _stamp_key(package: Path, python_version: str) -> str:
    h = hashlib.sha256()
    h.update((package / "pyproject.toml").read_bytes())
    h.update(str(package).encode())
    h.update(python_version.encode())
    return h.hexdigest()


def _read_stamp(root: Path) -> dict:
    try:
        return json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def _is_ready(root: Path, package: Path) -> bool:
    stamp = _read_stamp(root)
    py = runtime_python(root)
    return (bool(stamp) and py.exists() and
            stamp.get("key") == _stamp_key(package, stamp.get("python_version", "")))


def _clear(root: Path, keep: set[str]) -> None:
    """Empty `root` (a previous, incomplete or stale runtime) except the names in `keep`."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _run_step(cmd: list[str], what: str, progress: bool, env=None) -> None:
    setup_step(cmd, what, progress, env, "Lava",
               "PyPI must be reachable to install lava-nc 0.10.0; fix the cause and run "
               "`cf2neuro runtime setup lava` again")


def setup_lava(progress: bool = True, force: bool = False) -> Path:
    """Create the isolated Lava runtime if needed (idempotent); returns its python.

    Creates a Python 3.10 virtual environment in `runtime_dir()` and installs
    ``lava_runtime`` (editable, with lava-nc==0.10.0, numpy<2 and nir) into
    it, then checks that it imports. `force` rebuilds it from scratch.
    Takes a minute or two the first time; afterwards it only checks the stamp.
    """
    package = lava_package_dir()
    root = runtime_dir()
    if not force and _is_ready(root, package):
        return runtime_python(root)
    with file_lock(root / LOCK):  # inside the (git-ignored) runtime dir; survives a rebuild
        if not force and _is_ready(root, package):  # another process made it meanwhile
            return runtime_python(root)
        t0 = time.perf_counter()
        base = find_python310()
        ok, info = _probe(str(base))
        if progress:
            print(f"[cf2neuro runtime] creating the Lava runtime in {root} from {base}",
                  file=sys.stderr, flush=True)
        _clear(root, keep={LOCK})
        env = clean_env()
        _run_step([str(base), "-m", "venv", str(root)],
                  "creating a Python 3.10 virtual environment", progress, env)
        py = runtime_python(root)
        _run_step([str(py), "-m", "pip", "install", "--disable-pip-version-check",
                   "--no-input", "-e", str(package)],
                  "installing lava-nc 0.10.0, numpy<2, nir and cf2neuro_lava (pip)",
                  progress, env)
        _run_step([str(py), "-m", "cf2neuro_lava", "check"], "checking the runtime imports Lava",
                  progress, {**env, "PYTHONPATH": str(package)})
        version = "3.10"
        stamp = {"key": _stamp_key(package, version), "python_version": version,
                 "base_python": str(base), "base_info": info, "package": str(package),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "seconds": round(time.perf_counter() - t0, 1)}
        (root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if progress:
            print(f"[cf2neuro runtime] Lava runtime ready in {stamp['seconds']} s: {py}",
                  file=sys.stderr, flush=True)
        return py


def lava_python(progress: bool = True) -> Path:
    """The Lava runtime's python, creating the runtime on first use."""
    return setup_lava(progress=progress)


def runtime_status() -> tuple[bool, str]:
    """(True, "") when the runtime is built, or a Python 3.10 to build it exists; else why not."""
    root, package = runtime_dir(), lava_package_dir()
    if _is_ready(root, package):
        return True, ""
    try:
        python = find_python310()
    except RuntimeMissingError as e:
        return False, str(e)
    return True, f"built on first use from {python} (or now: cf2neuro runtime setup lava)"


def lava_env() -> dict[str, str]:
    """The environment the runtime runs in: this one, minus what would leak into it."""
    env = clean_env()
    env["PYTHONPATH"] = str(lava_package_dir())  # the editable install, made explicit
    env["PYTHONNOUSERSITE"] = "1"
    return env
