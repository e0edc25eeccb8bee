"""Spiking CNNs of CF neurons: the VGG and ResNet families.

Convolutions are conv-BN-CF with BN per channel over (T, B, H, W), as the
direct-training SNN literature does (tdBN without its threshold scaling).
Spatial sizes are computed from `input_shape` when the model is built, so a
too-small input is a ConfigError here, not a shape error mid-forward, and
global pooling is a fixed-size AvgPool2d that the graph IR reads as a plain
average pool.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...errors import ConfigError
from ..layers import SeqToANN
from ..neuron import CFNeuron
from .mlp import check_dropout, check_widths

VGG11_CHANNELS = [64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"]
POOLS = {"A": nn.AvgPool2d, "M": nn.MaxPool2d}


def image_shape(input_shape) -> tuple[int, int, int]:
    """(C, H, W) from input_shape, or a ConfigError that says what is expected."""
    if len(input_shape) != 3:
        raise ConfigError(f"this model takes images: input_shape must be [C, H, W] "
                          f"(e.g. [1, 8, 8], [3, 32, 32], [2, 48, 48]), got {list(input_shape)}")
    return tuple(input_shape)


def scaled(widths, width: float) -> list[int]:
    """Channel counts times a width multiplier, at least 1 each."""
    return [max(1, round(w * width)) for w in widths]


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> SeqToANN:
    # No conv bias: the BN that follows has its own.
    return SeqToANN(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                    nn.BatchNorm2d(c_out))


def classifier(features: int, hidden: list[int], num_classes: int, timesteps: int,
               neuron: dict, dropout: float) -> list[nn.Module]:
    """([Dropout] -> Linear -> CF)* -> [Dropout] -> Linear readout, on [T, B, F]."""
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [*drop, nn.Linear(features, h), CFNeuron(timesteps, neuron)]
        drop = [nn.Dropout(dropout)] if dropout > 0 else []
        features = h
    return layers + [*drop, nn.Linear(features, num_classes)]


class SpikingVGG(nn.Module):
    """Spiking VGG: conv3x3-BN-CF layers, 2x2 pooling of spikes, FC classifier.

    `channels` is a VGG config list: an int is a conv3x3-BN-CF layer of that
    many channels, "A" a 2x2 average pool, "M" a 2x2 max pool (average
    pooling suits signed spikes: a max pool keeps a -1 only if all are -1).

    - `vgg-small` (default): [32, 32, A, 64, 64, A] + Linear readout, for 8x8
      digits (67.8k parameters).
    - `vgg11`: VGG-11 (Simonyan & Zisserman 2015, config "A") as used by
      direct-training SNN work: 8 conv layers, 5 pools, flatten, Linear
      readout: 9.23M parameters on [3, 32, 32] (9.22M convolutions).
      `fc_hidden=[4096, 4096], dropout=0.5` gives the classic 3-FC head,
      28.1M. On DVS [2, 48, 48] the flatten is 512·1·1; on [2, 128, 128] it
      is 512·4·4. TET's "VGGSNN" (Deng et al. 2022) for CIFAR10-DVS is
      channels=[64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"].
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 timesteps: int = 4, neuron: dict | None = None,
                 channels: Sequence = (32, 32, "A", 64, 64, "A"), width: float = 1.0,
                 fc_hidden: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        c, h, w = image_shape(input_shape)
        check_width(width)
        check_dropout(dropout)
        fc_hidden = scaled(check_widths("fc_hidden", fc_hidden), width)
        items = list(channels) if isinstance(channels, (list, tuple)) else []
        pools = [x for x in items if isinstance(x, str)]
        convs = [x for x in items if not isinstance(x, str)]
        if not convs or not set(pools) <= set(POOLS):
            raise ConfigError(f"channels must be a list of positive ints (conv layers) and "
                              f"'A'/'M' (2x2 pools), got {channels!r}")
        check_widths("channels", convs)
        layers: list[nn.Module] = []
        for item in items:
            if isinstance(item, str):
                h, w = h // 2, w // 2
                if h < 1 or w < 1:
                    raise ConfigError(
                        f"input_shape {list(input_shape)} is too small for "
                        f"{len(pools)} 2x2 pools; use a larger input "
                        f"or fewer pools in channels")
                layers.append(SeqToANN(POOLS[item](2)))
            else:
                out = scaled([item], width)[0]
                layers += [conv_bn(c, out), CFNeuron(timesteps, neuron)]
                c = out
        layers.append(nn.Flatten(2))
        layers += classifier(c * h * w, fc_hidden, num_classes, timesteps, neuron, dropout)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class BasicBlock(nn.Module):
    """cf(bn(conv(cf(bn(conv(x))))) + shortcut(x)): the add is before the neuron.

    The shortcut is conv1x1-BN when the shape changes, else the identity.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, timesteps: int, neuron: dict):
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, 3, stride)
        self.cf1 = CFNeuron(timesteps, neuron)
        self.conv2 = conv_bn(c_out, c_out, 3, 1)
        self.shortcut = (conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out
                         else nn.Identity())
        self.cf2 = CFNeuron(timesteps, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cf2(self.conv2(self.cf1(self.conv1(x))) + self.shortcut(x))


class SpikingResNet(nn.Module):
    """Spiking ResNet: conv-BN-CF stem, stages of BasicBlocks, global average pool, FC.

    Every stage after the first halves H and W (stride-2 first block).

    - `resnet-small` (default): stem 32, stages [32, 64] x [1, 1] blocks,
      Linear readout, for 8x8 digits (77.3k parameters).
    - `resnet19`: ResNet-19 of Zheng et al. 2021 (tdBN, AAAI): stem 128,
      stages 128/256/512 with 3/3/2 blocks, average pool, FC-256, readout.
      12.70M parameters on [3, 32, 32] with 10 classes (the paper reports
      12.63M; 0.5 % apart, within conventions on BN and shortcuts).
    """

    def __init__(self, *, input_shape: Sequence[int] = (1, 8, 8), num_classes: int = 10,
                 timesteps: int = 4, neuron: dict | None = None, stem: int = 32,
                 channels: Sequence[int] = (32, 64), blocks: Sequence[int] = (1, 1),
                 width: float = 1.0, fc_hidden: Sequence[int] = (), dropout: float = 0.0):
        super().__init__()
        c, h, w = image_shape(input_shape)
        check_width(width)
        check_dropout(dropout)
        channels = scaled(check_widths("channels", channels, allow_empty=False), width)
        blocks = check_widths("blocks", blocks, allow_empty=False)
        fc_hidden = scaled(check_widths("fc_hidden", fc_hidden), width)
        if len(blocks) != len(channels):
            raise ConfigError(f"blocks ({blocks}) needs one count per stage "
                              f"of channels ({channels})")
        if not isinstance(stem, int) or stem < 1:
            raise ConfigError(f"stem must be a positive int, got {stem!r}")
        stem = max(1, round(stem * width))
        layers: list[nn.Module] = [conv_bn(c, stem), CFNeuron(timesteps, neuron)]
        c = stem
        for i, (out, n) in enumerate(zip(channels, blocks)):
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(BasicBlock(c, out, stride, timesteps, neuron))
                if stride == 2:  # conv3x3, padding 1, stride 2
                    h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
                c = out
        layers += [SeqToANN(nn.AvgPool2d((h, w))), nn.Flatten(2)]
        layers += classifier(c, fc_hidden, num_classes, timesteps, neuron, dropout)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def check_width(width) -> None:
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not width > 0:
        raise ConfigError(f"width multiplier must be > 0, got {width!r}")
