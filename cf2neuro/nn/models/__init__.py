"""The model zoo: spiking MLP, VGG, ResNet and Spikformer of CF neurons.

`build_model(name, config)` looks the name up in `MODELS` and builds it from
a JSON-serializable config. A builder is any callable with keyword
parameters only; its signature's defaults are the model's defaults, so
checking and filling a config needs no per-model code here. The resolved
config (every key, `"name"` included, the neuron options complete) is kept
on the model as `model.config`, and

    build_model(model.config["name"], model.config)

rebuilds the same architecture (the checkpoint saves it as config.json).

Every model maps `[T, B, *input_shape]` to per-step readouts
`[T, B, num_classes]`; hidden nonlinearities are `CFNeuron`s built from the
`neuron` options (`neuron=LIF_BASELINE` gives the LIF baseline).

Tracing: the models are plain module compositions for torch.fx, but
`CFNeuron.forward` itself is not symbolically traceable (it checks
`x.dim()` and runs an autograd.Function over T), so a tracer must keep
`CFNeuron` as a leaf module (and may keep `SpikingSelfAttention` as one).
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable

from torch import nn

from ...errors import ConfigError
from ..neuron import NeuronConfig
from .cnn import VGG11_CHANNELS, SpikingResNet, SpikingVGG
from .mlp import SpikingMLP
from .spikformer import Spikformer, SpikingSelfAttention

# Builders fix each zoo entry's defaults; every keyword stays overridable.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": SpikingMLP,
    "vgg-small": partial(SpikingVGG, channels=[32, 32, "A", 64, 64, "A"]),
    "vgg11": partial(SpikingVGG, input_shape=[3, 32, 32], channels=VGG11_CHANNELS),
    "resnet-small": partial(SpikingResNet, stem=32, channels=[32, 64], blocks=[1, 1],
                            fc_hidden=[]),
    "resnet19": partial(SpikingResNet, input_shape=[3, 32, 32], stem=128,
                        channels=[128, 256, 512], blocks=[3, 3, 2], fc_hidden=[256]),
    "spikformer": Spikformer,
}


# Adam's starting rate per entry (cosine-decayed by cf2neuro.train). The deep networks
# stall at 1e-2: resnet19 reached 27 % where 1e-3 gave 75 % on the same data and epochs;
# the small ones train well at 1e-2 (resnet-small: 97.5 % on digits, 100 epochs).
DEFAULT_LR = {"mlp": 1e-2, "vgg-small": 1e-2, "resnet-small": 1e-2, "vgg11": 1e-3,
              "resnet19": 1e-3, "spikformer": 1e-3}


def default_lr(name: str) -> float:
    """The learning rate that trains zoo entry `name` well (1e-3 for an unlisted one)."""
    return DEFAULT_LR.get(name, 1e-3)


def model_names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(MODELS)


def default_config(name: str) -> dict:
    """The complete default config of a registered model."""
    return _resolve(name, {})[1]


def build_model(name: str, config: dict | None = None) -> nn.Module:
    """Build model `name` from `config` (missing keys take their defaults)."""
    builder, cfg = _resolve(name, config or {})
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    try:
        model = builder(**kwargs)
    except ConfigError as e:  # say which model the architecture check was for
        raise ConfigError(f"model {name!r}: {e}") from None
    model.config = cfg
    return model


# Bytes per float32 parameter while training: the weight, its gradient and Adam's two moments.
TRAIN_BYTES_PER_PARAM = 16


def estimate_memory(name: str, config: dict | None = None, batch_size: int | None = None) -> dict:
    """What model `name` would take, counted without allocating it: built on the 'meta' device.

    {"parameters": count, "parameter_bytes": float32 weights, "activation_bytes": the
    outputs of every layer for one batch of `batch_size` (what autograd keeps for the
    backward pass; 0 without a batch size)}. A config `build_model` refuses raises
    the same ConfigError here.
    """
    import torch

    with torch.device("meta"):
        model = build_model(name, config)
        count = sum(p.numel() for p in model.parameters())
        activations = 0
        if batch_size:
            activations = _meta_activations(model, batch_size)
    return {"parameters": int(count), "parameter_bytes": 4 * int(count),
            "activation_bytes": 4 * int(activations)}


def _meta_activations(model: nn.Module, batch_size: int) -> int:
    """Elements the leaf modules output for one [T, B, *input_shape] batch (a meta forward)."""
    import torch

    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel()

    cfg = model.config
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        model(torch.empty(cfg["timesteps"], batch_size, *cfg["input_shape"]))
    except Exception:  # noqa: BLE001  (a layer meta tensors cannot run: count the weights only)
        return 0
    finally:
        for h in hooks:
            h.remove()
    return total


def _resolve(name: str, config: dict) -> tuple[Callable[..., nn.Module], dict]:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    builder = MODELS[name]
    cfg = dict(config)
    if cfg.pop("name", name) != name:
        raise ConfigError(f"config names model {config['name']!r} but build_model was asked "
                          f"for {name!r}; pass the config's own name or drop its 'name' key")
    params = inspect.signature(builder).parameters
    unknown = sorted(set(cfg) - set(params))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for model {name!r}; "
                          f"known options: {sorted(params)}")
    resolved = {k: _plain(cfg.get(k, p.default)) for k, p in params.items()}
    if resolved["neuron"] is None:
        resolved["neuron"] = {}
    elif isinstance(resolved["neuron"], NeuronConfig):
        resolved["neuron"] = resolved["neuron"].to_dict()
    _check_common(name, resolved)
    resolved["neuron"] = NeuronConfig.from_dict(resolved["neuron"]).to_dict()
    return builder, {"name": name, **resolved}


def _check_common(name: str, cfg: dict) -> None:
    shape = cfg["input_shape"]
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ConfigError(f"model {name!r}: input_shape must be a list of positive ints "
                          f"without T and B (e.g. [1, 8, 8]), got {shape!r}")
    for key in ("num_classes", "timesteps"):
        v = cfg[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"model {name!r}: {key} must be a positive int, got {v!r}")
    if not isinstance(cfg["neuron"], dict):
        raise ConfigError(f"model {name!r}: neuron must be a dict of CF neuron options, "
                          f"got {cfg['neuron']!r}")


def _plain(v):
    """Tuples become lists so the config is what a JSON round trip gives."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


__all__ = ["MODELS", "DEFAULT_LR", "build_model", "estimate_memory",
           "default_config", "default_lr", "model_names", "SpikingMLP", "SpikingVGG",
           "SpikingResNet", "Spikformer", "SpikingSelfAttention"]
