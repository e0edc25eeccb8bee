"""What the NIR importer's readers share: the reading context and plain values.

NIR fields arrive as numpy arrays, torch tensors (snnTorch) or h5py scalars
and bytes; these helpers turn them into plain values, one way for every
reader (`importer.py` for layers and graphs, `neurons.py` for neurons).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import nir
import numpy as np

from ..errors import BadInputError


@dataclass
class _Context:
    where: str                 # the file (or "NIR graph") for messages
    dt: float | None
    read_cf_metadata: bool
    drop_batch: frozenset = frozenset()  # Input nodes read without their leading 1


CF_NEURON = "circulate_firing"   # node metadata KEY_NEURON of a cf2neuro CF neuron
KEY_NEURON = "cf2neuro.neuron"
KEY_ORDER = "cf2neuro.order"     # the graph's node order, as JSON (export and importer)

Imported = tuple[str, dict, dict]   # (IR op, params, attrs)
IDENTITY = object()  # stands for a nested graph's inlined Input/Output node
Importer = Callable[[str, nir.NIRNode, _Context], Imported]


def _arr(x) -> np.ndarray:
    """A NIR field as a numpy array (snnTorch leaves torch tensors in its graphs)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _plain(v):
    """A metadata value as a plain Python value (h5py gives numpy scalars and bytes)."""
    if isinstance(v, bytes):
        return v.decode("utf8")
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def _pair(v, what: str, name: str) -> list[int]:
    a = _arr(v).astype(np.int64).reshape(-1)
    if a.size == 1:
        return [int(a[0])] * 2
    if a.size != 2:
        raise BadInputError(f"node {name!r}: {what} must be one int or a pair, got {a.tolist()}")
    return [int(x) for x in a]


def _uniform(a: np.ndarray) -> float | None:
    """The single value of an array, or None if its elements differ."""
    a = np.asarray(a).reshape(-1)
    return float(a[0]) if a.size and np.all(a == a[0]) else None
