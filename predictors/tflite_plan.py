"""TFLite kernel plans: float32 and int8 single-kernel ``.tflite`` models.

Two kinds of devices cannot run the float ONNX plan of :mod:`predictors.sampling`:

- devices whose runtime takes only ``.tflite`` (phones through LiteRT ``benchmark_model``,
  boards and hosts with ``runtime: litert``), and
- int8-only simulated devices (Edge TPU, phone NPU, the Cortex-M MCUs, BitFusion), which
  refuse float models; their real counterparts run full-integer ``.tflite`` files.

A :class:`TfliteSpec` is a :class:`~predictors.sampling.KernelSpec` (the same priors, the same
graph IR) plus a dtype and, for bit-serial devices, weight/activation bit widths. Its file is
:func:`farm.formats.tflite_export.graph_to_tflite` of the spec's graph: BN folded, ReLU/ReLU6 fused as
the converter does, so the fused variants are the ones a TFLite kernel has (``conv`` plain,
``+relu``, ``+relu6``; ``gemm`` ``+relu``; ``add+relu``) and there is no standalone ``bn``
kernel (an int8 network has none left).

- :func:`plan_dtypes` picks the dtypes a device takes: int8 on integer-first simulated
  profiles, float32 and int8 on LiteRT devices (float32 only with the GPU delegate).
- :func:`fits_for` keeps an MCU plan inside the device's SRAM and flash (the simulator's own
  liveness and weight counts), so every model of the plan can run.
- :data:`BIT_PRIOR`: BitFusion's benchmarks run layers at 1, 2, 4 and 8 bits (Sharma et al.,
  ISCA 2018, Table 3: 2/4/8-bit weights and activations, binary layers in the QNNs); the plan
  draws each MAC kernel's (w, a) from it, stored as the file's ``hwfarm.bit_widths`` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from farm.devices.caps import device_caps
from farm.errors import InputError
from farm.ir.graph import Graph
from predictors.sampling import (
    KERNEL_TYPES,
    TYPE_WEIGHTS,
    KernelSpec,
    build_graph,
    draw_unique,
    overhead_specs,
    parse_names,
    refine_plan,
    sample_spec,
)

if TYPE_CHECKING:
    from farm.registry.spec import DeviceSpec

__all__ = ["TFLITE_KERNEL_TYPES", "TFLITE_FUSION", "BIT_PRIOR", "TfliteSpec", "tflite_bytes", "plan_dtypes",
           "plan_format", "fits_for", "bit_serial", "make_tflite_plan", "refine_tflite_plan", "parse_dtypes",
           "describe"]

TFLITE_KERNEL_TYPES = tuple(t for t in KERNEL_TYPES if t != "bn")
# What the converter fuses into one TFLite op (the activation becomes an attribute).
TFLITE_FUSION: tuple[tuple[str, ...], ...] = (("Conv", "Relu"), ("Conv", "Clip"), ("Gemm", "Relu"), ("Add", "Relu"))
BIT_PRIOR: tuple[tuple[int, float], ...] = ((1, 0.05), (2, 0.30), (4, 0.35), (8, 0.30))
_MAC_TYPES = ("conv", "dwconv", "gemm")
_INT_DTYPES = ("int8", "uint8", "int4", "uint4")


@dataclass(frozen=True)
class TfliteSpec:
    """One single-kernel ``.tflite`` model: a kernel configuration at a dtype (and bit widths)."""

    spec: KernelSpec
    dtype: str = "float32"
    w_bits: int = 0  # 0: the dtype's width (no metadata)
    a_bits: int = 0

    @property
    def kernel_type(self) -> str:
        return self.spec.kernel_type

    @property
    def name(self) -> str:
        bits = f"-w{self.w_bits}a{self.a_bits}" if self.w_bits else ""
        return f"{self.spec.name}-{self.dtype}{bits}"

    def to_dict(self) -> dict[str, Any]:
        return self.spec.to_dict() | {"dtype": self.dtype, "w_bits": self.w_bits, "a_bits": self.a_bits}


def tflite_bytes(t: TfliteSpec) -> bytes:
    """The model file of a spec (weights seeded by a constant: bytes depend only on the spec)."""
    from farm.formats.tflite_export import graph_to_tflite

    bits = {"*": [t.w_bits, t.a_bits]} if t.w_bits else None
    return graph_to_tflite(build_graph(t.spec), dtype=t.dtype, seed=0, bit_widths=bits)


def plan_format(device: DeviceSpec) -> str:
    """``onnx`` (the float plan) or ``tflite``: devices whose runtime takes only .tflite, and
    simulated devices whose profile computes in integers first (int8-only accelerators, MCUs)."""
    from farm.measurement import resolve_runtime

    rt = device.default_runtime
    caps = device_caps(device)
    if caps.simulated:
        return "tflite" if caps.dtypes[0] in _INT_DTYPES else "onnx"
    if rt and resolve_runtime(rt, "onnx") != rt:
        return "tflite"
    return "onnx"


def plan_dtypes(device: DeviceSpec) -> tuple[str, ...]:
    """The dtypes of a device's TFLite plan by default."""
    caps = device_caps(device)
    if caps.simulated:
        return ("int8",) if caps.dtypes[0] in _INT_DTYPES else ("float32",)
    if (device.delegate or "") == "gpu":
        return ("float32",)
    return ("float32", "int8")


