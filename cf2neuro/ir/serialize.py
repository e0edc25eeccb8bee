"""Lossless graph files: one .safetensors holding every parameter array, with
the graph's structure as JSON in the file's metadata.

    tensors   "<node name>/<param name>" -> the array (dtype and shape kept)
    metadata  {"format": "cf2neuro.ir", "version": "1", "graph": <JSON>}
    <JSON>    {"meta": {...}, "nodes": [{"name", "op", "inputs", "attrs",
               "meta", "shape", "params": [param names in order],
               "param_shapes": [their shapes]}, ...]}   (safetensors reads 0-d as [1])

Node order, input order, attributes, metadata, shapes and parameter dtypes
all survive (`Graph.equals` holds after a round trip). Writing is atomic.
Arrays are stored little-endian (a big-endian array comes back native).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ..fileio import atomic_path
from .graph import Graph, IRError

FORMAT, VERSION = "cf2neuro.ir", "1"


def graph_to_json(graph: Graph) -> dict:
    """The structure of a graph (everything but the parameter values)."""
    return {"meta": graph.meta, "nodes": [
        {"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": n.attrs,
         "meta": n.meta, "shape": None if n.shape is None else list(n.shape),
         "params": list(n.params),
         "param_shapes": [list(np.shape(v)) for v in n.params.values()]}
        for n in graph.nodes.values()]}


def save_graph(graph: Graph, path: str | os.PathLike) -> Path:
    """Write `graph` to `path` (.safetensors); returns the path."""
    tensors = {}
    for n in graph.nodes.values():
        for k, v in n.params.items():
            arr = np.asarray(v)
            if arr.dtype.kind not in "biuf":
                raise IRError(f"{n.where()}: parameter {k} has dtype {arr.dtype}, which a "
                              f"graph file cannot hold (bool, int, uint and float only)")
            tensors[f"{n.name}/{k}"] = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("=")))
    try:
        structure = json.dumps(graph_to_json(graph), allow_nan=True)
    except (TypeError, ValueError) as e:
        raise IRError(f"the graph's attrs or meta are not JSON-able: {e}; use ints, floats, "
                      f"bools, strings, lists and dicts") from None
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "version": VERSION,
                                               "graph": structure})
    return path


def load_graph(path: str | os.PathLike, validate: bool = True) -> Graph:
    """Read a graph written by `save_graph`; IRError on a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise IRError(f"graph file {path} does not exist")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise IRError(f"{path} is not a readable graph file (truncated or corrupt?): {e}; "
                      f"write it again with save_graph") from None
    if header.get("format") != FORMAT:
        raise IRError(f"{path} is a safetensors file but not a cf2neuro graph "
                      f"(format {header.get('format')!r}); was it written by save_graph?")
    if header.get("version") != VERSION:
        raise IRError(f"{path} has graph format version {header.get('version')!r}; this "
                      f"cf2neuro reads version {VERSION}")
    try:
        data = json.loads(header["graph"])
        graph = Graph(data["meta"])
        for d in data["nodes"]:
            params = {k: tensors.pop(f"{d['name']}/{k}").reshape(shape)
                      for k, shape in zip(d["params"], d["param_shapes"], strict=True)}
            node = graph.add_node(d["name"], d["op"], d["inputs"], params, d["attrs"],
                                  d["meta"])
            node.attrs = d["attrs"]  # exactly as saved: no defaults filled in
            node.shape = None if d["shape"] is None else tuple(d["shape"])
    except (KeyError, TypeError, ValueError) as e:
        raise IRError(f"{path}: the graph structure is corrupt ({type(e).__name__}: {e})") \
            from None
    if tensors:
        raise IRError(f"{path}: arrays {sorted(tensors)[:5]} belong to no node; the file is "
                      f"corrupt")
    if validate:
        shapes = {n.name: n.shape for n in graph.nodes.values()}
        graph.validate()
        for n in graph.nodes.values():  # keep what was saved (None before inference)
            n.shape = shapes[n.name]
    return graph
