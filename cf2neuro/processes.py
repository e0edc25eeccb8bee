"""The processes of this machine as /proc shows them (Linux), for runners that clean up.

    for pid, fields in proc_stats(): ...   # fields: /proc/PID/stat after the name,
                                           # fields[0] = state, [1] = ppid, [2] = pgid,
                                           # [3] = session, [49] = exit status (zombies)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields from the state on) of every process readable now; none without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        yield int(entry), fields
