"""cf2neuro's Xylo runtime: rockpool 3.1.0's XyloSim (xylosim 0.1.3) in its own environment.

It never imports torch, samna or cf2neuro. `xylosim_class` imports Rockpool's
XyloSim for Xylo Audio 2 (``rockpool.devices.xylo.syns61201``) without
running ``rockpool/devices/xylo/__init__.py``, which imports every Xylo
version and with it ``samna``: absent, that import fails; present as the
PyPI stub (samna 0.48.6), importing it runs ``pip install`` of the real
samna from GitLab. The package is stood in for by an empty one with the
same path, so its subpackages import as usual.
"""

from __future__ import annotations

import os
import sys
import types

__all__ = ["xylosim_class", "versions"]


def xylosim_class():
    """rockpool.devices.xylo.syns61201.xylo_sim.XyloSim, imported without samna."""
    import rockpool.devices

    name = "rockpool.devices.xylo"
    if name not in sys.modules:
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(os.path.dirname(rockpool.devices.__file__), "xylo")]
        sys.modules[name] = pkg
    from rockpool.devices.xylo.syns61201.xylo_sim import XyloSim

    return XyloSim


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("rockpool", "xylosim", "numpy")}
