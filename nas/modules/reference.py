"""The reference networks ``hwfarm train`` knows by name, as plain torch modules.

Every builder takes ``(arch, options, *, num_classes, in_channels, input_size)`` (see
:mod:`nas.modules`) and returns an ``nn.Module`` mapping (n, in_channels, s, s) to
(n, num_classes) logits. Options come from the spec (``vgg:depth=16,width=0.25``); an unknown
key or a bad value is an :class:`~farm.errors.InputError` naming the option.

- ``mobilenet_v2`` — Sandler et al. 2018 (Table 2): a 3×3 stem, 17 inverted residual blocks
  (1×1 expand with ReLU6, 3×3 depthwise with ReLU6, linear 1×1 projection; a residual add
  when stride 1 and channels match), a 1×1 conv to 1280, global average pool, a linear layer.
  Options: ``width`` (multiplier α, default 1; channels rounded to multiples of 8, and the
  last conv keeps 1280 unless α > 1), ``strides`` (``imagenet``: stem and four stages at
  stride 2, /32; ``cifar``: stem and the 24-channel stage at stride 1, /8, the usual CIFAR
  adaptation for 32×32 inputs; ``auto``, the default: ``imagenet`` from a 96-pixel input up,
  else ``cifar``).
- ``resnet8`` — MLPerf Tiny's image-classification ResNet (see :mod:`farm.zoo.mcu`): a 3×3
  conv to 16, three stacks of two 3×3 convs (16, 32, 64; stride 2 and a 1×1/2 shortcut conv
  without BN at stacks 2-3), add then ReLU, global average pool, a linear layer. Biases on
  every conv as in the Keras reference. Option ``filters`` (16; a later revision used 26).
- ``resnet18`` — He et al. 2016, BasicBlocks [2, 2, 2, 2] at 64-128-256-512 (1×1 conv + BN
  shortcuts where the shape changes). Options ``width`` (multiplier, default 1) and
  ``strides``: ``cifar`` (a 3×3 stride-1 stem, no max-pool: the CIFAR variant), ``imagenet``
  (7×7/2 stem and a 3×3/2 max-pool), ``auto`` (the default: ``imagenet`` from 96 pixels up).
- ``vgg`` — Simonyan & Zisserman 2015 with BN after every conv (configurations A/B/D/E:
  ``depth`` 11, 13, 16 or 19, default 16), ``width`` multiplier (default 1, 64-512 filters).
  A stage's 2×2 max-pool is skipped once the map is 1×1, so small inputs work. The classifier
  is sized for small inputs (the CIFAR habit): global average pool, one hidden layer of
  512·width with ReLU, then the output layer — not the 4096-wide ImageNet head.
- ``ds_cnn`` — MLPerf Tiny's keyword-spotting DS-CNN adapted to square images: a first conv
  (k×k instead of the 10×4 meant for a 49×10 MFCC map) + BN + ReLU, then ``blocks`` × (3×3
  depthwise + BN + ReLU, 1×1 conv + BN + ReLU), global average pool, a linear layer. Options
  ``filters`` (64), ``blocks`` (4), ``kernel`` (3: the first conv's size), ``stride`` (the
  first conv's: 1 or 2; ``auto``, the default, is 2 from a 16-pixel input up, else 1).

Made to be pruned (torch-pruning's dependency graph) and exported: only ``nn.Conv2d``,
``nn.BatchNorm2d``, ``nn.Linear``, activations, pools, ``nn.Flatten`` and :class:`Add` (a
residual add as a module, so quantization tools can see it); no functional reshapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from farm.errors import InputError

__all__ = ["mobilenet_v2", "resnet8", "resnet18", "vgg", "ds_cnn", "Add", "OPTIONS"]


# ------------------------------------------------------------------ options


def _float_in(lo: float, hi: float) -> Callable[[str], Any]:
    def parse(v: str) -> float:
        x = float(v)
        if not lo < x <= hi:
            raise ValueError
        return x

    parse.__doc__ = f"a number in ({lo:g}, {hi:g}]"
    return parse


def _int_in(lo: int, hi: int) -> Callable[[str], Any]:
    def parse(v: str) -> int:
        x = int(v)
        if not lo <= x <= hi:
            raise ValueError
        return x

    parse.__doc__ = f"an integer from {lo} to {hi}"
    return parse


def _one_of(*choices: str) -> Callable[[str], Any]:
    def parse(v: str) -> Any:
        if v not in choices:
            raise ValueError
        return int(v) if v.isdigit() else v

    parse.__doc__ = "one of " + ", ".join(choices)
    return parse


_WIDTH = _float_in(0.0, 4.0)
_STRIDES = _one_of("auto", "imagenet", "cifar")

# net -> option -> (parser, default). The parser's docstring says what it accepts.
OPTIONS: dict[str, dict[str, tuple[Callable[[str], Any], str]]] = {
    "mobilenet_v2": {"width": (_WIDTH, "1.0"), "strides": (_STRIDES, "auto")},
    "resnet8": {"filters": (_int_in(1, 1024), "16")},
    "resnet18": {"width": (_WIDTH, "1.0"), "strides": (_STRIDES, "auto")},
    "vgg": {"depth": (_one_of("11", "13", "16", "19"), "16"), "width": (_WIDTH, "1.0")},
    "ds_cnn": {"filters": (_int_in(1, 4096), "64"), "blocks": (_int_in(1, 16), "4"),
               "kernel": (_int_in(1, 15), "3"), "stride": (_one_of("auto", "1", "2"), "auto")},
}


def _options(net: str, options: Mapping[str, str], *, num_classes: int, in_channels: int,
             input_size: int) -> dict[str, Any]:
    """Parsed options with defaults filled in; InputError naming a bad option or shape."""
    schema = OPTIONS[net]
    for k in options:
        if k not in schema:
            raise InputError(f"{net}: unknown option {k!r}; known: {', '.join(schema)}")
    out: dict[str, Any] = {}
    for k, (parse, default) in schema.items():
        v = options.get(k, default)
        try:
            out[k] = parse(v)
        except ValueError:
            raise InputError(f"{net}: option {k}={v!r}: expected {parse.__doc__}") from None
    for what, n in (("num_classes", num_classes), ("in_channels", in_channels), ("input_size", input_size)):
        if not isinstance(n, int) or n < 1:
            raise InputError(f"{net}: {what} must be a positive integer, not {n!r}")
    return out


def _large(strides: str, input_size: int) -> bool:
    """Whether ``strides`` (imagenet | cifar | auto) means the ImageNet schedule at this input."""
    return strides == "imagenet" or (strides == "auto" and input_size >= 96)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to a multiple of ``divisor`` (at least ``divisor``), never 10% below ``v``
    (the TF models' rule, as :func:`farm.zoo.mobilenet.make_divisible`)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# ------------------------------------------------------------------ building blocks


class Add(nn.Module):
    """``a + b`` as a module: the residual add, visible to tracing, pruning and quantization."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def _cbr(cin: int, cout: int, k: int, stride: int = 1, *, groups: int = 1, act: type[nn.Module] | None = nn.ReLU,
         bias: bool = False) -> nn.Sequential:
    """Conv (same padding) + BN (+ activation)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=bias),
                               nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _head(cin: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


class _Net(nn.Module):
    """features → head, the shape every reference net has (names stable for state dicts)."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# ------------------------------------------------------------------ MobileNetV2

