"""NAS-Bench-201's CIFAR network (Dong & Yang, ICLR 2020) as a torch module.

The same network as the graph IR of :func:`farm.zoo.nb201.build_nb201` and as NAS-Bench-201's
own ``TinyNetwork`` (``xautodl.models.cell_infers``): a 3×3 conv stem (C channels, no bias)
and BN; N cells at C, a ResNet basic block that halves the resolution and doubles the
channels, N cells at 2C, another, N cells at 4C; BN, ReLU, global average pool, linear
classifier. Every cell is the same 4-node DAG; node j sums one operation on each earlier node:

- ``nor_conv_3x3`` / ``nor_conv_1x1``: ReLU → Conv (no bias) → BN;
- ``avg_pool_3x3``: AvgPool 3×3, stride 1, padding 1, padding not counted;
- ``skip_connect``: the identity;
- ``none``: ``x * 0`` (NB201's Zero op multiplies, so the edge stays in the graph).

Every BN is affine and tracks running statistics, as in the benchmark's trained networks.
Weights keep torch's default initialization (what NAS-Bench-201 trained from and what the
zero-cost-proxy papers scored). ``options``: ``C`` (stem channels, default 16) and ``N``
(cells per stage, default 5); the benchmark's network is C=16, N=5.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from farm.errors import InputError
from farm.zoo.nb201 import parse_arch

__all__ = ["build", "NB201Network", "Cell", "DEFAULT_C", "DEFAULT_N"]

DEFAULT_C = 16
DEFAULT_N = 5


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class Zero(nn.Module):
    """NB201's ``none``: ``x * 0`` (keeps the edge, its shape and its gradient path)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3)
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1)
    raise ValueError(f"unknown NB201 operation {name!r}")  # parse_arch already rejects it


class Cell(nn.Module):
    """One NB201 cell (stride 1, C in and out): node j = Σ op(node i) over i < j."""

    def __init__(self, arch: str, c: int):
        super().__init__()
        self.nodes = parse_arch(arch)
        self.edges = nn.ModuleList(_op(op, c) for node in self.nodes for op, _ in node)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        k = 0
        for node in self.nodes:
            acc: torch.Tensor | None = None
            for _, src in node:
                y = self.edges[k](feats[src])
                k += 1
                acc = y if acc is None else acc + y
            assert acc is not None
            feats.append(acc)
        return feats[-1]


class ResidualReduction(nn.Module):
    """NB201's ``ResNetBasicblock`` between stages: ReLUConvBN 3×3/2 → ReLUConvBN 3×3, plus
    AvgPool 2×2/2 → Conv 1×1 (no BN) on the shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0),
                                        nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """(n, in_channels, s, s) → (n, num_classes) logits, for any s ≥ 4."""

    def __init__(self, arch: str, *, num_classes: int = 10, in_channels: int = 3, channels: int = DEFAULT_C,
                 cells_per_stage: int = DEFAULT_N):
        super().__init__()
        self.arch = arch
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(Cell(arch, c) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _int_option(options: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = options.get(key)
    if raw is None:
        return default
    try:
        v = int(str(raw))
    except ValueError:
        raise InputError(f"nb201 option {key}={raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise InputError(f"nb201 option {key}={v} must be between {lo} and {hi}")
    return v


def build(arch: str, options: dict[str, str], *, num_classes: int, in_channels: int, input_size: int) -> Any:
    """The NB201 network of cell ``arch`` for (n, in_channels, input_size, input_size) inputs.
    ``options``: ``C`` (default 16) and ``N`` (default 5); InputError for a bad cell or option."""
    unknown = sorted(set(options) - {"C", "N"})
    if unknown:
        raise InputError(f"nb201: unknown option(s) {', '.join(unknown)}; known: C (channels), N (cells per stage)")
    c = _int_option(options, "C", DEFAULT_C, 1, 1024)
    n = _int_option(options, "N", DEFAULT_N, 0, 64)
    if input_size < 4:
        raise InputError(f"nb201: input size {input_size} is too small (two stride-2 reductions need at least 4)")
    try:
        parse_arch(arch)
    except ValueError as err:
        raise InputError(str(err)) from None
    return NB201Network(arch, num_classes=num_classes, in_channels=in_channels, channels=c, cells_per_stage=n)
