"""Sampling plans: single-kernel models for building a device's kernel dataset.

A kernel-level predictor learns one regressor per kernel type from measurements of models
that are each *one kernel* on the device (after fusion). This module generates those models
directly as graph IR (:mod:`farm.ir.builder`, no torch) and writes them as ONNX through
:func:`farm.formats.onnx_export.graph_to_onnx`.

- :class:`KernelSpec` is one configuration: kernel type, fused variant and shape. Its
  :attr:`~KernelSpec.name` is unique and stable, and the ONNX bytes depend only on the spec
  (weights are seeded by a constant), so the same configuration in two plans is one workload
  in the dataset, and a re-run repeats no measurement.
- One generator per kernel type draws configurations from **priors that match real
  networks**: (resolution, channels) pairs of the stages of MobileNetV1/V2, ResNet-18/50,
  NAS-Bench-201, the FBNet macro net and MLPerf Tiny nets, scaled by the width multipliers
  and input resolutions those families are used with (see :data:`STAGES`).
- Fused variants (``conv`` + BN/ReLU/ReLU6/Add, ``dwconv`` + BN/ReLU, ``gemm`` + ReLU,
  ``add`` + ReLU) are only generated where the device's fusion rules make them one kernel
  (:func:`variants_for`).
- :func:`make_plan` sizes a plan: ``budget`` models split over the kernel types by
  :data:`TYPE_WEIGHTS`, plus a few minimal models (one tiny op) from which the per-inference
  overhead is learned.
- :func:`refine_plan` is the adaptive step: more configurations near the measured ones where
  a predictor errs most (an injected ``graph → latency_ms`` callable, or a cross-validated
  quick model of our own).

Sources of the stage tables: MobileNetV1 (Howard et al. 2017, Table 1), MobileNetV2
(Sandler et al. 2018, Table 2), ResNet (He et al. 2016, Table 1), NAS-Bench-201 (Dong & Yang,
ICLR 2020, CIFAR macro net 16/32/64 channels), the FBNet macro net of HW-NAS-Bench
(../shared/data/fbnet-latency/README.md: channels 16…352, head 1504), MLPerf Tiny reference
nets (Banbury et al. 2021: ResNet-8 16/32/64 channels at 32×32, MobileNetV1-0.25 at 96×96).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from farm.errors import InputError
from farm.ir.builder import IRBuilder
from farm.ir.cost import node_macs
from farm.ir.graph import Graph, Node, TensorInfo
from farm.ir.kernels import Kernel, form_kernels

__all__ = [
    "KERNEL_TYPES", "OVERHEAD", "TYPE_WEIGHTS", "STAGES", "KernelSpec", "Plan", "variants_for", "build_graph",
    "to_onnx_bytes", "kernel_type_of", "sample_spec", "make_plan", "draw_unique", "overhead_specs", "second_sitting",
    "parse_kernels",
    "refine_plan", "perturb", "DEFAULT_BUDGET", "MAX_MACS", "CHAIN_LENGTHS", "chainable", "chain_specs",
]

KERNEL_TYPES: tuple[str, ...] = ("conv", "dwconv", "gemm", "pool", "gpool", "eltwise", "act", "bn", "concat",
                                 "reshape")
OVERHEAD = "overhead"  # the minimal models: one tiny op, for the per-inference overhead

# Share of a plan's budget per kernel type: most of a CNN's latency is in conv/dwconv, and
# their feature space (channels × resolution × kernel × stride × variant) is the largest.
TYPE_WEIGHTS: dict[str, float] = {"conv": 0.30, "dwconv": 0.14, "gemm": 0.07, "pool": 0.06, "gpool": 0.05,
                                  "eltwise": 0.10, "act": 0.10, "bn": 0.05, "concat": 0.07, "reshape": 0.06}

# The default plan's size: measured on this repository's 2-core host VM (1 thread) it fits in
# the "under ~20 minutes" (see the README's figure and predictors/dataset.py).
DEFAULT_BUDGET = 2000
MAX_MACS = 400_000_000  # larger single layers than ResNet-50's biggest (~231 M MACs) are not sampled

# (family, weight, input resolutions, width multipliers, stages as (resolution at 224 input, channels)).
# Resolutions scale with the input; channels with the width multiplier (rounded to 8, at least 8).
STAGES: tuple[tuple[str, float, tuple[int, ...], tuple[float, ...], tuple[tuple[int, tuple[int, ...]], ...]], ...] = (
    ("mobilenet_v1", 1.0, (224, 192, 160, 128), (0.25, 0.5, 0.75, 1.0),
     ((112, (32, 64)), (56, (128,)), (28, (256,)), (14, (512,)), (7, (1024,)))),
    ("mobilenet_v2", 1.5, (224, 192, 160, 128, 96), (0.35, 0.5, 0.75, 1.0, 1.4),
     ((112, (32, 16)), (56, (24,)), (28, (32,)), (14, (64, 96)), (7, (160, 320, 1280)))),
    ("resnet", 1.0, (224,), (0.5, 1.0),
     ((56, (64, 256)), (28, (128, 512)), (14, (256, 1024)), (7, (512, 2048)))),
    ("nb201", 1.0, (32,), (1.0,), ((32, (16,)), (16, (32,)), (8, (64,)))),
    ("fbnet", 1.0, (32,), (1.0,), ((32, (16, 24)), (16, (32,)), (8, (64, 112)), (4, (184, 352, 1504)))),
    ("mcu", 0.5, (96, 32), (0.25, 1.0), ((48, (32,)), (24, (64,)), (12, (128,)), (6, (256,)))),
)
_IMAGENET_STAGE_RES = 224  # the stage tables' resolutions are for this input (CIFAR/MCU ones for their own)


def _round8(c: float) -> int:
    return max(8, int(c / 8 + 0.5) * 8)


@dataclass(frozen=True)
class KernelSpec:
    """One single-kernel model. Unused shape fields are 0. ``hw`` is the input's height = width."""

    kernel_type: str
    variant: str = ""  # "+"-joined fused ops after the head ("bn+relu"), or the op flavour ("max", "sigmoid")
    cin: int = 0
    cout: int = 0
    hw: int = 0
    k: int = 0
    stride: int = 1
    groups: int = 1
    rows: int = 1  # gemm: rows of the input matrix (batch); concat: number of inputs
    repeat: int = 1  # a chain of this many identical kernels (see chain_specs); 1: one kernel
    w: int = 0  # the input's width where it differs from its height (audio features: 49×10); 0: square
    kw: int = 0  # conv: the kernel's width where it differs from k (DS-CNN's 10×4); 0: square
    sitting: int = 1  # the minimal models: 2 = the same model measured again at the end of a build

    @property
    def name(self) -> str:
        base = self._base_name()
        base = f"{base}-x{self.repeat}" if self.repeat > 1 else base
        return f"{base}-s{self.sitting}" if self.sitting > 1 else base

    def _base_name(self) -> str:
        t = self.kernel_type
        v = f"-{self.variant}" if self.variant else ""
        if t == "conv":
            g = f"g{self.groups}" if self.groups > 1 else ""
            k = f"{self.k}x{self.kw}" if self.kw else f"{self.k}"
            w = f"w{self.w}" if self.w else ""
            return f"conv-k{k}s{self.stride}{g}-c{self.cin}x{self.cout}-h{self.hw}{w}{v}"
        if t == "dwconv":
            return f"dwconv-k{self.k}s{self.stride}-c{self.cin}-h{self.hw}{v}"
        if t == "gemm":
            return f"gemm-m{self.rows}-k{self.cin}-n{self.cout}{v}"
        if t == "pool":
            return f"pool-{self.variant}-k{self.k}s{self.stride}-c{self.cin}-h{self.hw}"
        if t == "concat":
            return f"concat-n{self.rows}-c{self.cin}-h{self.hw}"
        if t == "reshape":
            g = f"-g{self.groups}" if self.groups > 1 else ""
            return f"reshape-{self.variant}-c{self.cin}-h{self.hw}{g}"
        if t == OVERHEAD:
            return f"overhead-{self.variant}-c{self.cin}"
        return f"{t}-{self.variant}-c{self.cin}-h{self.hw}" if self.variant else f"{t}-c{self.cin}-h{self.hw}"

    def to_dict(self) -> dict[str, Any]:
        return {"kernel_type": self.kernel_type, "variant": self.variant, "cin": self.cin, "cout": self.cout,
                "hw": self.hw, "k": self.k, "stride": self.stride, "groups": self.groups, "rows": self.rows,
                "repeat": self.repeat, "w": self.w, "kw": self.kw, "sitting": self.sitting}


