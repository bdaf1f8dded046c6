"""MobileNetV1 and MobileNetV2 as graph IR (no torch), laid out as in TF-slim / Keras
Applications, whose ``.tflite`` files the published latencies were measured on.

- **MobileNetV1** (Howard et al. 2017, Table 1): 3×3/2 conv to 32·α, then 13 depthwise-
  separable blocks (3×3 depthwise + BN + ReLU6, 1×1 pointwise + BN + ReLU6), global average
  pool, classifier. Channels ``max(8, int(c·α))`` (TF-slim's ``min_depth=8``). Convs have no
  bias (BN follows) unless ``conv_bias=True`` (MLPerf Tiny's Keras VWW model has biases).
  1.0-224: 569 M mult-adds, 4.2 M parameters (paper, Table 8); Keras Applications' MobileNet
  1.0-224 counts 4,253,864 parameters with BN's 4 per channel.
- **MobileNetV2** (Sandler et al. 2018, Table 2): 3×3/2 stem to 32·α, 17 inverted residual
  blocks ``(t, c, n, s)``, 1×1 conv to 1280, global pool, classifier. Each block: 1×1 expand
  (skipped for t=1) + BN + ReLU6, 3×3 depthwise + BN + ReLU6, 1×1 project + BN (linear),
  residual add when stride 1 and channels match. Channels rounded to multiples of 8
  (``_make_divisible``); the last conv keeps 1280 for α ≤ 1. 1.0-224: 300 M MACs, 3.4 M
  parameters (paper, Table 3); torchvision's ``mobilenet_v2`` has 3,504,872 trainable
  parameters and 0.30 GFLOPS (https://pytorch.org/vision/stable/models/generated/torchvision.models.mobilenet_v2.html).

Padding is TensorFlow's SAME, so any resolution gives the TF output sizes. ReLU6 is an ONNX
``Clip`` (2 constant inputs each, counted as params like the importer counts an exported model).
"""

from __future__ import annotations

from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph

__all__ = ["mobilenet_v1", "mobilenet_v2", "make_divisible", "MBV1_BLOCKS", "MBV2_SETTINGS"]

# (output channels at α=1, stride) of the 13 depthwise-separable blocks.
MBV1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
# (expansion t, output channels c, repeats n, first stride s), Sandler et al. Table 2.
MBV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to the nearest multiple of ``divisor``, never more than 10% down (TF-slim/torchvision)."""
    m = min_value or divisor
    new = max(m, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def _alpha_str(alpha: float) -> str:
    """TF-slim's spelling: 1.0, 0.75, 0.5, 0.25, 1.4."""
    return f"{alpha:.1f}" if float(alpha).is_integer() else f"{alpha:g}"


def _check(alpha: float, resolution: int, classes: int) -> None:
    if not alpha > 0:
        raise ValueError(f"width multiplier alpha must be > 0, got {alpha}")
    if resolution < 32:
        raise ValueError(f"resolution must be at least 32 (five stride-2 stages), got {resolution}")
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")


def _conv_bn_relu6(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1, *,
                   depthwise: bool = False, bias: bool = False, act: bool = True, relu6: bool = True) -> str:
    if depthwise:
        x = b.dwconv(f"{name}.conv", x, k, stride, bias=bias, pad="same")
    else:
        x = b.conv(f"{name}.conv", x, cout, k, stride, bias=bias, pad="same")
    x = b.bn(f"{name}.bn", x)
    if not act:
        return x
    return b.relu6(f"{name}.relu6", x) if relu6 else b.relu(f"{name}.relu", x)


def _head(b: IRBuilder, x: str, classes: int, *, full_avgpool: bool = False) -> str:
    if full_avgpool:  # Keras AveragePooling2D(pool_size=x.shape[1:3]), as MLPerf Tiny's VWW model
        h, w = b.shape(x)[2:]
        x = b.avgpool("pool", x, (h, w), (h, w))
    else:
        x = b.global_avgpool("gap", x)
    return b.gemm("classifier", b.flatten("flatten", x), classes)


def mobilenet_v1(alpha: float = 1.0, resolution: int = 224, classes: int = 1000, *, dtype: str = "float32",
                 conv_bias: bool = False, activation: str = "relu6", full_avgpool: bool = False,
                 name: str | None = None) -> Graph:
    """MobileNetV1-α-resolution; ``dtype="int8"`` builds the int8 variant's graph.

    ``conv_bias``, ``activation="relu"`` and ``full_avgpool`` reproduce MLPerf Tiny's VWW
    variant (Keras convs with biases, plain ReLU, an average pool over the whole map)."""
    if activation not in ("relu6", "relu"):
        raise ValueError(f"activation must be 'relu6' or 'relu', got {activation!r}")
    r6 = activation == "relu6"
    _check(alpha, resolution, classes)

    def ch(c: int) -> int:
        return max(8, int(c * alpha))

    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x = _conv_bn_relu6(b, "conv0", "input", ch(32), 3, 2, bias=conv_bias, relu6=r6)
    for i, (c, s) in enumerate(MBV1_BLOCKS, start=1):
        x = _conv_bn_relu6(b, f"block{i}.dw", x, 0, 3, s, depthwise=True, bias=conv_bias, relu6=r6)
        x = _conv_bn_relu6(b, f"block{i}.pw", x, ch(c), 1, bias=conv_bias, relu6=r6)
    out = _head(b, x, classes, full_avgpool=full_avgpool)
    return b.build(name or f"mobilenet_v1_{_alpha_str(alpha)}_{resolution}", out)


def mobilenet_v2(alpha: float = 1.0, resolution: int = 224, classes: int = 1000, *, dtype: str = "float32",
                 name: str | None = None) -> Graph:
    """MobileNetV2-α-resolution; ``dtype="int8"`` builds the int8 variant's graph."""
    _check(alpha, resolution, classes)
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    cin = make_divisible(32 * alpha)
    x = _conv_bn_relu6(b, "conv0", "input", cin, 3, 2)
    i = 0
    for t, c, n, s in MBV2_SETTINGS:
        cout = make_divisible(c * alpha)
        for r in range(n):
            i += 1
            stride = s if r == 0 else 1
            y = x
            if t != 1:
                y = _conv_bn_relu6(b, f"block{i}.expand", y, cin * t, 1)
            y = _conv_bn_relu6(b, f"block{i}.dw", y, 0, 3, stride, depthwise=True)
            y = _conv_bn_relu6(b, f"block{i}.project", y, cout, 1, act=False)
            x = b.add(f"block{i}.add", x, y) if stride == 1 and cin == cout else y
            cin = cout
    x = _conv_bn_relu6(b, "conv_last", x, make_divisible(1280 * max(1.0, alpha)), 1)
    return b.build(name or f"mobilenet_v2_{_alpha_str(alpha)}_{resolution}", _head(b, x, classes))