def parse_dtypes(text: str | None, device: DeviceSpec) -> tuple[str, ...]:
    """``--dtype float32,int8`` → the dtypes (the device's default when None)."""
    from farm.formats.tflite_export import TFLITE_DTYPES

    if text is None or not text.strip():
        return plan_dtypes(device)
    names = parse_names(text, TFLITE_DTYPES, option="--dtype", noun="dtype")
    caps = device_caps(device)
    if caps.simulated:
        allowed = caps.dtypes
        refused = [n for n in names if n not in allowed]
        if refused:
            raise InputError(f"--dtype {text!r}: device {device.name!r} runs {', '.join(allowed)}, not "
                             f"{', '.join(refused)}")
    return names


def bit_serial(device: DeviceSpec) -> bool:
    return device_caps(device).bit_serial


def fits_for(device: DeviceSpec) -> Callable[[Graph, str], bool] | None:
    """For an MCU profile: does a kernel's graph (at a dtype) fit its SRAM and flash? The
    graph IR is float32; int8 tensors take a quarter of its bytes."""
    caps = device_caps(device)
    if caps.sram_kb is None or caps.flash_kb is None:
        return None
    from farm.ir.graph import DTYPE_BYTES
    from farm.ir.memory import flash_kb, peak_sram_kb

    sram_kb, flash_limit_kb = caps.sram_kb, caps.flash_kb

    def fits(g: Graph, dtype: str) -> bool:
        f = DTYPE_BYTES[dtype] / 4.0
        sram = peak_sram_kb(g)[0] * f + caps.runtime_sram_kb
        return sram <= 0.9 * sram_kb and flash_kb(g) * f + caps.runtime_flash_kb <= 0.9 * flash_limit_kb

    return fits


def _bits(rng: np.random.Generator) -> tuple[int, int]:
    vals = np.array([b for b, _ in BIT_PRIOR])
    p = np.array([w for _, w in BIT_PRIOR])
    w, a = rng.choice(vals, 2, p=p / p.sum())
    return int(w), int(a)


def _wrap(spec: KernelSpec, dtype: str, rng: np.random.Generator | None) -> TfliteSpec:
    if rng is not None and spec.kernel_type in _MAC_TYPES:
        w, a = _bits(rng)
        return TfliteSpec(spec, dtype, w, a)
    return TfliteSpec(spec, dtype)


def _split(n: int, weights: Sequence[float]) -> list[int]:
    w = np.asarray(weights, dtype=float)
    share = w / w.sum() * n
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts))[: n - int(counts.sum())]:  # largest remainders
        counts[i] += 1
    return [int(c) for c in counts]


