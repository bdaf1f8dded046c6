"""The torch module of a MobileNetV3 / Once-for-All architecture (:mod:`farm.zoo.mbv3`), layer
for layer the graph the space builds: OFA's ``MobileNetV3`` sub-network with the
architecture's depths, kernels, expand ratios and width (3×3/2 stem + h-swish, the e=1 first
block, five stages of MBConv blocks with squeeze-excite where OFA has it, final 1×1 expand,
global average pool, 1×1 feature mix + h-swish, classifier).

Squeeze-excite uses ``AdaptiveAvgPool2d(1)`` and ``nn.Hardsigmoid`` and the activations
``nn.Hardswish`` / ``nn.ReLU``: the same functions as OFA's ``x.mean(…)``, ``Hsigmoid`` and
``Hswish``, and what ``torch.onnx.export`` writes as the graph's ``GlobalAveragePool``,
``HardSigmoid`` and ``HardSwish``. Exported at the architecture's resolution, the module has
the graph's MACs exactly, and its parameters too where BN is kept (eval-mode export folds
each BN into its conv: 4 numbers per channel become a bias of 1).

The module runs at the ``input_size`` it is given (any size from 32 up: the network is
convolutional down to a global pool), with ``in_channels`` input channels and
``num_classes`` logits; the architecture's resolution is what the graph (and the device)
sees, not a resize inside the module — so short training on a 28×28 dataset stays cheap.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from farm.errors import InputError
from farm.zoo.mbv3 import SE_REDUCTION, Block, blocks, parse_arch
from farm.zoo.mobilenet import make_divisible

__all__ = ["build", "MobileNetV3", "MBConv", "SqueezeExcite"]

_MIN_INPUT = 32


def _act(name: str) -> nn.Module:
    return nn.ReLU() if name == "relu" else nn.Hardswish()


def _cba(cin: int, cout: int, k: int, stride: int = 1, *, act: str | None, groups: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """OFA's ``SEModule``: pool, 1×1 conv to ``make_divisible(C/4, 8)`` + ReLU, 1×1 conv back +
    hard-sigmoid, times the input."""

    def __init__(self, c: int):
        super().__init__()
        mid = make_divisible(c // SE_REDUCTION, 8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, mid, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(mid, c, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """1×1 expand + BN + act (absent for e=1), k×k depthwise + BN + act, squeeze-excite,
    1×1 project + BN; a residual add where the stride is 1 and the channels match."""

    def __init__(self, blk: Block):
        super().__init__()
        layers: list[nn.Module] = []
        if blk.e != 1:
            layers.append(_cba(blk.cin, blk.mid, 1, act=blk.act))
        layers.append(_cba(blk.mid, blk.mid, blk.k, blk.stride, act=blk.act, groups=blk.mid))
        if blk.se:
            layers.append(SqueezeExcite(blk.mid))
        layers.append(_cba(blk.mid, blk.cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = blk.stride == 1 and blk.cin == blk.cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    """The sub-network of ``blocks`` (:func:`farm.zoo.mbv3.blocks`); the stem reads
    ``in_channels``."""

    def __init__(self, bs: tuple[Block, ...], *, in_channels: int = 3):
        super().__init__()
        stem, *body, head = bs
        self.stem = _cba(in_channels, stem.cout, stem.k, stem.stride, act=stem.act)
        self.blocks = nn.Sequential(*(MBConv(b) for b in body))
        self.final_expand = _cba(head.cin, head.mid, 1, act=head.act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_mix = nn.Sequential(nn.Conv2d(head.mid, head.mix, 1, bias=False), _act(head.act))
        self.classifier = nn.Linear(head.mix, head.cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.feature_mix(self.pool(x)), 1))


def build(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> Any:
    """``mbv3:<spelling>`` → :class:`MobileNetV3` for (n, in_channels, input_size, input_size) inputs."""
    if options:
        raise InputError(f"mbv3: takes no options (got {', '.join(options)})")
    if num_classes < 1 or in_channels < 1:
        raise InputError(f"mbv3: num_classes and in_channels must be >= 1 (got {num_classes}, {in_channels})")
    try:
        parse_arch(arch)
        bs = blocks(arch, num_classes)
    except ValueError as err:
        raise InputError(str(err)) from None
    if input_size < _MIN_INPUT:
        raise InputError(f"mbv3: input_size must be at least {_MIN_INPUT} (five stride-2 steps), got {input_size}")
    return MobileNetV3(bs, in_channels=in_channels)
