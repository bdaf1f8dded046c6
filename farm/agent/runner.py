"""The Runner protocol and what every runner shares: its errors and input generation.

Part of the on-device agent (pushed to boards as its own package: relative imports only).
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import numpy.typing

__all__ = ["Runner", "RunnerUnavailable", "ModelLoadError", "random_input", "first_line"]


class RunnerUnavailable(RuntimeError):
    """The runtime is not installed on this machine."""


class ModelLoadError(ValueError):
    """The runtime refused the model (bad file, unsupported op, dynamic shape)."""


class Runner(Protocol):
    name: str

    def available(self) -> bool: ...

    def version(self) -> str: ...

    def prepare(self, model_path: str, *, threads: int) -> Callable[[], None]: ...


def random_input(shape: tuple[int, ...], dtype: np.typing.DTypeLike, rng: np.random.Generator) -> np.ndarray:
    """Inputs that exercise the kernels realistically: N(0,1) floats, small ints, random bools."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -128), min(info.max, 127)
        return rng.integers(lo, hi + 1, size=shape, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise ModelLoadError(f"cannot generate inputs of dtype {dtype}")


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
