"""The graph IR (DESIGN §2): one folder per stage.

    graph.py      Graph / Node / IRError: nodes, ordered edges, shapes, validate, printing
    ops.py        OpSpec registry OPS: each op's inputs, params, attrs, shape inference
    trace.py      trace_model: torch.fx tracing through registries keyed by type
    passes.py     fold_batchnorm, fold_thresholds, remove_identities (Graph -> Graph)
    serialize.py  save_graph / load_graph: lossless .safetensors files
    numerics.py   number formats: the per-op math (FloatNumerics)
    engine.py     Engine / run: the batched multi-step simulator over any numerics
"""

from .engine import Engine, run
from .graph import Graph, IRError, Node
from .numerics import FloatNumerics, Stateful
from .ops import OPS, OpSpec, register_op
from .passes import (DEFAULT_PASSES, PASSES, fold_batchnorm, fold_thresholds, graph_pass,
                     remove_identities, run_passes)
from .serialize import load_graph, save_graph
from .trace import trace_model

__all__ = ["Graph", "IRError", "Node", "OPS", "OpSpec", "register_op", "trace_model",
           "fold_batchnorm", "fold_thresholds", "remove_identities", "run_passes",
           "graph_pass", "PASSES", "DEFAULT_PASSES", "save_graph", "load_graph", "Engine",
           "run", "FloatNumerics", "Stateful"]
