"""Checkpoints: safetensors weights + JSON config and metrics (DESIGN §7).

    DIR/model.safetensors   the model's state_dict
    DIR/config.json         {"model": ..., "train": ..., "weights_sha256": ...}
    DIR/metrics.json        {"test_accuracy": 0..1, "history": [...], ...}
    DIR/train_state.safetensors
                            optimizer/scheduler/RNG state for --resume: its
                            tensors, plus the rest as JSON in the metadata;
                            nothing is ever unpickled.

Loading checks the weights' SHA-256 against config.json, so a truncated or
corrupted file is an error that names it, never a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import BadInputError, CheckpointError, Cf2NeuroError
from .fileio import atomic_path, write_json

WEIGHTS, CONFIG, METRICS, TRAIN_STATE = (
    "model.safetensors", "config.json", "metrics.json", "train_state.safetensors")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(directory, model: nn.Module, config: dict, metrics: dict,
                    train_state: dict | None = None) -> Path:
    """Write a checkpoint; every file is replaced atomically, weights first."""
    directory = Path(directory)
    with atomic_path(directory / WEIGHTS) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        digest = _sha256(tmp)
    if train_state is not None:
        tensors: dict[str, torch.Tensor] = {}
        tree = json.dumps(_encode(train_state, "", tensors))
        with atomic_path(directory / TRAIN_STATE) as tmp:
            save_file(tensors, str(tmp), metadata={"tree": tree})
    write_json(directory / CONFIG, {**config, "model": model.config, "weights_sha256": digest})
    write_json(directory / METRICS, metrics)
    return directory


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; a checkpoint directory holds "
                              f"{WEIGHTS}, {CONFIG} and {METRICS} (from `cf2neuro train`)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); re-create the checkpoint "
                              f"with `cf2neuro train`") from None


def read_config(directory) -> dict:
    """config.json of a checkpoint directory, which must hold a JSON object."""
    path = Path(directory) / CONFIG
    config = read_json(path)
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a JSON {type(config).__name__}, not the object "
                              f"`cf2neuro train` writes; re-create the checkpoint")
    for key in ("model", "train", "data"):
        if key in config and not isinstance(config[key], dict):
            raise CheckpointError(f"{path}: its {key!r} section is not an object (it is "
                                  f"{type(config[key]).__name__} {config[key]!r:.40}); "
                                  f"re-create the checkpoint with `cf2neuro train`")
    return config


def check_weights(state: dict, model: nn.Module, where) -> None:
    """Every tensor the model has, with its shape, a float dtype where the model's is
    float, and finite values: a NaN weight otherwise runs as garbage that still "passes"."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{where} does not fit the model its config describes: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}; use the "
                              f"config.json written with these weights")
    for key, want in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{where}: tensor {key!r} is shaped {list(got.shape)} but "
                                  f"the model in config.json needs {list(want.shape)}; use "
                                  f"the config.json written with these weights")
        if want.is_floating_point() and not got.is_floating_point():
            raise CheckpointError(f"{where}: tensor {key!r} is {got.dtype}, not a float "
                                  f"type; cf2neuro writes float32 weights. Re-train or "
                                  f"convert it to float32")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            bad = int((~torch.isfinite(got)).sum())
            raise CheckpointError(f"{where}: tensor {key!r} holds {bad} NaN or infinite "
                                  f"value(s); the training diverged or the file was edited. "
                                  f"Re-train (a lower --lr) or restore the weights")


def load_checkpoint(directory, map_location: str | torch.device = "cpu"):
    """Return (model, config, metrics) from a checkpoint directory."""
    from .device import check_fits
    from .nn.models import build_model, estimate_memory

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config = read_config(directory)
    metrics = read_json(directory / METRICS) if (directory / METRICS).is_file() else {}
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{directory / METRICS} holds a JSON "
                              f"{type(metrics).__name__}, not an object; delete it or "
                              f"re-create the checkpoint")
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    expected = config.get("weights_sha256")
    if expected and _sha256(weights) != expected:
        raise CheckpointError(f"{weights} is corrupted or truncated (its SHA-256 does not match "
                              f"{directory / CONFIG}); restore it or re-train")
    if not isinstance(config.get("model", {}).get("name"), str):
        raise CheckpointError(f"{directory / CONFIG} has no model section with a name; "
                              f"re-create the checkpoint with `cf2neuro train`")
    try:  # a config naming a huge model is refused with its size, before any allocation
        size = estimate_memory(config["model"]["name"], config["model"])
        check_fits(size["parameter_bytes"], f"the model in {directory / CONFIG} "
                   f"({size['parameters']:,} parameters)", fix="Check its model section")
        model = build_model(config["model"]["name"], config["model"])
    except Cf2NeuroError as e:
        raise CheckpointError(f"{directory / CONFIG}: {e}") from None
    try:
        state = load_file(str(weights), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({e})") from None
    check_weights(state, model, weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{weights} does not fit the model in {directory / CONFIG}: "
                              f"{str(e).splitlines()[0]} ...") from None
    return model, config, metrics


def load_train_state(directory) -> dict:
    path = Path(directory) / TRAIN_STATE
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} is missing (train without --resume)")
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            tree = json.loads(f.metadata()["tree"])
        return _decode(tree, tensors)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"cannot resume: {path} is unreadable ({type(e).__name__}: "
                              f"{str(e)[:200]}); train again without --resume") from None


# The train state (optimizer, scheduler, RNG) is nested dicts, lists and
# tuples of tensors and scalars, with int keys (optimizer state). JSON keeps
# the structure, tagged so that key and container types come back exactly;
# safetensors keeps the tensors.

def _encode(obj, path: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().contiguous()
        return {"tensor": path}
    if isinstance(obj, dict):
        return {"dict": [[k, _encode(v, f"{path}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    raise TypeError(f"train state at {path or '/'}: cannot store a {type(obj).__name__}")


def _decode(node: dict, tensors: dict):
    (kind, value), = node.items()
    if kind == "tensor":
        return tensors[value]
    if kind == "dict":
        return {k: _decode(v, tensors) for k, v in value}
    if kind in ("list", "tuple"):
        items = [_decode(v, tensors) for v in value]
        return items if kind == "list" else tuple(items)
    if kind == "value":
        return value
    raise ValueError(f"unknown entry {kind!r}")


def checkpoint_graph(ckpt_dir, dt: float | None = None):
    """A checkpoint as the IR graph `export` writes: traced, then the export passes."""
    from .ir.passes import run_passes
    from .ir.trace import trace_model

    model, _, _ = load_checkpoint(ckpt_dir)
    return run_passes(trace_model(model, dt=dt))


def source_graph(source, dt: float | None = None, peer: str | None = None):
    """A checkpoint directory, or a NIR file (read as framework `peer` ran it), as an IR graph."""
    path = Path(source)
    if peer is not None and not path.is_file():
        raise BadInputError(f"--from {peer} reads a NIR file that {peer} wrote; {source} is "
                            f"not a file")
    if path.is_dir():
        graph = checkpoint_graph(path, dt=dt)
        if dt is not None:
            from .nir.discretize import check_dt
            graph.meta["dt"] = check_dt(dt, "--dt")
        return graph
    if path.is_file():
        if path.suffix.lower() == ".onnx":
            raise BadInputError(f"{source} is an ONNX file; this command reads a checkpoint "
                                f"directory or a .nir file")
        from .nir import from_nir
        return from_nir(path, dt=dt, peer=peer)
    raise BadInputError(f"{source} is neither a checkpoint directory nor a model file (.nir, "
                        f".onnx); pass the directory `cf2neuro train` wrote or a file")
