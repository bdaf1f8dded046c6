"""MLPerf Tiny's four reference networks as graph IR (no torch), following the Keras models
of the MLPerf Tiny training reference (https://github.com/mlcommons/tiny,
``benchmark/training/*/keras_model.py``, ``vww_model.py``) layer for layer: padding SAME,
Keras's default biases (``use_bias=True``) on every conv and dense layer, BN after each.

- **DS-CNN** (keyword spotting, 12 classes): 49×10×1 MFCC input (1 s clip, 30 ms window,
  20 ms stride, 10 DCT coefficients); 10×4/2 conv to 64 + BN + ReLU; 4 × (3×3 depthwise + BN
  + ReLU, 1×1 conv 64 + BN + ReLU); 24×5 average pool (valid) to 1×1; dense to 12.
- **ResNet-8** (image classification, CIFAR-10 32×32×3): 3×3 conv to 16 + BN + ReLU; three
  stacks of two 3×3 convs (16, 32, 64 filters; stride 2 at the first conv of stacks 2-3, with
  a 1×1/2 conv shortcut, no BN on it), add then ReLU; 8×8 average pool; dense to 10.
  (A later revision of the reference file widened it to 26 filters; the benchmark's
  results use 16: ``filters`` selects.)
- **MobileNetV1-0.25 VWW** (visual wake words, 96×96×3, 2 classes): MobileNetV1 at α=0.25
  (8 base filters) as ``vww_model.py`` writes it: conv biases, plain ReLU (not ReLU6), a 3×3
  average pool over the last map, dense to 2.
- **FC AutoEncoder** (anomaly detection, ToyADMOS): 640 inputs (5 frames × 128 log-mel);
  4 × dense 128 + BN + ReLU, dense 8 + BN + ReLU, 4 × dense 128 + BN + ReLU, dense 640.

Their int8 TFLite files are what MLPerf Tiny submissions run; ``dtype="int8"`` builds that
variant's graph for the simulator's int8-only MCU and accelerator profiles. Sizes as a
sanity check: MLPerf Tiny v0.5 described the int8 models as 53 kB (DS-CNN), 325 kB (VWW),
96 kB (ResNet) and 270 kB (FC-AE) (Linley Newsletter, 2021-08-03,
https://linleygroup.com/newsletters/newsletter_detail.php?num=6344&year=2021&tag=3).
"""

from __future__ import annotations

from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph
from farm.zoo.mobilenet import mobilenet_v1

__all__ = ["ds_cnn", "resnet8", "mobilenet_v1_vww", "fc_autoencoder"]


def _cbr(b: IRBuilder, name: str, x: str, cout: int, k: int | tuple[int, int], stride: int | tuple[int, int] = 1,
         *, depthwise: bool = False, relu: bool = True, bn: bool = True) -> str:
    if depthwise:
        x = b.dwconv(f"{name}.conv", x, k, stride, bias=True, pad="same")
    else:
        x = b.conv(f"{name}.conv", x, cout, k, stride, bias=True, pad="same")
    if bn:
        x = b.bn(f"{name}.bn", x)
    return b.relu(f"{name}.relu", x) if relu else x


def ds_cnn(classes: int = 12, *, filters: int = 64, frames: int = 49, mfcc: int = 10, dtype: str = "float32") -> Graph:
    """MLPerf Tiny keyword spotting DS-CNN (input N×1×frames×mfcc)."""
    if frames < 2 or mfcc < 2 or filters < 1 or classes < 1:
        raise ValueError(f"DS-CNN needs frames and mfcc >= 2, filters and classes >= 1 (got {frames}, {mfcc}, "
                         f"{filters}, {classes})")
    b = IRBuilder((1, 1, frames, mfcc), dtype=dtype)
    x = _cbr(b, "conv1", "input", filters, (10, 4), 2)
    for i in range(1, 5):
        x = _cbr(b, f"ds{i}.dw", x, 0, 3, depthwise=True)
        x = _cbr(b, f"ds{i}.pw", x, filters, 1)
    x = b.avgpool("pool", x, (frames // 2, mfcc // 2), (frames // 2, mfcc // 2))
    x = b.gemm("fc", b.flatten("flatten", x), classes)
    return b.build("ds_cnn_kws", x)


def resnet8(classes: int = 10, *, filters: int = 16, resolution: int = 32, dtype: str = "float32") -> Graph:
    """MLPerf Tiny image classification ResNet-8 (CIFAR-10)."""
    b = IRBuilder((1, 3, resolution, resolution), dtype=dtype)
    x = _cbr(b, "stem", "input", filters, 3)
    for stack, mult in enumerate((1, 2, 4), start=1):
        stride = 1 if stack == 1 else 2
        y = _cbr(b, f"stack{stack}.a", x, filters * mult, 3, stride)
        y = _cbr(b, f"stack{stack}.b", y, filters * mult, 3, relu=False)
        if stack > 1:
            x = _cbr(b, f"stack{stack}.short", x, filters * mult, 1, 2, relu=False, bn=False)
        x = b.relu(f"stack{stack}.relu", b.add(f"stack{stack}.add", x, y))
    k = b.shape(x)[2]
    x = b.gemm("fc", b.flatten("flatten", b.avgpool("pool", x, k, k)), classes)
    return b.build("resnet8_cifar10", x)


def mobilenet_v1_vww(classes: int = 2, *, resolution: int = 96, dtype: str = "float32") -> Graph:
    """MLPerf Tiny visual wake words: MobileNetV1 α=0.25 at 96×96, conv biases, 2 classes."""
    return mobilenet_v1(0.25, resolution, classes, dtype=dtype, conv_bias=True, activation="relu", full_avgpool=True,
                        name="mobilenet_v1_0.25_96_vww")


def fc_autoencoder(inputs: int = 640, *, hidden: int = 128, bottleneck: int = 8, dtype: str = "float32") -> Graph:
    """MLPerf Tiny anomaly detection deep FC autoencoder (ToyADMOS)."""
    b = IRBuilder((1, inputs), dtype=dtype)
    x = "input"
    widths = [hidden] * 4 + [bottleneck] + [hidden] * 4
    for i, w in enumerate(widths, start=1):
        x = b.relu(f"dense{i}.relu", b.bn(f"dense{i}.bn", b.gemm(f"dense{i}", x, w)))
    x = b.gemm("output", x, inputs)
    return b.build("fc_autoencoder_toyadmos", x)
