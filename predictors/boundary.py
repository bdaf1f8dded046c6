"""The host ↔ accelerator boundary cost a single-kernel model pays and a network pays once.

On an accelerator behind a link (Edge TPU over USB, a phone NPU over FastRPC) every model's
inputs travel to the chip and its outputs back. A single-kernel model pays that for the
kernel's own input and output; inside a network the same kernel reads and writes on-chip
memory, and only the network's inputs and outputs cross the link. A kernel model trained
on the raw single-kernel latencies therefore charges every kernel of a network a transfer
it does not make (the Edge TPU's 2-ms MobileNet came out at 23 ms).

:class:`IoCost` is the per-model boundary term ``per_tensor_ms · (tensors − 2) + per_kb_ms ·
kB`` over the model's graph inputs and outputs (two tensors are the minimal models' own,
already in the per-inference overhead). It is fitted on the dataset's pure data-movement
kernels — ``reshape`` (no arithmetic: what it costs alone is the transfer) and ``concat`` of
2–4 inputs (which separates the per-tensor from the per-byte part) — with a non-negative
least-squares fit; the kernel models then learn latency net of it, and a prediction adds it
once for the whole network. Parameters past the chip's on-chip cache (Edge TPU: 8 MB) stream
over the same link on every inference, which a network pays for its total weights: the term
adds ``per_kb_ms`` per kB of weights past the cache. Used on devices with an accelerator
behind a link (:func:`io_boundary`); elsewhere the term is zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from farm.devices.caps import device_caps
from farm.ir.graph import Graph
from farm.ir.memory import flash_kb

if TYPE_CHECKING:
    from farm.registry.spec import DeviceSpec
    from predictors.kernels import DetectedKernel

__all__ = ["IoBoundary", "IoCost", "io_quantities", "fit_io_cost", "io_boundary", "PROBE_TYPES"]

PROBE_TYPES = ("reshape", "concat")


def io_quantities(graph: Graph) -> tuple[float, float]:
    """(graph input and output tensors, their kB)."""
    ts = (*graph.inputs, *graph.outputs)
    return float(len(ts)), sum(t.nbytes for t in ts) / 1024.0


@dataclass(frozen=True)
class IoBoundary:
    """A device's link: ``sram_kb`` of on-chip parameter cache (0: none); parameters past it
    cross the same link on every inference (the Edge TPU's 8 MB)."""

    sram_kb: float = 0.0


@dataclass(frozen=True)
class IoCost:
    per_tensor_ms: float = 0.0
    per_kb_ms: float = 0.0
    sram_kb: float = 0.0

    def cost_ms(self, graph: Graph) -> float:
        if not (self.per_tensor_ms or self.per_kb_ms):
            return 0.0
        n, kb = io_quantities(graph)
        streamed = max(0.0, flash_kb(graph) - self.sram_kb) if self.sram_kb else 0.0
        return self.per_tensor_ms * max(n - 2.0, 0.0) + self.per_kb_ms * (kb + streamed)

    def to_dict(self) -> dict[str, float]:
        return {"per_tensor_ms": self.per_tensor_ms, "per_kb_ms": self.per_kb_ms, "sram_kb": self.sram_kb}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IoCost:
        d = d or {}
        return cls(float(d.get("per_tensor_ms", 0.0)), float(d.get("per_kb_ms", 0.0)), float(d.get("sram_kb", 0.0)))


def fit_io_cost(singles: Sequence[tuple[DetectedKernel, Graph, float]], overhead: float,
                boundary: IoBoundary) -> IoCost:
    """Fit on the single-kernel samples of :data:`PROBE_TYPES` (kernel, graph, cost): cost −
    overhead = dispatch of the probe's type + per_tensor · (tensors − 2) + per_kb · kB, all
    non-negative (one dispatch per type: a concat's differs from a reshape's, and the
    per-tensor term must not absorb it). Fewer than 6 probes: no boundary term."""
    from scipy.optimize import nnls

    rows, ys = [], []
    for k, g, y in singles:
        if k.type in PROBE_TYPES:
            n, kb = io_quantities(g)
            rows.append([float(k.type == t) for t in PROBE_TYPES] + [max(n - 2.0, 0.0), kb])
            ys.append(y - overhead)
    if len(rows) < 6:
        return IoCost()
    # Absolute error: the per-kB term shows in the big probes; in the small ones it is below
    # the noise, and weighting them up (relative error) halved it on the simulated NPU.
    coef, _ = nnls(np.array(rows), np.array(ys))
    return IoCost(float(coef[-2]), float(coef[-1]), boundary.sram_kb)


def io_boundary(spec: DeviceSpec) -> IoBoundary | None:
    """The link of a device whose models cross one between host and accelerator: simulated
    accelerator profiles that run the TFLite int8 plan (Edge TPU, phone NPU; on-chip cache
    from the profile), and LiteRT devices with a delegate (the Edge TPU's documented 8 MB
    parameter cache for ``libedgetpu``). None elsewhere."""
    from predictors.tflite_plan import plan_format

    if plan_format(spec) != "tflite":
        return None
    caps = device_caps(spec)
    if caps.accelerator is None:
        return None
    return IoBoundary(caps.onchip_sram_kb or 0.0)
