"""Shapes a NIR file declares, against the shapes the IR infers from its Input nodes.

Frameworks differ in whether a type carries the batch: Norse and Rockpool
write an Input type ``[1, N]`` (their sample batch of one) where snnTorch,
Sinabs and cf2neuro write ``[N]``. The importer first reads such an Input
without its leading 1 (`leading_batch`) and keeps that reading when the
graph then validates and agrees with every shape the file declares;
otherwise the shape stays as written (a 1 that is a real dimension, e.g. one
channel of an image fed to a Flatten).
"""

from __future__ import annotations

import logging

import nir
import numpy as np

from ..errors import BadInputError

log = logging.getLogger(__name__)


def _ints(x) -> list[int]:
    if hasattr(x, "detach"):  # snnTorch leaves torch tensors in its graphs
        x = x.detach().cpu().numpy()
    return [int(s) for s in np.asarray(x).reshape(-1)]


def leading_batch(nodes: dict) -> frozenset:
    """Names of the Input nodes whose type is ``[1, *rest]`` with `rest` not empty."""
    found = set()
    for name, node in nodes.items():
        if isinstance(node, nir.Input) and node.input_type:
            shape = node.input_type.get("input")
            if shape is not None and len(s := _ints(shape)) >= 2 and s[0] == 1:
                found.add(name)
    return frozenset(found)


def check_declared_shapes(nodes: dict, graph, where: str, identity) -> None:
    """What the file declares (Conv2d input_shape, Flatten input_type, Output) vs inference.

    `identity` marks the inlined Input/Output nodes of nested graphs (skipped).
    """
    for name, node in nodes.items():
        if node is identity:
            continue
        declared = None
        if isinstance(node, nir.Conv2d) and node.input_shape is not None:
            declared = [int(graph[graph[name].inputs[0]].shape[0]), *_ints(node.input_shape)]
        elif isinstance(node, nir.Flatten) and node.input_type.get("input") is not None:
            declared = _ints(node.input_type["input"])
        elif isinstance(node, nir.Output) and node.output_type.get("output") is not None:
            declared = _ints(node.output_type["output"])
        if declared is None:
            continue
        got = list(graph[graph[name].inputs[0]].shape)
        if declared == got:
            continue
        if isinstance(node, nir.Output):
            if declared == [1, *got]:  # a batch of one, as Norse and Rockpool write
                continue
            if int(np.prod(declared)) == int(np.prod(got)):
                log.warning("%s: Output %r declares shape %s; the graph gives %s (same size)",
                            where, name, declared, got)
                continue
        raise BadInputError(f"{where}: inconsistent shapes: node {name!r} "
                            f"({type(node).__name__}) declares input {declared} but its "
                            f"input is {got} as inferred from the Input node(s)")
