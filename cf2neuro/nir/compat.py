"""NIR files every nir release from 1.0.4 to the newest reads (DESIGN §3: Sinabs and
Rockpool pin nir <= 1.0.4).

nir 1.0.4 builds each node as ``cls(**fields)`` from the file and so refuses
any field its class does not have. Two things the newer nir (1.0.8) writes
are unknown there (read from 1.0.4's ``nir/ir``):

- ``v_reset`` of LIF, IF and CubaLIF (1.0.4 always resets to zero; 1.0.8
  writes zeros even when nobody set it). `make_portable` drops a ``v_reset``
  that is all zeros: nir 1.0.8 reads a missing one as zeros, 1.0.4 resets to
  zero anyway, so both read the same neuron. A non-zero ``v_reset`` stays
  (1.0.4 cannot state it at all; dropping it would change the neuron for
  every newer reader) and a warning names the node.
- ``metadata`` of Input, Output, Linear, Conv2d, Scale and AvgPool2d (their
  1.0.4 classes have none). `make_portable` moves it into the graph's
  metadata under ``cf2neuro.node_metadata/<node>``, which every release keeps,
  and `merge_node_metadata` puts it back on the node when cf2neuro reads the
  file (files with node metadata where 1.0.8 puts it read as before).

Only the top-level graph is rewritten: cf2neuro's exporter writes no nested
graphs.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

KEY_NODE_METADATA = "cf2neuro.node_metadata"
NO_METADATA_104 = frozenset({"Input", "Output", "Linear", "Conv2d", "Scale", "AvgPool2d"})
NO_V_RESET_104 = frozenset({"LIF", "IF", "CubaLIF"})


def make_portable(path) -> None:
    """Rewrite the NIR file at `path` (written by nir.write) in place so nir 1.0.4 reads it."""
    import h5py

    with h5py.File(path, "r+") as f:
        root = f["node"]
        for name, node in root["nodes"].items():
            kind = node["type"][()]
            kind = kind.decode("utf8") if isinstance(kind, bytes) else str(kind)
            if kind in NO_V_RESET_104 and "v_reset" in node:
                if np.any(node["v_reset"][()]):
                    log.warning("NIR export: node %r has a non-zero v_reset; nir <= 1.0.4 "
                                "(Sinabs, Rockpool) has no v_reset and cannot read this file",
                                name)
                else:
                    del node["v_reset"]
            if kind in NO_METADATA_104 and "metadata" in node:
                meta = root.require_group("metadata").require_group(KEY_NODE_METADATA)
                f.move(node["metadata"].name, f"{meta.name}/{name}")


def merge_node_metadata(nodes: dict, metadata: dict) -> None:
    """Put the node metadata `make_portable` moved into the graph back on each node.

    `metadata` is the graph's metadata; what a node carries itself wins.
    """
    moved = metadata.pop(KEY_NODE_METADATA, None)
    if not isinstance(moved, dict):
        return
    for name, meta in moved.items():
        node = nodes.get(name)
        if node is not None and isinstance(meta, dict):
            node.metadata = {**meta, **(getattr(node, "metadata", None) or {})}
