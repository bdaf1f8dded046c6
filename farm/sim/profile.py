"""Simulator profiles: validated once from YAML into frozen pydantic models."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from farm.errors import InputError

__all__ = ["KernelCost", "Noise", "Power", "Accelerator", "HostCpu", "OnChipMemory", "McuMemory", "Thermal",
           "BitSerial", "SimProfile", "load_profile", "base_profile", "profile_names", "PROFILE_DIR"]

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KernelCost(_Frozen):
    """Cost of one kernel class: ``t = macs_aligned / (gmacs·1e6) + bytes / (gbs·1e6) + overhead_us/1e3`` ms.

    ``gmacs`` / ``gbs`` of 0 mean the term is absent (e.g. a pooling kernel has no MACs)."""

    gmacs: float = Field(0.0, ge=0)  # effective giga-MACs per second for this kernel class
    gbs: float = Field(0.0, ge=0)  # effective GB/s of bytes moved
    overhead_us: float = Field(0.0, ge=0)  # dispatch + fixed cost per kernel


class Noise(_Frozen):
    cv: float = Field(0.01, ge=0, le=1)  # lognormal sigma of run-to-run jitter
    outlier_rate: float = Field(0.01, ge=0, le=0.5)  # probability a run is hit by an interruption
    outlier_scale: tuple[float, float] = (1.2, 2.0)  # slow-down factor range of an outlier


class Power(_Frozen):
    """Energy (mJ) = static_w · latency + dynamic_w · compute time + pj_per_byte · bytes moved
    + link_pj_per_byte · bytes over the host link (transfers, streamed parameters)."""

    static_w: float = Field(ge=0)
    dynamic_w: float = Field(ge=0)  # extra power while computing at full rate
    pj_per_byte: float = Field(0.0, ge=0)  # DRAM traffic energy
    link_pj_per_byte: float = Field(0.0, ge=0)  # USB/PCIe/shared-memory traffic energy


class Accelerator(_Frozen):
    """Placement: which kernels the accelerator runs; the rest fall back to the host CPU.

    A kernel runs on the accelerator when every op in it is supported (``ops`` lists op
    types by ONNX and TFLite name, ``None`` = every op but ``unsupported_ops``) and its
    dtype is one of the profile's ``dtypes``. ``fallback: rest_of_graph`` is the Edge TPU
    compiler's rule: everything after the first unsupported op runs on the CPU. Each tensor
    crossing between host and accelerator (graph inputs and outputs included) costs
    ``transfer_overhead_us`` plus its bytes at ``transfer_gbs``."""

    name: str = Field(min_length=1)  # placement label in the breakdown: edgetpu, npu, gpu
    ops: tuple[str, ...] | None = None
    unsupported_ops: tuple[str, ...] = ()
    fallback: Literal["per_op", "rest_of_graph"] = "per_op"
    transfer_gbs: float = Field(gt=0)
    transfer_overhead_us: float = Field(0.0, ge=0)

    def supports_op(self, op: str) -> bool:
        return op not in self.unsupported_ops and (self.ops is None or op in self.ops)


class HostCpu(_Frozen):
    """The host/companion CPU that runs fallback kernels (same cost form as ``kernels``)."""

    description: str = ""
    dtypes: tuple[str, ...] = ("float32", "int8")
    vector_width: int = Field(4, ge=1)
    kernels: dict[str, KernelCost]

    def cost(self, kernel_class: str) -> KernelCost:
        return self.kernels.get(kernel_class) or self.kernels["default"]


class OnChipMemory(_Frozen):
    """Parameters are cached on chip in graph order up to ``sram_kb``; the rest stream from
    DRAM/USB at ``link_gbs`` on every inference (the Edge TPU's 8 MB SRAM)."""

    sram_kb: float = Field(gt=0)
    link_gbs: float = Field(gt=0)


class McuMemory(_Frozen):
    """MCU limits: peak SRAM = largest sum of live activation tensors over the topological
    order + ``runtime_sram_kb``; flash = weights + ``runtime_flash_kb``. Over either limit the
    model does not fit: an out-of-memory failure, not a slow run."""

    sram_kb: float = Field(gt=0)
    flash_kb: float = Field(gt=0)
    runtime_sram_kb: float = Field(0.0, ge=0)
    runtime_flash_kb: float = Field(0.0, ge=0)


class Thermal(_Frozen):
    """First-order thermal model carried across the runs of one device instance: while busy
    the die heads for ``ambient_c + busy_rise_c``, while idle back to ``ambient_c``, with
    time constant ``tau_s``; at or above ``throttle_c`` the clock drops to ``throttle_clock``
    (compute time divided by it). ``idle_between_jobs_s`` is the idle gap between two
    workloads (loading the next model)."""

    ambient_c: float = 25.0
    busy_rise_c: float = Field(gt=0)
    tau_s: float = Field(gt=0)
    throttle_c: float
    throttle_clock: float = Field(gt=0, le=1)
    idle_between_jobs_s: float = Field(1.0, ge=0)


class BitSerial(_Frozen):
    """Bit-level composable MAC array (BitFusion, Sharma et al., ISCA 2018): a fusion unit of
    ``bricks`` BitBricks of ``brick_bits``×``brick_bits`` does ``bricks / (⌈w/b⌉·⌈a/b⌉)``
    MACs per cycle, so compute time scales with ⌈w_bits/b⌉·⌈a_bits/b⌉. Kernel ``gmacs`` are
    the rate at ``reference_bits`` (w, a). Bit widths come from node attrs ``w_bits`` /
    ``a_bits`` (default: the dtype's width); tensor bytes scale with them too."""

    brick_bits: int = Field(2, ge=1)
    bricks: int = Field(16, ge=1)
    reference_bits: tuple[int, int] = (8, 8)
    max_bits: int = Field(16, ge=1)


class SimProfile(_Frozen):
    name: str
    description: str
    device_class: str
    dtypes: tuple[str, ...] = ("float32",)
    vector_width: int = Field(4, ge=1)  # channel counts round up to multiples of this
    threads_max: int = Field(1, ge=1)
    parallel_fraction: float = Field(0.0, ge=0, le=1)  # Amdahl: share of compute that scales with threads
    fusion: tuple[tuple[str, ...], ...] = ()  # op sequences executed as one kernel
    fold_constants: bool = False  # the runtime's converter folds input-independent and dead subgraphs
    invoke_overhead_us: float = Field(0.0, ge=0)  # fixed cost of one inference call
    kernels: dict[str, KernelCost]  # by kernel class (see farm.ir.kernels.kernel_class); "default" required
    noise: Noise = Noise()
    power: Power | None = None
    dtype_scale: dict[str, float] = Field(default_factory=dict)  # compute-time multiplier per dtype
    accelerator: Accelerator | None = None
    host: HostCpu | None = None
    onchip: OnChipMemory | None = None
    mcu: McuMemory | None = None
    thermal: Thermal | None = None
    bitserial: BitSerial | None = None
    sources: tuple[str, ...] = ()
    calibration: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SimProfile:
        if self.accelerator is not None and self.host is None:
            raise ValueError("an accelerator profile needs a 'host' CPU cost model for its fallback ops")
        if self.host is not None and "default" not in self.host.kernels:
            raise ValueError("host.kernels must define a 'default' class")
        if any(v <= 0 for v in self.dtype_scale.values()):
            raise ValueError("dtype_scale values must be > 0")
        return self

    def cost(self, kernel_class: str) -> KernelCost:
        return self.kernels.get(kernel_class) or self.kernels["default"]

    def scaled(self, factors: dict[str, float]) -> SimProfile:
        """The profile with its cost terms scaled (calibration factors, see
        :mod:`farm.sim.published`): ``compute`` divides every MAC rate, ``memory`` every
        bandwidth, ``overhead`` multiplies per-kernel and per-inference costs, ``link``
        divides the host-link and parameter-streaming bandwidths."""
        sc, sm, so, sl = (float(factors.get(t, 1.0)) for t in ("compute", "memory", "overhead", "link"))

        def k(c: KernelCost) -> KernelCost:
            return c.model_copy(update={"gmacs": c.gmacs / sc if c.gmacs else 0.0,
                                        "gbs": c.gbs / sm if c.gbs else 0.0, "overhead_us": c.overhead_us * so})

        upd: dict[str, Any] = {"kernels": {n: k(c) for n, c in self.kernels.items()},
                               "invoke_overhead_us": self.invoke_overhead_us * so}
        if self.accelerator is not None:
            upd["accelerator"] = self.accelerator.model_copy(update={
                "transfer_gbs": self.accelerator.transfer_gbs / sl,
                "transfer_overhead_us": self.accelerator.transfer_overhead_us * sl})
        if self.onchip is not None:
            upd["onchip"] = self.onchip.model_copy(update={"link_gbs": self.onchip.link_gbs / sl})
        return self.model_copy(update=upd)

    def features(self) -> list[str]:
        """What the profile models beyond kernel costs, in words (``sim list``, ``devices check``)."""
        out = []
        if self.accelerator is not None:
            out.append(f"accelerator {self.accelerator.name} with CPU fallback ({self.accelerator.fallback})")
        if self.onchip is not None:
            out.append(f"{self.onchip.sram_kb:g} KB on-chip parameter SRAM")
        if self.mcu is not None:
            out.append(f"MCU limits: {self.mcu.sram_kb:g} KB SRAM, {self.mcu.flash_kb:g} KB flash")
        if self.bitserial is not None:
            out.append("bit-serial (w_bits x a_bits)")
        if self.thermal is not None:
            out.append(f"thermal throttling above {self.thermal.throttle_c:g} C")
        if self.power is not None:
            out.append("energy")
        return out

    @property
    def placement_name(self) -> str:
        """What the breakdown calls work done by the profile's own kernels."""
        return self.accelerator.name if self.accelerator is not None else "cpu"


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@lru_cache(maxsize=64)
def load_profile(name: str) -> SimProfile:
    """The profile as simulated devices use it: its costs with the calibration's fitted
    scale factors (``calibration.scales``) applied."""
    base = base_profile(name)
    scales = base.calibration.get("scales")
    if not scales:
        return base
    if not isinstance(scales, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in scales.values()):
        raise InputError(f"{PROFILE_DIR / (name + '.yaml')}: field 'calibration.scales': positive numbers by term expected")
    return base.scaled(scales)


@lru_cache(maxsize=64)
def base_profile(name: str) -> SimProfile:
    """The profile file as written: physically set costs before calibration scaling."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    path = PROFILE_DIR / f"{name}.yaml"
    if not path.exists():
        raise InputError(f"unknown simulator profile {name!r}; known: {', '.join(profile_names())}")
    try:
        data = YAML(typ="safe").load(path.read_text())
        profile = SimProfile.model_validate(data)
    except YAMLError as err:
        raise InputError(f"{path}: invalid YAML: {err}") from None
    except ValidationError as err:
        e = err.errors()[0]
        where = ".".join(map(str, e["loc"])) or "(profile)"
        raise InputError(f"{path}: field {where!r}: {e['msg']}") from None
    if "default" not in profile.kernels:
        raise InputError(f"{path}: kernels must define a 'default' class")
    return profile