# (expansion t, output channels c, repeats n, first stride s), Sandler et al. Table 2.
_MBV2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """1×1 expand + ReLU6 (skipped at t=1), 3×3 depthwise + ReLU6, linear 1×1 projection; the
    input is added back when the block keeps shape."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = [] if t == 1 else [_cbr(cin, hidden, 1, act=nn.ReLU6)]
        layers += [_cbr(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), _cbr(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.add = Add() if stride == 1 and cin == cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.add(x, y) if self.add is not None else y


def mobilenet_v2(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int,
                 input_size: int) -> nn.Module:
    o = _options("mobilenet_v2", options, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    w, large = o["width"], _large(o["strides"], input_size)
    c = make_divisible(32 * w)
    layers: list[nn.Module] = [_cbr(in_channels, c, 3, 2 if large else 1, act=nn.ReLU6)]
    for i, (t, ch, n, s) in enumerate(_MBV2):
        cout = make_divisible(ch * w)
        if not large and i == 1:
            s = 1  # the CIFAR adaptation: /8 overall instead of /32
        for r in range(n):
            layers.append(InvertedResidual(c, cout, s if r == 0 else 1, t))
            c = cout
    last = make_divisible(1280 * max(1.0, w))
    layers.append(_cbr(c, last, 1, act=nn.ReLU6))
    return _Net(nn.Sequential(*layers), _head(last, num_classes))


# ------------------------------------------------------------------ ResNets


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN, a shortcut (identity, or a 1×1 conv where the shape changes), add, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, *, bias: bool = False, shortcut_bn: bool = True):
        super().__init__()
        self.conv1 = _cbr(cin, cout, 3, stride, bias=bias)
        self.conv2 = _cbr(cout, cout, 3, act=None, bias=bias)
        self.shortcut: nn.Module
        if stride != 1 or cin != cout:
            conv = nn.Conv2d(cin, cout, 1, stride, bias=bias or not shortcut_bn)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(cout)) if shortcut_bn else nn.Sequential(conv)
        else:
            self.shortcut = nn.Identity()
        self.add = Add()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.add(self.shortcut(x), self.conv2(self.conv1(x))))


def resnet8(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    o = _options("resnet8", options, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    f = o["filters"]
    layers: list[nn.Module] = [_cbr(in_channels, f, 3, bias=True)]
    c = f
    for i, mult in enumerate((1, 2, 4)):
        layers.append(BasicBlock(c, f * mult, 1 if i == 0 else 2, bias=True, shortcut_bn=False))
        c = f * mult
    return _Net(nn.Sequential(*layers), _head(c, num_classes))


def resnet18(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int,
             input_size: int) -> nn.Module:
    o = _options("resnet18", options, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    w = o["width"]
    c = make_divisible(64 * w)
    layers: list[nn.Module]
    if _large(o["strides"], input_size):
        layers = [_cbr(in_channels, c, 7, 2), nn.MaxPool2d(3, 2, padding=1)]
    else:
        layers = [_cbr(in_channels, c, 3)]
    for i, ch in enumerate((64, 128, 256, 512)):
        cout = make_divisible(ch * w)
        for r in range(2):
            layers.append(BasicBlock(c, cout, 2 if i > 0 and r == 0 else 1))
            c = cout
    return _Net(nn.Sequential(*layers), _head(c, num_classes))


# ------------------------------------------------------------------ VGG

# Simonyan & Zisserman Table 1 (configurations A, B, D, E): conv widths per stage.
_VGG = {11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
        13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
        16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
        19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)}


def vgg(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    o = _options("vgg", options, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    w = o["width"]
    layers: list[nn.Module] = []
    c, size = in_channels, input_size
    for stage in _VGG[o["depth"]]:
        for ch in stage:
            cout = make_divisible(ch * w)
            layers.append(_cbr(c, cout, 3))
            c = cout
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    hidden = make_divisible(512 * w)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))
    return _Net(nn.Sequential(*layers), head)


# ------------------------------------------------------------------ DS-CNN


def ds_cnn(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> nn.Module:
    o = _options("ds_cnn", options, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
    f, stride = o["filters"], o["stride"]
    if stride == "auto":
        stride = 2 if input_size >= 16 else 1
    layers: list[nn.Module] = [_cbr(in_channels, f, o["kernel"], stride, bias=True)]
    for _ in range(o["blocks"]):
        layers += [_cbr(f, f, 3, groups=f, bias=True), _cbr(f, f, 1, bias=True)]
    return _Net(nn.Sequential(*layers), _head(f, num_classes))