def make_tflite_plan(*, budget: int, kernels: Sequence[str] = TFLITE_KERNEL_TYPES, seed: int = 0,
                     dtypes: Sequence[str] = ("float32",), fits: Callable[[Graph, str], bool] | None = None,
                     bits: bool = False) -> list[TfliteSpec]:
    """``budget`` distinct single-kernel TFLite models split over ``dtypes`` (equally) and
    ``kernels`` (by :data:`~predictors.sampling.TYPE_WEIGHTS`), plus the minimal models per
    dtype; only configurations ``fits`` accepts (MCUs), with bit widths from
    :data:`BIT_PRIOR` on MAC kernels when ``bits``. Deterministic in its arguments."""
    if budget < 1:
        raise InputError(f"--budget {budget}: must be at least 1")
    bad = [k for k in kernels if k not in TFLITE_KERNEL_TYPES]
    if bad:
        raise InputError(f"--kernels: {', '.join(bad)} has no TFLite kernel (BatchNormalization folds into the "
                         f"layer before it); TFLite kernel types: {', '.join(TFLITE_KERNEL_TYPES)}")
    plan: list[TfliteSpec] = []
    for di, (dtype, n_dtype) in enumerate(zip(dtypes, _split(budget, [1.0] * len(dtypes)), strict=True)):
        extra = overhead_specs()[: max(0, min(5, n_dtype - len(kernels)))]
        plan += [TfliteSpec(s, dtype) for s in extra]
        seen = {t.name for t in plan}
        bit_rng = np.random.default_rng([seed, 99, di]) if bits else None
        for kt, count in zip(kernels, _split(n_dtype - len(extra), [TYPE_WEIGHTS[k] for k in kernels]), strict=True):
            rng = np.random.default_rng([seed, KERNEL_TYPES.index(kt), di])

            def draw(kt: str = kt, rng: np.random.Generator = rng, dtype: str = dtype,
                     bit_rng: np.random.Generator | None = bit_rng) -> TfliteSpec | None:
                spec = sample_spec(kt, rng, TFLITE_FUSION)
                if fits is not None and not fits(build_graph(spec), dtype):
                    return None
                return _wrap(spec, dtype, bit_rng)

            plan += draw_unique(draw, count, seen, tries=200 * count + 100)
    return plan


def refine_tflite_plan(specs: Sequence[TfliteSpec], latency_ms: Sequence[float], *, n: int, seed: int = 0,
                       fits: Callable[[Graph, str], bool] | None = None, bits: bool = False) -> list[TfliteSpec]:
    """:func:`~predictors.sampling.refine_plan` per dtype: ``n`` new configurations near the
    ones a cross-validated model gets most wrong (with bit widths, latency per bit-op is
    modelled, so the widths do not read as error; new MAC kernels draw fresh widths)."""
    by_dtype: dict[str, list[int]] = {}
    for i, t in enumerate(specs):
        by_dtype.setdefault(t.dtype, []).append(i)
    if n <= 0 or not by_dtype:
        return []
    taken = {t.name for t in specs}
    out: list[TfliteSpec] = []
    for di, ((dtype, idx), want) in enumerate(zip(by_dtype.items(), _split(n, [len(v) for v in by_dtype.values()]),
                                                   strict=True)):
        ys = [float(latency_ms[i]) * (64.0 / (specs[i].w_bits * specs[i].a_bits) if specs[i].w_bits else 1.0)
              for i in idx]
        cands = refine_plan([specs[i].spec for i in idx], ys, n=3 * want, seed=seed + di,
                            exclude={specs[i].spec.name for i in idx})
        bit_rng = np.random.default_rng([seed, 98, di]) if bits else None
        it = iter(cands)

        def next_fitting(it: Any = it, dtype: str = dtype,
                         bit_rng: np.random.Generator | None = bit_rng) -> TfliteSpec | None:
            c = next(it)
            return None if fits is not None and not fits(build_graph(c), dtype) else _wrap(c, dtype, bit_rng)

        out += draw_unique(next_fitting, want, taken, tries=len(cands))
    return out


def describe(plan: Sequence[TfliteSpec]) -> str:
    """``"412 int8 (bit widths 1–8)"``-style summary for the CLI."""
    parts = []
    for dt in dict.fromkeys(t.dtype for t in plan):
        sub = [t for t in plan if t.dtype == dt]
        wb = sorted({t.w_bits for t in sub if t.w_bits})
        parts.append(f"{len(sub)} {dt}" + (f" (bit widths {wb[0]}–{wb[-1]})" if wb else ""))
    return ", ".join(parts)
