"""Spikformer of CF neurons (Zhou et al. 2023, "Spikformer: When Spiking
Neural Network Meets Transformer", ICLR).

    SPS:    [conv3x3-BN-CF (-> 2x2 pool)] per stage, then x + CF(BN(conv3x3(x)))
            (the relative position embedding); H·W positions become N tokens
    block:  x = x + SSA(x);  x = x + MLP(x)            (L = depth blocks)
    SSA:    Q, K, V = CF(BN(Linear(x)));  CF_attn(Q·Kᵀ·V·s);  CF(BN(Linear(.)))
    MLP:    CF(BN(Linear(CF(BN(Linear(x))))))
    head:   mean over tokens -> Linear readout           [T, B, num_classes]

Tokens are [T, B, N, D]. Spikformer's 1x1 Conv1d + BN1d over [T·B, D, N] is
written as Linear + BN1d over [T·B·N, D]: the same map and the same batch
statistics, in node types the graph IR has. Differences from the paper,
both configurable: pooling defaults to average (`pool="avg"`; the paper
max-pools, which keeps a -1 spike only if all four are -1), and the linear
layers have no bias (each is followed by BN, whose shift replaces it).

Spikformer-4-384 on CIFAR (9.32M parameters in the paper) is
`embed_dim=384, depth=4, heads=12, mlp_ratio=4, patch_channels=[48, 96, 192],
patch_pools=2, input_shape=[3, 32, 32]`: 9.31M here (no linear biases).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...dynamics import spiking_attention
from ...errors import ConfigError
from ..layers import SeqToANN
from ..neuron import CFNeuron
from .cnn import conv_bn, image_shape
from .mlp import check_widths

POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


class Tokenwise(nn.Module):
    """Apply stateless modules to tokens [T, B, N, D] with T·B·N folded into the batch."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.module = modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x.flatten(0, 2))
        return y.unflatten(0, (x.shape[0], x.shape[1], x.shape[2]))


def linear_bn(d_in: int, d_out: int) -> Tokenwise:
    return Tokenwise(nn.Linear(d_in, d_out, bias=False), nn.BatchNorm1d(d_out))


class SpikingSelfAttention(nn.Module):
    """The attention product Q·Kᵀ·V·s per head, without softmax.

    Inputs are spike tensors [T, B, N, D] (D = heads·d); output [T, B, N, D].
    Parameter-free and kept in its own class so a tracer can take it as one
    `Attention` node.
    """

    def __init__(self, heads: int, scale: float):
        super().__init__()
        self.heads = heads
        self.scale = scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return spiking_attention(q, k, v, self.heads, self.scale)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale}"


class SSA(nn.Module):
    """Spiking self-attention sublayer: Q/K/V projections, attention, output projection."""

    def __init__(self, dim: int, heads: int, scale: float, attn_threshold: float,
                 timesteps: int, neuron: dict):
        super().__init__()
        self.q, self.q_cf = linear_bn(dim, dim), CFNeuron(timesteps, neuron)
        self.k, self.k_cf = linear_bn(dim, dim), CFNeuron(timesteps, neuron)
        self.v, self.v_cf = linear_bn(dim, dim), CFNeuron(timesteps, neuron)
        self.attn = SpikingSelfAttention(heads, scale)
        # The paper fires the attention map at half the usual threshold.
        self.attn_cf = CFNeuron(timesteps, neuron, threshold=attn_threshold)
        self.proj, self.proj_cf = linear_bn(dim, dim), CFNeuron(timesteps, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attn(self.q_cf(self.q(x)), self.k_cf(self.k(x)), self.v_cf(self.v(x)))
        return self.proj_cf(self.proj(self.attn_cf(y)))


class SpikformerBlock(nn.Module):
    """x = x + SSA(x); x = x + MLP(x), with plain `+` residual adds."""

    def __init__(self, dim: int, hidden: int, heads: int, scale: float, attn_threshold: float,
                 timesteps: int, neuron: dict):
        super().__init__()
        self.ssa = SSA(dim, heads, scale, attn_threshold, timesteps, neuron)
        self.mlp = nn.Sequential(linear_bn(dim, hidden), CFNeuron(timesteps, neuron),
                                 linear_bn(hidden, dim), CFNeuron(timesteps, neuron))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ssa(x)
        return x + self.mlp(x)


class SpikingPatchSplitting(nn.Module):
    """SPS: conv3x3-BN-CF stages (the last `pools` end in a 2x2 pool), then RPE."""

    def __init__(self, in_channels: int, channels: list[int], pools: int, pool: str,
                 rpe: bool, timesteps: int, neuron: dict):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for i, out in enumerate(channels):
            layers += [conv_bn(c, out), CFNeuron(timesteps, neuron)]
            if i >= len(channels) - pools:
                layers.append(SeqToANN(POOLS[pool](2)))
            c = out
        self.stages = nn.Sequential(*layers)
        self.rpe = nn.Sequential(conv_bn(c, c), CFNeuron(timesteps, neuron)) if rpe else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(x)
        if self.rpe is not None:  # fixed at build time, not data-dependent
            x = x + self.rpe(x)
        return x.flatten(3).transpose(2, 3)  # [T, B, D, H, W] -> [T, B, N, D]


class Spikformer(nn.Module):
    """Spikformer with CF neurons; small defaults (128k parameters) run on 8x8 digits.

    `patch_channels` are the SPS stage widths before the last stage, which
    always has `embed_dim` channels; `patch_pools` is how many of the last
    SPS stages end in a 2x2 pool (8x8 digits with 1 pool: 16 tokens).
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 timesteps: int = 4, neuron: dict | None = None, embed_dim: int = 64,
                 depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0,
                 patch_channels: Sequence[int] = (16, 32), patch_pools: int = 1,
                 pool: str = "avg", rpe: bool = True, attn_scale: float = 0.125,
                 attn_threshold: float = 0.5):
        super().__init__()
        c, h, w = image_shape(input_shape)
        stages = check_widths("patch_channels", patch_channels) + [embed_dim]
        for key, v in (("embed_dim", embed_dim), ("depth", depth), ("heads", heads)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{key} must be a positive int, got {v!r}")
        if embed_dim % heads:
            raise ConfigError(f"embed_dim ({embed_dim}) must be a multiple of heads ({heads})")
        if pool not in POOLS:
            raise ConfigError(f"pool must be one of {sorted(POOLS)}, got {pool!r}")
        if not isinstance(patch_pools, int) or not 0 <= patch_pools <= len(stages):
            raise ConfigError(f"patch_pools must be an int in [0, {len(stages)}] (one pool at "
                              f"most per SPS stage), got {patch_pools!r}")
        if h >> patch_pools < 1 or w >> patch_pools < 1:
            raise ConfigError(f"input_shape {list(input_shape)} is too small for "
                              f"{patch_pools} 2x2 pools; lower patch_pools or use a larger input")
        ok = isinstance(mlp_ratio, (int, float)) and not isinstance(mlp_ratio, bool)
        hidden = int(embed_dim * mlp_ratio) if ok else 0
        if hidden < 1:
            raise ConfigError(f"mlp_ratio must be > 0, got {mlp_ratio!r}")
        self.sps = SpikingPatchSplitting(c, stages, patch_pools, pool, rpe, timesteps, neuron)
        self.blocks = nn.Sequential(*[
            SpikformerBlock(embed_dim, hidden, heads, attn_scale, attn_threshold, timesteps,
                            neuron) for _ in range(depth)])
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.sps(x))
        return self.head(x.mean(2))  # global average over tokens: [T, B, D]
