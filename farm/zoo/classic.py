"""SqueezeNet 1.1, GoogLeNet (Inception v1) and VGG-16 as graph IR (no torch), in
torchvision's layout, ImageNet 224×224 by default — networks with many published device
latencies (see ``../shared/data/published-latency``).

Published sizes (torchvision model pages, https://pytorch.org/vision/stable/models/generated/
``torchvision.models.<name>.html``: trainable parameters and GFLOPS = GMACs):
``squeezenet1_1`` 1,235,496 / 0.35; ``googlenet`` 6,624,904 / 1.50 (without the auxiliary
heads, which only run in training); ``vgg16`` 138,357,544 / 15.47.

- **SqueezeNet 1.1** (Iandola et al. 2016; torchvision ``squeezenet1_1``): 3×3/2 conv 64 (no
  padding), 3×3/2 max pools in ceil mode, 8 Fire modules (1×1 squeeze + ReLU, then 1×1 and
  3×3 expand + ReLU, concatenated), 1×1 conv classifier + ReLU, global average pool.
- **GoogLeNet** (Szegedy et al. 2015; torchvision ``googlenet``, like TF-slim's
  ``inception_v1``): every conv is conv (no bias) + BN + ReLU; 9 inception modules of four
  branches (1×1; 1×1→3×3; 1×1→3×3 — both torchvision and TF-slim use 3×3 where the paper
  has 5×5; 3×3/1 max pool→1×1) concatenated; no LRN; global pool, FC.
- **VGG-16** (Simonyan & Zisserman 2015, configuration D; torchvision ``vgg16``): 13 3×3
  convs with bias + ReLU in 5 blocks separated by 2×2 max pools, then FC 4096, 4096, classes
  with ReLU. At 224 the adaptive 7×7 pool is the identity and is left out; at another
  resolution the first FC takes ``512·(r/32)²`` inputs.
"""

from __future__ import annotations

from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph

__all__ = ["squeezenet1_1", "googlenet", "vgg16", "VGG16_CFG", "GOOGLENET_MODULES", "SQUEEZENET_FIRES"]

# Fire modules of SqueezeNet 1.1: (squeeze, expand 1×1, expand 3×3); "M" is a max pool.
SQUEEZENET_FIRES: tuple[tuple[int, int, int] | str, ...] = (
    (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M",
    (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256),
)
# Inception modules: (1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool proj); "M" a max pool.
GOOGLENET_MODULES: tuple[tuple[int, int, int, int, int, int] | str, ...] = (
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "M3",
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "M2",
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
)
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                    512, 512, 512, "M")


def _check(net: str, resolution: int, classes: int, minimum: int = 32) -> None:
    if resolution < minimum or classes < 1:
        raise ValueError(f"{net}: resolution must be >= {minimum} and classes >= 1 "
                         f"(got {resolution}, {classes})")


def squeezenet1_1(resolution: int = 224, classes: int = 1000, *, dtype: str = "float32") -> Graph:
    _check("SqueezeNet 1.1", resolution, classes, 64)
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x = b.relu("conv1.relu", b.conv("conv1", "input", 64, 3, 2, bias=True, pad=0))
    x = b.maxpool("pool1", x, 3, 2, ceil_mode=True)
    fire, pool = 1, 1
    for spec in SQUEEZENET_FIRES:
        if isinstance(spec, str):
            pool += 1
            x = b.maxpool(f"pool{pool}", x, 3, 2, ceil_mode=True)
            continue
        fire += 1
        s, e1, e3 = spec
        n = f"fire{fire}"
        sq = b.relu(f"{n}.squeeze.relu", b.conv(f"{n}.squeeze", x, s, 1, bias=True))
        a = b.relu(f"{n}.expand1x1.relu", b.conv(f"{n}.expand1x1", sq, e1, 1, bias=True))
        c = b.relu(f"{n}.expand3x3.relu", b.conv(f"{n}.expand3x3", sq, e3, 3, bias=True))
        x = b.concat(f"{n}.concat", [a, c])
    x = b.relu("classifier.relu", b.conv("classifier.conv", x, classes, 1, bias=True))
    x = b.flatten("flatten", b.global_avgpool("gap", x))
    return b.build(f"squeezenet1_1_{resolution}", x)


def _basic(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1) -> str:
    return b.relu(f"{name}.relu", b.bn(f"{name}.bn", b.conv(f"{name}.conv", x, cout, k, stride)))


def googlenet(resolution: int = 224, classes: int = 1000, *, dtype: str = "float32") -> Graph:
    _check("GoogLeNet", resolution, classes, 64)
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x = _basic(b, "conv1", "input", 64, 7, 2)
    x = b.maxpool("pool1", x, 3, 2, ceil_mode=True)
    x = _basic(b, "conv2", x, 64, 1)
    x = _basic(b, "conv3", x, 192, 3)
    x = b.maxpool("pool2", x, 3, 2, ceil_mode=True)
    names = iter(("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"))
    pool = 2
    for spec in GOOGLENET_MODULES:
        if isinstance(spec, str):
            pool += 1
            k = int(spec[1])
            x = b.maxpool(f"pool{pool}", x, k, 2, ceil_mode=True)
            continue
        n = f"inception{next(names)}"
        c1, r3, c3, r5, c5, pp = spec
        br1 = _basic(b, f"{n}.b1", x, c1, 1)
        br2 = _basic(b, f"{n}.b2.3x3", _basic(b, f"{n}.b2.reduce", x, r3, 1), c3, 3)
        br3 = _basic(b, f"{n}.b3.3x3", _basic(b, f"{n}.b3.reduce", x, r5, 1), c5, 3)
        br4 = _basic(b, f"{n}.b4.proj", b.maxpool(f"{n}.b4.pool", x, 3, 1, 1, ceil_mode=True), pp, 1)
        x = b.concat(f"{n}.concat", [br1, br2, br3, br4])
    x = b.gemm("fc", b.flatten("flatten", b.global_avgpool("gap", x)), classes)
    return b.build(f"googlenet_{resolution}", x)


def vgg16(resolution: int = 224, classes: int = 1000, *, dtype: str = "float32") -> Graph:
    _check("VGG-16", resolution, classes)
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x, block, i = "input", 1, 0
    for v in VGG16_CFG:
        if v == "M":
            x = b.maxpool(f"block{block}.pool", x, 2, 2)
            block, i = block + 1, 0
            continue
        i += 1
        x = b.relu(f"block{block}.conv{i}.relu", b.conv(f"block{block}.conv{i}", x, int(v), 3, bias=True))
    x = b.flatten("flatten", x)
    x = b.relu("fc1.relu", b.gemm("fc1", x, 4096))
    x = b.relu("fc2.relu", b.gemm("fc2", x, 4096))
    return b.build(f"vgg16_{resolution}", b.gemm("fc3", x, classes))
