"""The reference workload: a small fixed computation that tells a quiet machine from a slow one.

A shared host (a cloud VM, a CI runner, a phone heating up) runs for seconds at a time in
slower states: a neighbour on the same physical core or memory channel, a throttled clock.
A model measured in such a state is slower for reasons that are not the model's. The
reference is timed before and after every round of a measurement; its reading is the
machine's state at that moment, in microseconds: on this project's 2-core EPYC VM it reads
~19 µs quiet and 26–70 µs in the slow states that made a model run 1.3–1.5x slower
(``bench/repeatability.py``). The coordinator compares a round's readings with the lowest the
device has shown (its *floor*) to tell quiet rounds from slow ones (``farm.estimate``).

What it computes is fixed forever (changing it would move every floor): two 64x64 float32
matrix products (the vector units, as convolutions use them) and a copy of 256 KiB (the
caches and memory path), on arrays allocated once. A reading is the median of ``reads``
timings, so one interrupted timing does not move it.

Part of the on-device agent: standard library and numpy only.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

__all__ = ["REFERENCE_WORKLOAD", "Reference", "reference"]

REFERENCE_WORKLOAD = "matmul-64x64-f32-x2+copy-256KiB"


class Reference:
    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        rng = np.random.default_rng(0)
        self._a = rng.standard_normal((64, 64)).astype(np.float32)
        self._b = np.zeros(1 << 16, np.float32)  # 256 KiB
        self._out = np.empty((64, 64), np.float32)
        self._out2 = np.empty((64, 64), np.float32)
        self._copy = np.empty_like(self._b)
        self.clock = clock
        for _ in range(3):  # first touches: page faults, BLAS initialisation
            self.once()

    def once(self) -> float:
        """One timing of the workload, in µs."""
        a, out = self._a, self._out
        t0 = self.clock()
        np.matmul(a, a, out=out)
        np.matmul(out, a, out=self._out2)
        np.copyto(self._copy, self._b)
        return (self.clock() - t0) * 1e6

    def read(self, reads: int = 9) -> float:
        """The machine's state now: the median of ``reads`` timings, in µs."""
        return statistics.median(self.once() for _ in range(max(1, reads)))


_REFERENCE: Reference | None = None


def reference() -> Reference:
    """The process's reference (arrays allocated once)."""
    global _REFERENCE
    if _REFERENCE is None:
        _REFERENCE = Reference()
    return _REFERENCE
