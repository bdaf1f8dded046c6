"""ResNet-18 and ResNet-50 as graph IR (no torch), in torchvision's layout (He et al. 2016;
ResNet-50 as "v1.5", the stride on the bottleneck's 3×3 conv), ImageNet 224×224 by default.

Stem 7×7/2 conv + BN + ReLU, 3×3/2 max pool; four stages of 64/128/256/512 (×4 for the
bottleneck) with [2,2,2,2] basic blocks (ResNet-18) or [3,4,6,3] bottlenecks (ResNet-50); a
1×1 conv + BN projection where the shape changes; add then ReLU; global average pool, FC.

Published sizes (torchvision model pages, trainable parameters and GFLOPS = GMACs):
ResNet-18 11,689,512 / 1.81 (https://pytorch.org/vision/stable/models/generated/torchvision.models.resnet18.html),
ResNet-50 25,557,032 / 4.09 (…/torchvision.models.resnet50.html). Our ``params`` also counts
BN's running mean and variance (4 per channel, as the ONNX importer counts an exported model).
"""

from __future__ import annotations

from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph

__all__ = ["resnet", "resnet18", "resnet50", "RESNET_DEPTHS"]

# depth → (block kind, blocks per stage)
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3)),
}


def _cbr(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1, *, relu: bool = True) -> str:
    x = b.bn(f"{name}.bn", b.conv(f"{name}.conv", x, cout, k, stride))
    return b.relu(f"{name}.relu", x) if relu else x


def _block(b: IRBuilder, name: str, x: str, kind: str, width: int, stride: int) -> str:
    cin = b.shape(x)[1]
    if kind == "basic":
        cout = width
        y = _cbr(b, f"{name}.1", x, width, 3, stride)
        y = _cbr(b, f"{name}.2", y, width, 3, relu=False)
    else:
        cout = width * 4
        y = _cbr(b, f"{name}.1", x, width, 1)
        y = _cbr(b, f"{name}.2", y, width, 3, stride)
        y = _cbr(b, f"{name}.3", y, cout, 1, relu=False)
    short = x if stride == 1 and cin == cout else _cbr(b, f"{name}.down", x, cout, 1, stride, relu=False)
    return b.relu(f"{name}.relu", b.add(f"{name}.add", y, short))


def resnet(depth: int = 18, resolution: int = 224, classes: int = 1000, *, dtype: str = "float32",
           name: str | None = None) -> Graph:
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"ResNet depth {depth}: known depths are {', '.join(map(str, RESNET_DEPTHS))}")
    if resolution < 32 or classes < 1:
        raise ValueError(f"ResNet-{depth}: resolution must be >= 32 and classes >= 1")
    kind, blocks = RESNET_DEPTHS[depth]
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x = _cbr(b, "stem", "input", 64, 7, 2)
    x = b.maxpool("stem.pool", x, 3, 2, 1)
    for stage, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True), start=1):
        for i in range(n):
            x = _block(b, f"layer{stage}.{i}", x, kind, width, 2 if i == 0 and stage > 1 else 1)
    x = b.gemm("fc", b.flatten("flatten", b.global_avgpool("gap", x)), classes)
    return b.build(name or f"resnet{depth}_{resolution}", x)


def resnet18(resolution: int = 224, classes: int = 1000, *, dtype: str = "float32") -> Graph:
    return resnet(18, resolution, classes, dtype=dtype)


def resnet50(resolution: int = 224, classes: int = 1000, *, dtype: str = "float32") -> Graph:
    return resnet(50, resolution, classes, dtype=dtype)
