"""The cells of the interop table (docs/interop.md), recorded by the live peer tests.

With ``CF2NEURO_INTEROP_LOG=FILE`` set (`benchmarks/interop_table.py` sets it
and runs the tests), every cell a test checks appends one JSON line: peer,
direction, network, and either the measured spike agreement (before the
test asserts it), a refusal with its reason, a pinned peer bug with its
workaround, or a documented limit driven past on purpose. Without it, recording does nothing.
"""

import json
import os

import torch


def agreement(theirs: dict, ours: dict, names) -> float:
    """Fraction of equal spike values over every named layer, every step and sample."""
    same = total = 0
    for n in names:
        a, b = torch.as_tensor(theirs[n]), torch.as_tensor(ours[n])
        if a.shape != b.shape:
            return 0.0
        same += int((a == b).sum())
        total += a.numel()
    return same / total if total else 0.0


def record(peer: str, direction: str, network: str, *, agreement: float | None = None,
           refused: str | None = None, bug: str | None = None, flag: str = "",
           lost: str = "", limit: str | None = None) -> None:
    """One cell. `limit`: a documented semantic difference this cell demonstrates on
    purpose (a network driven past it), so its agreement is below 100 % by design."""
    path = os.environ.get("CF2NEURO_INTEROP_LOG")
    if not path:
        return
    cell = {"peer": peer, "direction": direction, "network": network, "flag": flag,
            "lost": lost, "agreement": agreement, "refused": refused, "bug": bug,
            "limit": limit}
    with open(path, "a") as f:
        f.write(json.dumps(cell) + "\n")
