"""Calibration networks: whole networks a kernel dataset measures besides its kernels.

A lone kernel and the same kernel inside a network do not cost the same: onnxruntime on an
x86 host converts every lone convolution's tensors to its blocked NCHWc layout and back,
while a network converts only where the layout changes, and the caches hold different data.
The chains of the kernel plan measure the conversions; what a network actually saves is
fitted on these networks (:meth:`predictors.kernel_model.KernelLevelPredictor.fit`).

They are random architectures of the NB201 and FBNet spaces drawn with a seed of their own
(:data:`CALIBRATION_SEED`), written like the kernel models into the dataset's models folder
(``calibration/``): training uses them, evaluation never does, and `bench/predictor_accuracy.py`
leaves them out of its held-out networks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from predictors.sampling import to_onnx_bytes
from predictors.space_model import build_arch, sample_archs

__all__ = ["CALIBRATION_DIR", "CALIBRATION_SEED", "DEFAULT_CALIBRATION", "CalibrationSpec", "calibration_plan",
           "default_calibration", "write_calibration"]

CALIBRATION_DIR = "calibration"  # the models folder's subfolder (what marks a measurement as calibration)
CALIBRATION_SEED = 7  # bench/predictor_accuracy.py draws its held-out samples with seed 123
DEFAULT_CALIBRATION = 32  # networks in the default plan: ~1 min on the host CPU
_SPACES = ("nb201", "fbnet")


@dataclass(frozen=True)
class CalibrationSpec:
    """One calibration network: an architecture of a search space."""

    space: str
    arch: str
    kernel_type: str = CALIBRATION_DIR  # the plan's subfolder and its row in `dataset build`'s table

    @property
    def name(self) -> str:
        return f"calib-{self.space}-{hashlib.sha256(self.arch.encode()).hexdigest()[:12]}"


def default_calibration(budget: int | None) -> int:
    """Calibration networks for a kernel budget: the default plan's 32, about one per 60
    kernels for smaller budgets (none below 300: a quick dataset stays quick)."""
    if budget is None:
        return DEFAULT_CALIBRATION
    return min(DEFAULT_CALIBRATION, budget // 60) if budget >= 300 else 0


def calibration_plan(n: int, *, seed: int = CALIBRATION_SEED) -> list[CalibrationSpec]:
    """``n`` networks, split evenly over the spaces (deterministic in ``n`` and ``seed``)."""
    out: list[CalibrationSpec] = []
    for i, space in enumerate(_SPACES):
        k = n // len(_SPACES) + (1 if i < n % len(_SPACES) else 0)
        out += [CalibrationSpec(space, a) for a in sample_archs(space, k, seed=seed)]
    return out


def write_calibration(spec: CalibrationSpec) -> tuple[bytes, str]:
    """The plan's model writer (predictors.dataset.measure_specs): the network as ONNX."""
    return to_onnx_bytes(build_arch(spec.space, spec.arch)), ".onnx"
