"""Writing outputs: checked before the work, atomic, shared by the user's umask, locked.

    check_output_dir(path, "--out")      before any work: can this directory be written?
    check_output_file(path, "--out")     ... this file (its folder exists or can be made)?
    with atomic_path(path) as tmp: ...   a reader sees the old file or the whole new one
    with locked_dir(path, "--out"): ...  one writer at a time (a second one is refused)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

from .errors import BadInputError

LOCK = ".cf2neuro.lock"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp (and some writers, e.g. safetensors) make 0600; outputs follow the umask
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _first_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path("/")


def _dir_problem(path: Path) -> str | None:
    """Why `path` cannot be or become a writable directory, or None. Creates nothing."""
    top = _first_existing(path)
    if top == path and not path.is_dir():
        return f"{path} is a file, not a directory; remove it or choose another path"
    if top != path and not top.is_dir():
        return f"{top} is a file, so no directory can be made under it; choose another path"
    try:  # a real probe: permissions, read-only mounts and /proc alike (root passes access())
        with tempfile.TemporaryFile(dir=top, prefix=".cf2neuro-probe-"):
            pass
    except OSError as e:
        return f"cannot write in {top} ({e.strerror}); choose a directory you can write to"
    return None


def check_output_dir(path, what: str = "output directory") -> Path:
    """BadInputError (what, where, what to do) unless `path` is or can become a writable
    directory. Creates nothing: a refused run leaves no trace."""
    path = Path(path)
    why = _dir_problem(path)
    if why:
        raise BadInputError(f"{what} {path}: {why}")
    return path


def check_output_file(path, what: str = "output file") -> Path:
    """BadInputError unless `path` can be written as a file (its folder checked as above)."""
    path = Path(path)
    why = ("it is a directory; give a file name" if path.is_dir()
           else _dir_problem(path.parent))
    if why is None and path.exists() and not os.access(path, os.W_OK):
        why = "it exists and is not writable by you"
    if why:
        raise BadInputError(f"{what} {path}: {why}")
    return path


@contextlib.contextmanager
def locked_dir(path, what: str = "output directory"):
    """Hold an exclusive lock on directory `path` (made if missing) while writing into it.

    A second writer is refused at once (BadInputError, exit 2), naming the first
    one's pid: two runs into one checkpoint would interleave their files. The
    lock file (``.cf2neuro.lock``) stays; the kernel lock dies with its process.
    A directory this call made is removed again when the work fails before
    writing anything into it.
    """
    path = check_output_dir(path, what)
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    ok = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise BadInputError(f"{what} {path} is being written by another cf2neuro process "
                                f"(pid {holder}); wait for it to finish or choose another "
                                f"directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield path
        ok = True
    finally:
        os.close(fd)  # releases the lock
        if made and not ok and [p.name for p in path.iterdir()] == [LOCK]:
            with contextlib.suppress(OSError):  # a refused or failed run leaves no folder
                (path / LOCK).unlink()
                path.rmdir()


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive flock on `path` (created with its parents): one builder at a time
    for a runtime directory, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
