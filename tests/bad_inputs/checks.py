"""The bad-input catalogue's checks, shared by every file in tests/bad_inputs/ (and faults.py).

Each case runs the command line as a user does (a fresh interpreter, or
`cli()` in-process where a traceback would fail the test anyway) and asserts:

- `refused(res, *words)`: exit code 2 (or the one given), no traceback, the
  last stderr line is cf2neuro's one-line error and names each of `words`;
- `nothing_partial(*paths)`: none of the outputs exists and no temp file
  (``.NAME.*.tmp``) was left beside them;
- the `no_leftovers` fixture: no process whose command line names the Lava
  runtime, no /dev/shm entry and no cf2neuro temp dir more than before.

These scans are written here, independently of the product's own cleanup code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAVA_MARKERS = ("cf2neuro_lava", "lava-runtime")


def cf2neuro(*args, cwd=None, env: dict | None = None, timeout: float = 300,
             **popen) -> subprocess.CompletedProcess:
    """`python -m cf2neuro ARGS` in a fresh interpreter; stdout/stderr captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "cf2neuro", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=full_env,
                          timeout=timeout, **popen)


def refused(res: subprocess.CompletedProcess, *words: str, code: int = 2) -> str:
    """Assert a clean refusal; return stderr."""
    out = (res.stdout or "") + (res.stderr or "")
    assert res.returncode == code, f"exit {res.returncode}, wanted {code}:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    lines = [ln for ln in (res.stderr or "").strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("cf2neuro"), f"no one-line error:\n{res.stderr}"
    for w in words:
        assert w.lower() in res.stderr.lower(), f"{w!r} not in the message:\n{res.stderr}"
    return res.stderr


def nothing_partial(*paths) -> None:
    """None of `paths` exists, and no atomic-write temp file sits in their folders."""
    for p in map(Path, paths):
        assert not p.exists(), f"{p} was written"
        folder = p.parent
        if folder.is_dir():
            tmp = [f.name for f in folder.iterdir() if f.name.startswith(".")
                   and f.name.endswith(".tmp")]
            assert not tmp, f"temp files left in {folder}: {tmp}"


def lava_processes() -> set[int]:
    """Live processes (not zombies) whose command line names the Lava runtime."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(m in cmd for m in LAVA_MARKERS):
            out.add(int(entry))
    return out


def snapshot() -> dict[str, set]:
    shm = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    tmp = {p.name for p in Path(tempfile.gettempdir()).iterdir() if "cf2neuro" in p.name}
    return {"lava processes": lava_processes(), "/dev/shm entries": shm, "temp dirs": tmp}


def new_leftovers(before: dict[str, set], grace: float = 5.0) -> dict[str, set]:
    """What appeared since `before` and is still there after up to `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        now = snapshot()
        left = {k: now[k] - before[k] for k in now if now[k] - before[k]}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
