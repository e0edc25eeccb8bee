"""What a runner may leave behind: child processes, shared memory, cf2neuro temp dirs."""

import os
import tempfile
from pathlib import Path


def children() -> set[int]:
    """This process's live (non-zombie) children."""
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == me and stat[0] != "Z":
                out.add(int(entry))
    return out


def leftovers() -> tuple[set, set, set]:
    """(children, /dev/shm entries, cf2neuro temp dirs) now."""
    tmp = {p.name for p in Path(tempfile.gettempdir()).iterdir() if "cf2neuro" in p.name}
    shm = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    return children(), shm, tmp
