"""Simulator profiles: validated once from YAML into frozen pydantic models."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError

__all__ = ["KernelCost", "Noise", "Power", "SimProfile", "load_profile", "profile_names", "PROFILE_DIR"]

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
    static_w: float = Field(ge=0)
    dynamic_w: float = Field(ge=0)  # extra power while computing at full rate
    pj_per_byte: float = Field(0.0, ge=0)  # DRAM traffic energy


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
    kernels: dict[str, KernelCost]  # by kernel class (see farm.sim.model.kernel_class); "default" required
    noise: Noise = Noise()
    power: Power | None = None
    sources: tuple[str, ...] = ()
    calibration: dict[str, Any] = Field(default_factory=dict)

    def cost(self, kernel_class: str) -> KernelCost:
        return self.kernels.get(kernel_class) or self.kernels["default"]


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@lru_cache(maxsize=64)
def load_profile(name: str) -> SimProfile:
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
        raise InputError(f"{path}: field {'.'.join(map(str, e['loc']))!r}: {e['msg']}") from None
    if "default" not in profile.kernels:
        raise InputError(f"{path}: kernels must define a 'default' class")
    return profile
