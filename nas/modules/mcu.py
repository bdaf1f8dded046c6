"""The torch module of an MCU-space architecture (:mod:`farm.zoo.mcu_space`), layer for layer
the graph the space builds: stem, first depthwise-separable block, six stages of inverted
residual blocks with the architecture's kernels, expansions, depths and activations
(ReLU6 or h-swish), 1×1 head conv, global average pool, classifier.

Convolutions pad ``k // 2`` on each side (PyTorch's way); the graph pads TensorFlow's SAME,
which gives the same output sizes for these odd kernels, hence the same MACs. Exported to ONNX
(eval mode folds each BN into its conv) the module has the graph's MACs exactly and its
parameters up to the BN statistics the export folds away.

The module runs at the ``input_size`` it is given (it is convolutional down to a global
pool), with ``in_channels`` input channels and ``num_classes`` logits: the architecture's
resolution is what the graph (and the device) sees, as for the other spaces' modules, so
short training on 28×28 images stays cheap. Option ``resize=1`` resizes the input to the
architecture's resolution first (bilinear) — then an accuracy estimate sees the resolution
choice too, at the cost of running at up to 224×224.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from farm.errors import InputError
from farm.zoo.mcu_space import FIRST_CHANNELS, HEAD_CHANNELS, STAGES, STEM_CHANNELS, MCUArch, channels, parse_arch

__all__ = ["build", "MCUNet"]


def _act(name: str) -> nn.Module:
    return nn.ReLU6() if name == "relu6" else nn.Hardswish()


def _cba(cin: int, cout: int, k: int, stride: int = 1, *, act: str | None, groups: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class _Block(nn.Module):
    """Inverted residual: 1×1 expand + BN + act, k×k depthwise + BN + act, 1×1 project + BN."""

    def __init__(self, cin: int, cout: int, k: int, e: int, stride: int, act: str):
        super().__init__()
        mid = cin * e
        self.body = nn.Sequential(_cba(cin, mid, 1, act=act), _cba(mid, mid, k, stride, act=act, groups=mid),
                                  _cba(mid, cout, 1, act=None))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MCUNet(nn.Module):
    def __init__(self, arch: MCUArch, *, num_classes: int, in_channels: int, resize: bool = False):
        super().__init__()
        w = arch.width
        self.resolution = arch.resolution
        self.resize = resize
        stem, first = channels(STEM_CHANNELS, w), channels(FIRST_CHANNELS, w)
        layers: list[nn.Module] = [_cba(in_channels, stem, 3, 2, act="relu6"),
                                   _cba(stem, stem, 3, act="relu6", groups=stem), _cba(stem, first, 1, act=None)]
        cin = first
        for (c, s), (act, blocks) in zip(STAGES, arch.stages, strict=True):
            cout = channels(c, w)
            for j, (k, e) in enumerate(blocks):
                layers.append(_Block(cin, cout, k, e, s if j == 0 else 1, act))
                cin = cout
        head = channels(HEAD_CHANNELS, w)
        layers.append(_cba(cin, head, 1, act=arch.stages[-1][0]))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize and tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> Any:
    """``mcu:<spelling>`` → :class:`MCUNet`; option ``resize`` (``1``/``0``, default 0): resize
    the input to the architecture's resolution."""
    unknown = sorted(set(options) - {"resize"})
    if unknown:
        raise InputError(f"mcu: unknown option(s) {', '.join(unknown)} (known: resize)")
    resize = options.get("resize", "0").strip().lower()
    if resize not in ("0", "1", "true", "false"):
        raise InputError(f"mcu: resize={options['resize']!r}: expected 1 or 0")
    if num_classes < 1 or in_channels < 1 or input_size < 1:
        raise InputError(f"mcu: num_classes, in_channels and input_size must be >= 1 (got {num_classes}, "
                         f"{in_channels}, {input_size})")
    try:
        a = parse_arch(arch)
    except ValueError as err:
        raise InputError(str(err)) from None
    return MCUNet(a, num_classes=num_classes, in_channels=in_channels, resize=resize in ("1", "true"))
