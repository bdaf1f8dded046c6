"""The torch module of an FBNet architecture (:mod:`farm.zoo.fbnet`), layer for layer the graph
the space builds: HW-NAS-Bench's CIFAR-100 FBNet network (3×3 conv stem to 16 + BN + ReLU,
22 searched layers in 7 stages, 1×1 conv to 1504 + BN + ReLU, global average pool,
classifier).

A layer's op ``kK_eE[_g2]`` is an inverted-residual block: 1×1 conv to E·C_in (``groups=2``
for ``_g2``) + BN + ReLU, a channel shuffle after it for ``_g2`` (FBNet's ``IRFBlock``: view
as (n, 2, C/2, h, w), swap the two group axes, view back — ``Reshape``, ``Transpose``,
``Reshape`` in ONNX, as the graph has it), K×K depthwise conv with the layer's stride + BN +
ReLU, 1×1 conv to C_out (``groups=2`` for ``_g2``) + BN, and a residual add where the stride is
1 and the channels match. ``skip`` is the identity, or 1×1 conv + BN + ReLU where the layer
changes channels or stride. Convs have no bias and pad ``k // 2``.

Exported at 32×32 with BN kept, the module has the graph's MACs and parameters exactly (eval-
mode export folds each BN into its conv). It runs at any ``input_size`` from 8 up (three
stride-2 layers), with ``in_channels`` input channels and ``num_classes`` logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from farm.errors import InputError
from farm.zoo.fbnet import HEAD_CHANNELS, LAYERS, OPS, STEM_CHANNELS, parse_arch

__all__ = ["build", "FBNet", "FBNetLayer"]

_MIN_INPUT = 8


def _cbr(cin: int, cout: int, k: int, stride: int = 1, *, groups: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


class FBNetLayer(nn.Module):
    """One searched layer: ``op`` (an :data:`~farm.zoo.fbnet.OPS` name) from ``cin`` to ``cout``."""

    def __init__(self, op: str, cin: int, cout: int, stride: int):
        super().__init__()
        self.residual = stride == 1 and cin == cout
        if op == "skip":
            self.body: nn.Module = nn.Identity() if self.residual else _cbr(cin, cout, 1, stride)
            self.residual = False  # the identity is the layer itself
            return
        parts = op.split("_")
        k, e, g = int(parts[0][1:]), int(parts[1][1:]), 2 if len(parts) == 3 else 1
        mid = cin * e
        layers: list[nn.Module] = [_cbr(cin, mid, 1, groups=g)]
        if g > 1:
            layers.append(ChannelShuffle(g))
        layers += [_cbr(mid, mid, k, stride, groups=mid), _cbr(mid, cout, 1, groups=g, relu=False)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class FBNet(nn.Module):
    def __init__(self, ops: tuple[int, ...], *, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        self.stem = _cbr(in_channels, STEM_CHANNELS, 3)
        self.layers = nn.Sequential(*(FBNetLayer(OPS[op], cin, cout, stride)
                                      for op, (cin, cout, stride) in zip(ops, LAYERS, strict=True)))
        self.head = _cbr(LAYERS[-1][1], HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.layers(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def build(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> Any:
    """``fbnet:<arch or op_idx>`` → :class:`FBNet` for (n, in_channels, input_size, input_size) inputs."""
    if options:
        raise InputError(f"fbnet: takes no options (got {', '.join(options)})")
    if num_classes < 1 or in_channels < 1:
        raise InputError(f"fbnet: num_classes and in_channels must be >= 1 (got {num_classes}, {in_channels})")
    try:
        ops = parse_arch(arch)
    except ValueError as err:
        raise InputError(str(err)) from None
    if input_size < _MIN_INPUT:
        raise InputError(f"fbnet: input_size must be at least {_MIN_INPUT} (three stride-2 layers), got {input_size}")
    return FBNet(ops, num_classes=num_classes, in_channels=in_channels)
