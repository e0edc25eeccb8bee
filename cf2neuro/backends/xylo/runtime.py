"""The isolated Xylo runtime: rockpool 3.1.0 + xylosim 0.1.3 in a virtual environment of its own.

    setup_xylo(progress=True)   create (or reuse) the runtime; returns its python
    xylo_python()               the runtime's python, created on first use
    runtime_status()            (ok, note) without building anything

Rockpool's core needs only numpy and scipy, so the runtime holds no torch
(pip still gets a constraints file pinning torch to this environment's
version, so nothing can pull a CUDA build) and no samna (see
``cf2neuro_xylo.xylosim_class``). xylosim ships as source only: pip builds
it, which needs a C++ compiler and the Python headers.

The environment is made from this interpreter (or ``CF2NEURO_XYLO_PYTHON``)
in ``~/.cache/cf2neuro/xylo-runtime-<hash of the package path>``
(``$XDG_CACHE_HOME`` honoured), or in ``CF2NEURO_XYLO_RUNTIME``. A stamp file
keyed by the runtime package's pyproject, its path and the interpreter's
version marks it complete; a file lock lets concurrent callers wait for one
another. Only the dependencies listed in ``xylo_runtime/pyproject.toml`` are
installed; the package itself runs from where it ships (PYTHONPATH), so
nothing is written beside cf2neuro's own files.
"""

from __future__ import annotations

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

ENV_PYTHON = "CF2NEURO_XYLO_PYTHON"
ENV_RUNTIME = "CF2NEURO_XYLO_RUNTIME"
STAMP = ".cf2neuro-runtime.json"
LOCK = ".cf2neuro-runtime.lock"
PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"
INSTALL_HINT = (
    "The Xylo runtime installs rockpool==3.1.0 and builds xylosim==0.1.3 from source: PyPI "
    "must be reachable, and a C++ compiler and the Python headers must be installed "
    "(Debian/Ubuntu: apt-get install g++ python3-dev python3-venv; macOS: xcode-select "
    "--install). Then run `cf2neuro runtime setup xylosim`")


def package_dir() -> Path:
    """``xylo_runtime/``: the runtime package, shipped inside this back end."""
    here = Path(__file__).resolve().parent / "xylo_runtime"
    if not (here / "pyproject.toml").is_file():
        raise RuntimeMissingError(f"the Xylo runtime package is not at {here} (a broken "
                                  f"install?); reinstall cf2neuro (pip install -e .)")
    return here


def runtime_dir() -> Path:
    env = os.environ.get(ENV_RUNTIME)
    if env:
        return Path(env).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    key = hashlib.sha256(str(package_dir()).encode()).hexdigest()[:12]
    return cache / "cf2neuro" / f"xylo-runtime-{key}"


def runtime_python(root: Path | None = None) -> Path:
    root = runtime_dir() if root is None else root
    return root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def base_python() -> tuple[str, str]:
    """(interpreter, "major.minor") to build the environment from; RuntimeMissingError if none."""
    env = os.environ.get(ENV_PYTHON)
    python = (shutil.which(env) or env) if env else sys.executable
    try:
        r = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        ok, why = r.returncode == 0, (r.stderr.strip().splitlines() or ["?"])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        ok, why = False, str(e)
    if not ok:
        what = f"{ENV_PYTHON}={env}" if env else f"this interpreter ({python})"
        raise RuntimeMissingError(f"{what} cannot create the Xylo runtime's virtual "
                                  f"environment: {why}. {INSTALL_HINT}")
    return python, r.stdout.strip()


def _stamp_key(package: Path, version: str) -> str:
    h = hashlib.sha256((package / "pyproject.toml").read_bytes())
    h.update(f"{package}|{version}".encode())
    return h.hexdigest()


def _is_ready(root: Path, package: Path) -> bool:
    try:
        stamp = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return runtime_python(root).exists() and \
        stamp.get("key") == _stamp_key(package, stamp.get("python_version", ""))


def _step(cmd: list[str], what: str, progress: bool, env: dict) -> None:
    setup_step(cmd, what, progress, env, "Xylo", INSTALL_HINT)


def dependencies(package: Path) -> list[str]:
    """The runtime's requirements, as its pyproject lists them."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: cf2neuro depends on tomli there
        import tomli as tomllib
    with open(package / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def _torch_pin() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"torch=={version('torch').split('+')[0]}\n"
    except PackageNotFoundError:
        return ""


def setup_xylo(progress: bool = True, force: bool = False) -> Path:
    """Create the runtime if needed (idempotent; ~30 s, most of it building xylosim)."""
    package, root = package_dir(), runtime_dir()
    if not force and _is_ready(root, package):
        return runtime_python(root)
    with file_lock(root / LOCK):
        if not force and _is_ready(root, package):
            return runtime_python(root)
        t0 = time.perf_counter()
        python, version = base_python()
        if progress:
            print(f"[cf2neuro runtime] creating the Xylo runtime in {root} from {python}",
                  file=sys.stderr, flush=True)
        for entry in root.iterdir():  # a stale or half-made runtime
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() \
                    else entry.unlink()
        env = clean_env()
        _step([python, "-m", "venv", str(root)], "creating a virtual environment", progress, env)
        constraints = root / "constraints.txt"
        constraints.write_text(_torch_pin())
        py = str(runtime_python(root))
        _step([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-c",
               str(constraints), *dependencies(package)],
              "installing rockpool 3.1.0 and building xylosim 0.1.3 (pip)", progress, env)
        _step([py, "-m", "cf2neuro_xylo", "check"], "checking XyloSim runs", progress,
              {**env, "PYTHONPATH": str(package)})
        stamp = {"key": _stamp_key(package, version), "python_version": version,
                 "base_python": python, "package": str(package),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "seconds": round(time.perf_counter() - t0, 1)}
        (root / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if progress:
            print(f"[cf2neuro runtime] Xylo runtime ready in {stamp['seconds']} s: {py}",
                  file=sys.stderr, flush=True)
        return Path(py)


def xylo_python(progress: bool = True) -> Path:
    """The runtime's python, creating the runtime on first use."""
    return setup_xylo(progress=progress)


def runtime_status() -> tuple[bool, str]:
    """(True, "") when the runtime is built; (True, how) when it can be; else (False, why)."""
    package = package_dir()
    if _is_ready(runtime_dir(), package):
        return True, ""
    env = os.environ.get(ENV_PYTHON)
    python = (shutil.which(env) or env) if env else sys.executable
    if not Path(python).exists():
        return False, (f"the Xylo runtime is not built and {ENV_PYTHON}={env} is not an "
                       f"interpreter. {INSTALL_HINT}")
    return True, "built on first use (or now: cf2neuro runtime setup xylosim)"


def xylo_env() -> dict[str, str]:
    """The environment the runtime runs in: this one, minus what would leak into it."""
    env = clean_env()
    env["PYTHONPATH"] = str(package_dir())
    env["PYTHONNOUSERSITE"] = "1"
    return env