Plan = list[KernelSpec]

# Fused variants per head type, as the ops that follow the head node (ONNX op names).
_VARIANT_OPS: dict[str, tuple[str, ...]] = {
    "": (), "bn": ("BatchNormalization",), "relu": ("Relu",), "relu6": ("Clip",),
    "bn+relu": ("BatchNormalization", "Relu"), "bn+relu6": ("BatchNormalization", "Clip"),
    "add": ("Add",), "add+relu": ("Add", "Relu"), "bn+add": ("BatchNormalization", "Add"),
    "bn+add+relu": ("BatchNormalization", "Add", "Relu"),
}
_HEAD_VARIANTS: dict[str, tuple[str, ...]] = {
    "conv": ("", "bn", "relu", "relu6", "bn+relu", "bn+relu6", "add", "add+relu", "bn+add", "bn+add+relu"),
    "dwconv": ("", "bn", "relu", "relu6", "bn+relu", "bn+relu6"),
    "gemm": ("", "relu"),
}
_HEAD_OP = {"conv": "Conv", "dwconv": "Conv", "gemm": "Gemm"}


def variants_for(kernel_type: str, fusion: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The variants of a head kernel type that are one kernel under these fusion rules
    (the plain head always is)."""
    rules = {tuple(r) for r in fusion}
    head = _HEAD_OP.get(kernel_type)
    if head is None:
        return ("",)
    return tuple(v for v in _HEAD_VARIANTS[kernel_type] if not v or (head, *_VARIANT_OPS[v]) in rules)


# ---------------------------------------------------------------------------- graphs


def _node(b: IRBuilder, name: str, op: str, inputs: list[str], out_shape: tuple[int, ...],
          weights: dict[str, tuple[tuple[int, ...], str]] | None = None, **attrs: object) -> str:
    """Like :meth:`IRBuilder.node`, with a dtype per weight (a Reshape's shape is int64)."""
    ins = [b.tensors[t] for t in inputs]
    wts = [TensorInfo(f"{name}.{w}", tuple(s), dt) for w, (s, dt) in (weights or {}).items()]
    out = TensorInfo(f"{name}:0", tuple(out_shape), b.dtype)
    all_in = ins + wts
    b.nodes.append(Node(name=name, op=op, inputs=tuple(all_in), outputs=(out,), attrs=dict(attrs),
                        weights=tuple(w.name for w in wts), macs=node_macs(op, all_in, [out], dict(attrs)),
                        params=sum(w.numel for w in wts), bytes_moved=sum(t.nbytes for t in all_in) + out.nbytes))
    b.tensors[out.name] = out
    return out.name


def _extra_input(b: IRBuilder, name: str, shape: tuple[int, ...]) -> str:
    if name in b.tensors:  # a chain's copies share it
        return name
    t = TensorInfo(name, shape, b.dtype)
    b.tensors[name] = t
    b.inputs = (*b.inputs, t)  # type: ignore[assignment]  # IRBuilder declares one input
    return name


def _post_ops(b: IRBuilder, x: str, variant: str, sfx: str = "") -> str:
    """Append the fused ops of a head variant (bn, relu, relu6, add with a second graph input)."""
    for i, op in enumerate(variant.split("+") if variant else []):
        if op == "bn":
            x = b.bn(f"bn{i}{sfx}", x)
        elif op == "relu":
            x = b.relu(f"relu{i}{sfx}", x)
        elif op == "relu6":
            x = _node(b, f"relu6_{i}{sfx}", "Clip", [x], b.shape(x), {"min": ((), b.dtype), "max": ((), b.dtype)})
        elif op == "add":
            x = b.add(f"add{i}{sfx}", x, _extra_input(b, "residual", b.shape(x)))
        else:
            raise ValueError(f"unknown fused op {op!r} in variant {variant!r}")
    return x


_FLAT_TYPES = ("act", "bn", "eltwise")  # with hw = 0: on [1, C], as in an MLP
_ACT_OPS = {"relu": "Relu", "relu6": "Clip", "sigmoid": "Sigmoid", "hardswish": "HardSwish"}


def build_graph(spec: KernelSpec) -> Graph:
    """The single-kernel model of a spec as graph IR (NCHW float32, batch 1); with
    ``repeat`` > 1, a chain of that many copies of the kernel (extra graph inputs such as a
    residual are shared by the copies)."""
    t = spec.kernel_type
    if t == "gemm":
        b = IRBuilder((spec.rows, spec.cin))
    elif t == OVERHEAD:
        b = IRBuilder((1, spec.cin))
    elif t == "reshape" and spec.variant == "transpose":
        b = IRBuilder((1, spec.groups, spec.cin // spec.groups, spec.hw, spec.hw))
    elif spec.hw == 0 and t in _FLAT_TYPES:  # an MLP's [1, C] activations
        b = IRBuilder((1, spec.cin))
    else:
        b = IRBuilder((1, spec.cin, spec.hw, spec.w or spec.hw))
    x = "input"
    for i in range(max(1, spec.repeat)):
        x = _body(b, x, spec, f"_{i}" if i else "")
    return b.build(spec.name, x)


def _body(b: IRBuilder, x: str, spec: KernelSpec, sfx: str) -> str:
    """One copy of a spec's kernel on ``x``; node names end in ``sfx`` (empty for the first)."""
    t, v = spec.kernel_type, spec.variant
    if t == "gemm":
        return _post_ops(b, b.gemm("gemm" + sfx, x, spec.cout), v, sfx)
    if t == OVERHEAD:  # "relu": one tiny op; "relu+relu": two (fusion detection's overhead estimate)
        for i, _ in enumerate(spec.variant.split("+")):
            x = b.relu(f"relu{i}{sfx}", x)
        return x
    if t == "reshape" and v == "transpose":  # the middle of a channel shuffle: [1, g, C/g, H, W] → [1, C/g, g, H, W]
        g = spec.groups
        return _node(b, "transpose" + sfx, "Transpose", [x], (1, spec.cin // g, g, spec.hw, spec.hw),
                     perm=[0, 2, 1, 3, 4])
    if t == "conv":
        k = (spec.k, spec.kw) if spec.kw else spec.k
        x = b.conv("conv" + sfx, x, spec.cout, k, spec.stride, bias="bn" not in v.split("+"), group=spec.groups)
        return _post_ops(b, x, v, sfx)
    if t == "dwconv":
        x = b.conv("dwconv" + sfx, x, spec.cin, spec.k, spec.stride, bias="bn" not in v.split("+"), group=spec.cin)
        return _post_ops(b, x, v, sfx)
    if t == "pool":
        hw = b.shape(x)[-1]
        pad = (spec.k - 1) // 2 if spec.stride == 1 or spec.k % 2 == 1 else 0
        ho = (hw + 2 * pad - spec.k) // spec.stride + 1
        op = "MaxPool" if v == "max" else "AveragePool"
        attrs: dict[str, object] = {"kernel_shape": [spec.k, spec.k], "strides": [spec.stride, spec.stride],
                                    "pads": [pad] * 4} | ({} if v == "max" else {"count_include_pad": 0})
        return _node(b, "pool" + sfx, op, [x], (1, spec.cin, ho, ho), None, **attrs)
    if t == "gpool":
        return b.global_avgpool("gpool" + sfx, x)
    if t == "eltwise":
        if v == "mul_se":  # squeeze-excite scaling: [1, C, H, W] * [1, C, 1, 1]
            other = _extra_input(b, "scale", (1, spec.cin, 1, 1))
            return _node(b, "mul" + sfx, "Mul", [x, other], b.shape(x))
        other = _extra_input(b, "other", b.shape(x))
        op = "Mul" if v == "mul" else "Add"
        x = _node(b, op.lower() + sfx, op, [x, other], b.shape(x))
        return b.relu("relu" + sfx, x) if v == "add+relu" else x
    if t == "act":
        op = _ACT_OPS[v]
        scalar: tuple[int, ...] = ()
        weights = {"min": (scalar, b.dtype), "max": (scalar, b.dtype)} if op == "Clip" else None
        return _node(b, v + sfx, op, [x], b.shape(x), weights)
    if t == "bn":
        return _post_ops(b, b.bn("bn" + sfx, x), v, sfx)  # a variant ("relu") only in fusion tests
    if t == "concat":
        parts = [x] + [_extra_input(b, f"input{i}", (1, spec.cin, spec.hw, spec.hw)) for i in range(1, spec.rows)]
        return _node(b, "concat" + sfx, "Concat", parts, (1, spec.cin * spec.rows, spec.hw, spec.hw), axis=1)
    if t == "reshape":
        if v == "flatten":
            return b.flatten("flatten" + sfx, x)
        if v == "reshape":  # the first Reshape of a channel shuffle: [1, C, H, W] → [1, g, C/g, H, W]
            g = spec.groups
            return _node(b, "reshape" + sfx, "Reshape", [x], (1, g, spec.cin // g, spec.hw, spec.hw),
                         {"shape": ((5,), "int64")})
        raise ValueError(f"unknown reshape variant {v!r}")
    raise ValueError(f"unknown kernel type {t!r}")


def to_onnx_bytes(graph: Graph) -> bytes:
    """The model file for a graph. Weights are seeded by a constant, so the bytes (and the
    workload hash) depend only on the graph."""
    from farm.formats.onnx_export import graph_to_onnx

    return bytes(graph_to_onnx(graph, seed=0).SerializeToString(deterministic=True))


_CONV_CLASS = re.compile(r"^conv(\d+x\d+)?$")


def kernel_type_of(kernel: Kernel) -> str:
    """A formed kernel's type in the predictor's vocabulary (``conv3x3`` → ``conv``,
    ``maxpool`` → ``pool``, a Transpose → ``reshape``, ...)."""
    c = kernel.kernel_class
    if _CONV_CLASS.match(c):
        return "conv"
    return {"transpose": "reshape", "flatten": "reshape"}.get(c, c)


def single_kernel(graph: Graph, fusion: Iterable[Sequence[str]]) -> Kernel | None:
    """The one kernel a graph forms under these fusion rules, or None if it forms several."""
    kernels = form_kernels(graph, tuple(tuple(r) for r in fusion))
    return kernels[0] if len(kernels) == 1 else None


# ---------------------------------------------------------------------------- priors


@dataclass(frozen=True)
class _Stage:
    family: str
    hw: int
    channels: int


def _pick(rng: np.random.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _sample_stage(rng: np.random.Generator) -> _Stage:
    weights = np.array([s[1] for s in STAGES])
    family, _, inputs, alphas, stages = STAGES[int(rng.choice(len(STAGES), p=weights / weights.sum()))]
    res = _pick(rng, inputs)
    stage_res, chans = _pick(rng, stages)
    base = _IMAGENET_STAGE_RES if inputs[0] == 224 else inputs[0]
    hw = max(1, round(stage_res * res / base))
    return _Stage(family, hw, _round8(_pick(rng, chans) * _pick(rng, alphas)))


def _sample_conv(rng: np.random.Generator, variants: Sequence[str]) -> KernelSpec:
    st = _sample_stage(rng)
    c, hw = st.channels, st.hw
    if c > 512:  # wide layers (heads, ResNet-50's 2048-channel stage) are 1x1 in real networks
        other = _round8(c / _pick(rng, (1, 2, 4)))
        cin, cout = (c, other) if rng.random() < 0.5 else (other, c)
        return KernelSpec("conv", _pick(rng, variants), cin=cin, cout=cout, hw=hw, k=1)
    role = rng.choice(["pointwise_expand", "pointwise_project", "regular", "downsample", "stem", "large", "grouped"],
                      p=[0.22, 0.18, 0.25, 0.12, 0.06, 0.07, 0.10])
    k, stride, groups, cin, cout = 1, 1, 1, c, c
    if role == "pointwise_expand":
        cout = _round8(c * _pick(rng, (1, 2, 3, 4, 6)))
    elif role == "pointwise_project":
        cin = _round8(c * _pick(rng, (2, 3, 4, 6)))
    elif role == "regular":
        k = 3
    elif role == "downsample":  # first layer of a stage: twice the resolution in, stride 2 (3x3) or 1x1 shortcut
        k, stride, hw, cin = _pick(rng, (3, 3, 1)), 2, hw * 2, max(8, _round8(c / 2))
    elif role == "stem":
        k, stride, cin, hw = _pick(rng, (3, 3, 7)), _pick(rng, (2, 2, 1)), 3, _pick(rng, (224, 192, 160, 128, 96, 32))
        cout = _pick(rng, (8, 16, 24, 32, 48, 64))
    elif role == "large":
        k, stride = _pick(rng, (5, 7)), _pick(rng, (1, 1, 2))
        hw = hw * stride
    else:  # grouped 1x1 / 3x3 (FBNet _g2, ResNeXt, ShuffleNet)
        k, groups = _pick(rng, (1, 1, 3)), _pick(rng, (2, 2, 4, 8))
        cin, cout = _round8(c), _round8(c * _pick(rng, (1, 3, 6)))
        cin, cout = max(cin, 8 * groups) // (8 * groups) * 8 * groups, max(cout, 8 * groups) // (8 * groups) * 8 * groups
    variant = _pick(rng, variants)
    return KernelSpec("conv", variant, cin=cin, cout=cout, hw=hw, k=k, stride=stride, groups=groups)


def _sample_dwconv(rng: np.random.Generator, variants: Sequence[str]) -> KernelSpec:
    st = _sample_stage(rng)
    c = _round8(st.channels * _pick(rng, (1, 1, 3, 6)))  # depthwise layers run on expanded channels
    stride = int(rng.choice([1, 2], p=[0.75, 0.25]))
    return KernelSpec("dwconv", _pick(rng, variants), cin=c, cout=c, hw=st.hw * stride,
                      k=int(rng.choice([3, 5, 7], p=[0.6, 0.3, 0.1])), stride=stride)


def _sample_gemm(rng: np.random.Generator, variants: Sequence[str]) -> KernelSpec:
    role = rng.choice(["classifier", "se", "mlp"], p=[0.5, 0.25, 0.25])
    if role == "classifier":
        k, n = _pick(rng, (256, 512, 1024, 1280, 1504, 2048, 64, 128)), _pick(rng, (10, 100, 1000, 2, 12))
    elif role == "se":  # squeeze-excite FCs: C → C/4 → C
        c = _round8(_sample_stage(rng).channels)
        k, n = (c, max(8, c // 4)) if rng.random() < 0.5 else (max(8, c // 4), c)
    else:
        k, n = _pick(rng, (32, 64, 128, 256, 512, 640, 1024)), _pick(rng, (8, 32, 64, 128, 256, 512, 1024))
    return KernelSpec("gemm", _pick(rng, variants), cin=k, cout=n, rows=1)


def _sample_pool(rng: np.random.Generator) -> KernelSpec:
    st = _sample_stage(rng)
    kind = rng.choice(["stem_max", "down", "nb201_avg"], p=[0.3, 0.4, 0.3])
    if kind == "stem_max":  # ResNet: 3x3 max pool, stride 2, at 112 (scaled)
        return KernelSpec("pool", "max", cin=st.channels, hw=st.hw * 2, k=3, stride=2)
    if kind == "down":
        return KernelSpec("pool", _pick(rng, ("max", "avg")), cin=st.channels, hw=st.hw * 2, k=_pick(rng, (2, 3)),
                          stride=2)
    return KernelSpec("pool", _pick(rng, ("avg", "max")), cin=st.channels, hw=st.hw, k=3, stride=1)


def _sample_simple(kind: str) -> Callable[[np.random.Generator], KernelSpec]:
    def sample(rng: np.random.Generator) -> KernelSpec:
        st = _sample_stage(rng)
        c = _round8(st.channels * _pick(rng, (1, 1, 3, 6))) if kind in ("act", "bn") else st.channels
        if kind == "gpool":
            return KernelSpec("gpool", cin=_round8(c * _pick(rng, (1, 1, 4, 6))), hw=st.hw)
        if kind == "act":
            return KernelSpec("act", _pick(rng, ("relu", "relu", "relu6", "sigmoid", "hardswish")), cin=c, hw=st.hw)
        if kind == "bn":
            return KernelSpec("bn", cin=c, hw=st.hw)
        if kind == "concat":
            n = int(rng.choice([2, 3, 4], p=[0.6, 0.2, 0.2]))
            return KernelSpec("concat", cin=max(8, _round8(c / n)), hw=st.hw, rows=n)
        raise ValueError(kind)

    return sample


def _sample_eltwise(rng: np.random.Generator, variants: Sequence[str]) -> KernelSpec:
    st = _sample_stage(rng)
    return KernelSpec("eltwise", _pick(rng, variants), cin=st.channels, hw=st.hw)


def _sample_reshape(rng: np.random.Generator) -> KernelSpec:
    st = _sample_stage(rng)
    v = rng.choice(["flatten", "reshape", "transpose"], p=[0.3, 0.3, 0.4])
    if v == "flatten":  # before the classifier: small resolutions
        return KernelSpec("reshape", "flatten", cin=st.channels, hw=min(st.hw, 7))
    g = _pick(rng, (2, 2, 4, 8))
    c = max(st.channels, 8 * g) // (8 * g) * 8 * g
    return KernelSpec("reshape", str(v), cin=c, hw=st.hw, groups=g)


def eltwise_variants(fusion: Iterable[Sequence[str]]) -> tuple[str, ...]:
    rules = {tuple(r) for r in fusion}
    return ("add", "mul", "mul_se") + (("add+relu",) if ("Add", "Relu") in rules else ())


def sample_spec(kernel_type: str, rng: np.random.Generator, fusion: Iterable[Sequence[str]] = ()) -> KernelSpec:
    """One configuration of a kernel type from the real-network priors (at most MAX_MACS)."""
    fusion = tuple(tuple(r) for r in fusion)
    for _ in range(100):
        if kernel_type in ("conv", "dwconv", "gemm"):
            sampler = {"conv": _sample_conv, "dwconv": _sample_dwconv, "gemm": _sample_gemm}[kernel_type]
            spec = sampler(rng, variants_for(kernel_type, fusion))
        elif kernel_type == "eltwise":
            spec = _sample_eltwise(rng, eltwise_variants(fusion))
        elif kernel_type == "pool":
            spec = _sample_pool(rng)
        elif kernel_type == "reshape":
            spec = _sample_reshape(rng)
        elif kernel_type in ("gpool", "act", "bn", "concat"):
            spec = _sample_simple(kernel_type)(rng)
        else:
            raise InputError(f"unknown kernel type {kernel_type!r}; known: {', '.join(KERNEL_TYPES)}")
        if _macs(spec) <= MAX_MACS:
            return spec
    raise RuntimeError(f"could not sample a {kernel_type} configuration under {MAX_MACS} MACs")


def _macs(spec: KernelSpec) -> int:
    if spec.kernel_type == "conv":
        ho = (spec.hw + 2 * (spec.k // 2) - spec.k) // spec.stride + 1
        return ho * ho * spec.cout * (spec.cin // spec.groups) * spec.k * spec.k
    if spec.kernel_type == "dwconv":
        ho = (spec.hw + 2 * (spec.k // 2) - spec.k) // spec.stride + 1
        return ho * ho * spec.cin * spec.k * spec.k
    if spec.kernel_type == "gemm":
        return spec.rows * spec.cin * spec.cout
    return 0


def overhead_specs() -> list[KernelSpec]:
    """The minimal models: one ReLU on 1, 8 and 64 numbers, and chains of 2 and 4 ReLUs on 8
    numbers — latency = per-inference overhead + n × per-kernel dispatch, so chains of
    different lengths separate the two (one op alone cannot)."""
    return [KernelSpec(OVERHEAD, "relu", cin=c) for c in (1, 8, 64)] + \
        [KernelSpec(OVERHEAD, "+".join(["relu"] * n), cin=8) for n in (2, 4)]


def second_sitting(plan: Sequence[Any]) -> list[Any]:
    """The plan's minimal models again, for a second sitting at the end of a build (ONNX
    :class:`KernelSpec` or TFLite specs that wrap one). The graph is the same but its name
    is not, so each sitting is its own workload: a machine slowed while the first sitting
    ran (the build's first minute) no longer sets the overhead every prediction carries; the
    predictor takes the faster sitting (:meth:`KernelLevelPredictor.fit`)."""
    out = []
    for s in plan:
        if s.kernel_type != OVERHEAD:
            continue
        inner = s if isinstance(s, KernelSpec) else s.spec
        again = replace(inner, sitting=2)
        out.append(again if isinstance(s, KernelSpec) else replace(s, spec=again))
    return out


CHAIN_LENGTHS = (1, 2, 4)  # a chain configuration is measured as 1, 2 and 4 identical kernels
EXTRA_SHARE = 0.03  # of a plan's budget: layers of real networks the stage priors miss (extra_prior_specs)
CHAIN_SHARE = 0.15  # of a plan's budget: chain models (each configuration costs len(CHAIN_LENGTHS))
_CHAIN_MAX_MACS = 60_000_000  # per kernel: chains stay cheap to measure; the boundary shows best on small kernels
_CHAIN_TYPES = ("conv", "dwconv", "gemm", "pool", "eltwise", "act", "bn")


def chainable(spec: KernelSpec) -> KernelSpec | None:
    """The shape-preserving neighbour of a configuration (stride 1, as many channels out as
    in), whose copies can follow each other; None for types whose output shape cannot feed
    the same kernel again (gpool, concat, reshape)."""
    t = spec.kernel_type
    if t in ("act", "bn", "eltwise"):
        return replace(spec, repeat=1)
    if t == "conv" and spec.cin % 8 == 0:  # not a stem (3 channels in)
        return replace(spec, cout=spec.cin, stride=1, k=spec.k if spec.k % 2 else spec.k + 1, repeat=1)
    if t == "dwconv":
        return replace(spec, stride=1, repeat=1)
    if t == "pool":
        return replace(spec, stride=1, k=3, repeat=1)
    if t == "gemm":
        return replace(spec, cout=spec.cin, repeat=1)
    return None


def chain_specs(n_models: int, *, kernels: Sequence[str] = KERNEL_TYPES, seed: int = 0,
                fusion: Iterable[Sequence[str]] = ()) -> Plan:
    """Chains of 1, 2 and 4 identical kernels (:data:`CHAIN_LENGTHS`) from the real-network
    priors, about ``n_models`` models in all. A chain costs overhead + boundary + n × kernel:
    what a kernel pays once per model (moving the model's input and output, a layout reorder,
    a host↔accelerator copy) separates from what it pays per copy, which is what the kernel
    costs inside a network."""
    types = [t for t in _CHAIN_TYPES if t in kernels]
    if not types or n_models < len(CHAIN_LENGTHS):
        return []
    rng = np.random.default_rng([seed, 11])
    out: Plan = []
    seen: set[str] = set()
    for _ in range(50 * n_models):
        if len(out) + len(CHAIN_LENGTHS) > n_models:
            break
        t = types[len(out) // len(CHAIN_LENGTHS) % len(types)]  # every type alike: each needs its boundary
        base = chainable(sample_spec(t, rng, fusion))
        if base is None or base.name in seen or _macs(base) > _CHAIN_MAX_MACS:
            continue
        seen.add(base.name)
        out += [replace(base, repeat=n) for n in CHAIN_LENGTHS]
    return out


# Batch-1 Gemm chains whose copies' weights (144–784 KB each, 1, 2 and 4 copies: 144 KB to
# 3 MB together) fit a core's cache alone and outgrow it together: where they cross it, and
# what a KB streamed from the next level costs (KernelLevelPredictor._fit_stream).
_STREAM_PROBE_WIDTHS = (192, 256, 320, 384, 448)


def stream_probe_specs(kernels: Sequence[str] = KERNEL_TYPES) -> Plan:
    """Chains (:data:`CHAIN_LENGTHS`) of square batch-1 Gemms of :data:`_STREAM_PROBE_WIDTHS`."""
    if "gemm" not in kernels:
        return []
    return [KernelSpec("gemm", "", rows=1, cin=w, cout=w, repeat=n) for w in _STREAM_PROBE_WIDTHS for n in CHAIN_LENGTHS]


# Layers real networks have that the stage priors miss: keyword-spotting stems on audio
# features (MLPerf Tiny DS-CNN: 10×4 kernels, stride 2, on 49×10 MFCCs; 1 channel in) and an
# MLP's activations, BN and adds on [1, C] (MLPerf Tiny FC-AutoEncoder: 640 → 128 → … → 8).
_AUDIO_INPUTS = ((49, 10), (98, 40), (49, 40), (124, 129))
_AUDIO_KERNELS = ((10, 4), (3, 3), (5, 5), (10, 8), (4, 10))
_MLP_WIDTHS = (8, 16, 32, 64, 128, 256, 512, 640, 1024)


def extra_prior_specs(n_models: int, *, kernels: Sequence[str] = KERNEL_TYPES, seed: int = 0,
                      fusion: Iterable[Sequence[str]] = ()) -> Plan:
    """About ``n_models`` configurations of the layers :data:`STAGES` does not cover (see
    :data:`_AUDIO_INPUTS`, :data:`_MLP_WIDTHS`)."""
    rng = np.random.default_rng([seed, 13])
    kinds = [t for t in ("conv", "act", "bn", "eltwise") if t in kernels]
    out: Plan = []
    seen: set[str] = set()
    for i in range(20 * n_models):
        if len(out) >= n_models or not kinds:
            break
        t = kinds[i % len(kinds)]
        if t == "conv":  # the first ones: the reference stem (49×10 in, 10×4, stride 2, 64 out) in each variant
            (h, w), (kh, kw) = (_AUDIO_INPUTS[0], _AUDIO_KERNELS[0]) if i < 4 * len(kinds) else \
                (_pick(rng, _AUDIO_INPUTS), _pick(rng, _AUDIO_KERNELS))
            spec = KernelSpec("conv", _pick(rng, variants_for("conv", fusion)), cin=1,
                              cout=64 if i < 4 * len(kinds) else _pick(rng, (64, 172, 276, 32, 16)), hw=h, w=w,
                              k=kh, kw=kw, stride=2 if i < 4 * len(kinds) else _pick(rng, (2, 1)))
        elif t == "eltwise":
            spec = KernelSpec("eltwise", _pick(rng, ("add", "mul")), cin=_pick(rng, _MLP_WIDTHS))
        else:
            spec = KernelSpec(t, _pick(rng, ("relu", "relu", "sigmoid", "relu6")) if t == "act" else "",
                              cin=_pick(rng, _MLP_WIDTHS))
        if spec.name not in seen:
            seen.add(spec.name)
            out.append(spec)
    return out


def parse_kernels(text: str | None) -> tuple[str, ...]:
    """``--kernels conv,dwconv`` → the kernel types (all when None); unknown names are an InputError."""
    if text is None or not text.strip():
        return KERNEL_TYPES
    return parse_names(text, KERNEL_TYPES, option="--kernels", noun="kernel type")


def make_plan(*, budget: int | None = None, kernels: Sequence[str] = KERNEL_TYPES, seed: int = 0,
              fusion: Iterable[Sequence[str]] = (), overhead: bool = True) -> Plan:
    """A prior plan: ``budget`` distinct single-kernel models (default :data:`DEFAULT_BUDGET`)
    split over ``kernels`` by :data:`TYPE_WEIGHTS`, plus the minimal models (counted in the
    budget). Deterministic in (budget, kernels, seed, fusion)."""
    n_total = DEFAULT_BUDGET if budget is None else budget
    if n_total < 1:
        raise InputError(f"--budget {n_total}: must be at least 1")
    fusion = tuple(tuple(r) for r in fusion)
    extra = overhead_specs() if overhead else []
    extra = extra[:max(0, min(len(extra), n_total - len(kernels)))] if n_total > len(kernels) else []
    n = n_total - len(extra)
    w = np.array([TYPE_WEIGHTS[k] for k in kernels])
    chains: Plan = []
    if n >= 100:  # the probes first: a random chain with a probe's name is the same model
        chains = stream_probe_specs(kernels)
        probes = {s.name for s in chains}
        chains += [s for s in chain_specs(int(CHAIN_SHARE * n), kernels=kernels, seed=seed, fusion=fusion)
                   if s.name not in probes]
        chains += extra_prior_specs(int(EXTRA_SHARE * n), kernels=kernels, seed=seed, fusion=fusion)
    n -= len(chains)
    share = w / w.sum() * n
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts))[: n - int(counts.sum())]:  # largest remainders
        counts[i] += 1
    plan: Plan = list(extra) + chains
    seen = {s.name for s in plan}
    for kt, count in zip(kernels, counts, strict=True):
        rng = np.random.default_rng([seed, KERNEL_TYPES.index(kt)])

        def draw(kt: str = kt, rng: np.random.Generator = rng) -> KernelSpec:
            return sample_spec(kt, rng, fusion)

        plan += draw_unique(draw, count, seen, tries=50 * count + 100)
    return plan


def draw_unique(draw: Callable[[], Any], count: int, seen: set[str], *, tries: int) -> list[Any]:
    """Up to ``count`` results of ``draw()`` whose ``name`` is not in ``seen`` (each taken is
    added to it), from at most ``tries`` calls; a call that returns None is a try that failed.
    Calls stop as soon as ``count`` are taken, so a seeded ``draw`` gives the same plan."""
    out: list[Any] = []
    for _ in range(tries):
        if len(out) >= count:
            break
        x = draw()
        if x is not None and x.name not in seen:
            seen.add(x.name)
            out.append(x)
    return out


# ---------------------------------------------------------------------------- adaptive refinement


def perturb(spec: KernelSpec, rng: np.random.Generator) -> KernelSpec:
    """A neighbour of a configuration: channels ×/÷ up to 2 (multiples of 8), resolution
    ×/÷ up to 2, occasionally another kernel size, stride or variant-preserving change."""
    def scale_c(c: int, mult: int = 8) -> int:
        if c <= 0:
            return c
        v = c * float(2 ** rng.uniform(-1, 1))
        return max(mult, int(round(v / mult)) * mult)

    s = spec
    if s.kernel_type in ("conv", "dwconv", "pool", "gpool", "eltwise", "act", "bn", "concat", "reshape"):
        mult = 8 * max(s.groups, 1) if s.kernel_type in ("conv", "reshape") else 8
        cin = 3 if s.cin == 3 else scale_c(s.cin, mult)
        hw = max(1, int(round(s.hw * float(2 ** rng.uniform(-1, 1))))) if s.hw else s.hw
        s = replace(s, cin=cin, hw=hw)
        if s.kernel_type == "conv":
            s = replace(s, cout=scale_c(s.cout, 8 * s.groups))
            if rng.random() < 0.2:
                s = replace(s, k=_pick(rng, (1, 3, 5, 7)))
        elif s.kernel_type == "dwconv":
            s = replace(s, cout=s.cin, k=_pick(rng, (3, 5, 7)) if rng.random() < 0.2 else s.k)
    elif s.kernel_type == "gemm":
        s = replace(s, cin=scale_c(s.cin), cout=max(2, int(round(s.cout * float(2 ** rng.uniform(-1, 1))))))
    if s.kernel_type == "pool" and s.hw < s.k:
        s = replace(s, hw=s.k)
    return s


def _features(spec: KernelSpec, graph: Graph) -> list[float]:
    parts = spec.variant.split("+") if spec.variant else []
    return [math.log1p(graph.macs), math.log1p(graph.bytes_moved), math.log1p(spec.cin), math.log1p(spec.cout),
            math.log1p(spec.hw), spec.k, spec.stride, math.log(max(spec.groups, 1)), math.log(max(spec.rows, 1)),
            len(graph.nodes), float("add" in parts or spec.variant.startswith("mul"))]


def cv_predictions(specs: Sequence[KernelSpec], latency_ms: Sequence[float], *, folds: int = 5,
                   seed: int = 0, ridge: float = 1e-2) -> np.ndarray:
    """Out-of-fold predictions (ms) of a quick model of log latency, per kernel type: ridge
    regression on the configuration's log-features and their pairwise products (numpy only,
    milliseconds to fit). A type with fewer than ``2·folds`` samples gets its median."""
    y = np.log(np.maximum(np.asarray(latency_ms, dtype=float), 1e-6))
    pred = np.empty(len(specs))
    types = np.array([s.kernel_type for s in specs])
    rng = np.random.default_rng(seed)
    for kt in sorted(set(types)):
        idx = np.flatnonzero(types == kt)
        if len(idx) < 2 * folds:
            pred[idx] = np.median(y[idx])
            continue
        base = np.array([_features(specs[int(i)], build_graph(specs[int(i)])) for i in idx])
        base = (base - base.mean(0)) / np.maximum(base.std(0), 1e-9)
        iu = np.triu_indices(base.shape[1])
        X = np.hstack([np.ones((len(idx), 1)), base, (base[:, :, None] * base[:, None, :])[:, iu[0], iu[1]]])
        fold = rng.permutation(len(idx)) % folds
        for f in range(folds):
            test, train = fold == f, fold != f
            A = X[train]
            w = np.linalg.solve(A.T @ A + ridge * len(A) * np.eye(A.shape[1]), A.T @ y[idx][train])
            pred[idx[test]] = X[test] @ w
    return np.asarray(np.exp(pred))


def refine_plan(specs: Sequence[KernelSpec], latency_ms: Sequence[float], *, n: int, seed: int = 0,
                predict: Callable[[Graph], float] | None = None, exclude: Iterable[str] = (),
                top_fraction: float = 0.2) -> Plan:
    """``n`` new configurations near the measured ones the predictor gets most wrong.

    ``predict`` (graph → latency_ms) is the current predictor; without one, out-of-fold
    predictions of :func:`cv_predictions` (a ridge model, numpy only) stand in. The relative error |pred/measured − 1|
    ranks the measured configurations; new ones are perturbations (:func:`perturb`) of the
    worst ``top_fraction``, each drawn with probability proportional to its error, skipping
    names in ``exclude`` and ones already chosen."""
    if len(specs) != len(latency_ms):
        raise ValueError("specs and latency_ms differ in length")
    pool = [(s, y) for s, y in zip(specs, latency_ms, strict=True) if s.kernel_type != OVERHEAD and s.repeat == 1]
    if n <= 0 or not pool:
        return []
    ys = [y for _, y in pool]
    if predict is not None:
        pred = np.array([float(predict(build_graph(s))) for s, _ in pool])
    else:
        pred = cv_predictions([s for s, _ in pool], ys, seed=seed)
    err = np.abs(pred / np.asarray(ys) - 1.0)
    order = np.argsort(-err)
    worst = order[: max(1, int(math.ceil(top_fraction * len(pool))))]
    p = err[worst] + 1e-9
    p = p / p.sum()
    rng = np.random.default_rng([seed, 7])
    taken = set(exclude) | {s.name for s in specs}
    out: Plan = []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        base = pool[int(worst[int(rng.choice(len(worst), p=p))])][0]
        cand = perturb(base, rng)
        if cand.name in taken or _macs(cand) > MAX_MACS:
            continue
        try:
            build_graph(cand)
        except (ValueError, KeyError):
            continue
        taken.add(cand.name)
        out.append(cand)
    return out


def parse_names(text: str, known: Sequence[str], *, option: str, noun: str) -> tuple[str, ...]:
    """``a,b,a`` → ``("a", "b")``, each one of ``known``; else one InputError naming the option."""
    names = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise InputError(f"{option} {text!r}: unknown {noun}(s) {', '.join(bad) or '(none)'}; "
                         f"known: {', '.join(known)}")
    return names
