"""Runners beyond the float reference (DESIGN §4); importing this package registers them.

    emulator   the bit-exact fixed-point emulator (cf2neuro.runners.emulator)
    lava       lava-nc 0.10.0 in its isolated runtime (cf2neuro.runners.lava)

`cf2neuro.api.run` looks runners up in `cf2neuro.api.RUNNERS`; each module
here calls `cf2neuro.api.register_runner` when imported.
"""

from . import emulator  # noqa: F401  (registers "emulator")
from . import lava  # noqa: F401  (registers "lava"; imports no Lava itself)
from .emulator import Emulator, emulate

__all__ = ["Emulator", "emulate"]
