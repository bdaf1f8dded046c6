"""Kernel detection: split a workload graph into the kernels a device actually executes.

A device runs *kernels*, not ONNX nodes: a runtime fuses Conv→BatchNormalization→Relu into
one kernel, folds constants, skips no-op reshapes. Which nodes fuse differs per device and
runtime, so the rules come from (in this order):

1. rules **detected on the device** by the farm itself and stored in the dataset
   (``hwfarm dataset fusion``: nn-Meter's A, B, A+B test),
2. the **simulator profile** of a ``sim://`` device (the simulator fuses by exactly these),
3. the **runtime's documented defaults** (:data:`predictors.runtimes.RUNTIME_FUSION`; what
   each runtime does to a graph lives in :mod:`predictors.runtimes`).

Grouping itself is :func:`farm.ir.kernels.form_kernels`, shared with the simulator so that a
predictor and the simulated device agree on what a kernel is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from farm.devices.caps import device_caps
from farm.ir.graph import Graph, Node
from farm.ir.kernels import Kernel, dedupe, form_kernels
from predictors.runtimes import (
    RUNTIME_FUSION,
    FusionPattern,
    canonical_runtime,
    dedupes,
    folds_constants,
    fusion_defaults,
    layout_block,
)

if TYPE_CHECKING:
    from farm.registry.spec import DeviceSpec
    from farm.store.sqlite import FusionRecord, SqliteStore

__all__ = ["FusionRules", "RUNTIME_FUSION", "KERNEL_TYPES", "DetectedKernel", "kernel_type", "detect_kernels",
           "fusion_rules_for", "layout_block", "detected_fusion_rules", "rules_from_records"]

# The kernel types the predictors model; anything else is estimated by the fallback roofline.
KERNEL_TYPES = ("conv", "dwconv", "gemm", "pool", "gpool", "eltwise", "act", "bn", "concat", "reshape")
_CLASS_TO_TYPE = {"dwconv": "dwconv", "gemm": "gemm", "pool": "pool", "gpool": "gpool", "eltwise": "eltwise",
                  "act": "act", "bn": "bn", "reshape": "reshape", "concat": "concat"}


@dataclass(frozen=True)
class FusionRules:
    """How one device groups nodes into kernels, and where that knowledge came from."""

    patterns: tuple[FusionPattern, ...]
    fold_constants: bool = False  # the converter drops input-independent and dead subgraphs (implies dedupe)
    source: str = "default"  # "detected" | "profile" | "runtime:<name>" | "default"
    dedupe: bool = False  # common-subexpression elimination: the same op on the same input runs once
    # Channels per block of the runtime's blocked layout (onnxruntime's NCHWc: 16 under
    # AVX-512, 8 under AVX/AVX2); 0: none, or not known. Which kernels can run blocked
    # depends on it (predictors.kernel_model.KernelLevelPredictor.boundary_ms).
    layout_block: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"patterns": [list(p) for p in self.patterns], "fold_constants": self.fold_constants,
                "source": self.source, "dedupe": self.dedupe, "layout_block": self.layout_block}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> FusionRules:
        pats = d.get("patterns", [])
        assert isinstance(pats, list)
        block = d.get("layout_block", 0)
        return cls(tuple(tuple(p) for p in pats), bool(d.get("fold_constants", False)), str(d.get("source", "")),
                   bool(d.get("dedupe", False)), int(block) if isinstance(block, int | float | str) else 0)


@dataclass(frozen=True)
class DetectedKernel:
    """One executed kernel: the fused nodes, its predictor type, and the head node."""

    kernel: Kernel
    type: str
    nodes: tuple[Node, ...]

    @property
    def name(self) -> str:
        return self.kernel.name


def kernel_type(k: Kernel) -> str:
    cls = k.kernel_class
    if cls.startswith("conv"):
        return "conv"
    return _CLASS_TO_TYPE.get(cls, f"other:{k.ops[0]}")


def detect_kernels(graph: Graph, rules: FusionRules) -> list[DetectedKernel]:
    """The kernels ``graph`` runs as under ``rules``, in execution order."""
    if rules.dedupe and not rules.fold_constants:
        graph = dedupe(graph, share_scalars=True)
    by_name = {n.name: n for n in graph.nodes}
    out = []
    for k in form_kernels(graph, rules.patterns, 1, fold_constants=rules.fold_constants):
        nodes = tuple(by_name[n] for n in k.nodes if n in by_name)
        out.append(DetectedKernel(k, kernel_type(k), nodes))
    return out


def fusion_rules_for(spec: DeviceSpec, store: SqliteStore | None = None, *, runtime: str | None = None) -> FusionRules:
    """The fusion rules of a registered device (detected > simulator profile > runtime default)."""
    caps = device_caps(spec)
    rt = canonical_runtime(runtime or spec.default_runtime)
    if store is not None:
        found = _detected(store, spec.name)
        if found:
            # The A, B, A+B test finds fusion patterns, not whether the converter folds
            # constants and dedupes: that comes from the runtime, or a simulator's profile.
            fold = caps.fold_constants if caps.fold_constants is not None else folds_constants(rt)
            return FusionRules(found, fold, "detected", dedupe=dedupes(rt))
    if caps.fusion is not None:
        return FusionRules(caps.fusion, bool(caps.fold_constants), f"profile:{caps.profile}")
    return FusionRules(fusion_defaults(rt), folds_constants(rt), f"runtime:{rt}", dedupe=dedupes(rt))


def rules_from_records(records: Sequence[FusionRecord]) -> tuple[tuple[str, ...], ...]:
    """The op sequences fused by every stored candidate that has them (``conv+bn`` and
    ``dwconv+bn`` are both ``Conv, BatchNormalization``)."""
    verdicts: dict[tuple[str, ...], list[bool]] = {}
    for r in records:
        verdicts.setdefault(r.ops, []).append(r.fused)
    return tuple(ops for ops, v in verdicts.items() if all(v))


def detected_fusion_rules(store: SqliteStore, device: str) -> tuple[tuple[str, ...], ...] | None:
    """The op sequences ``device`` runs as one kernel, as detected by
    :func:`predictors.fusion.detect_fusion` and stored in the dataset; None when fusion was
    never detected on that device."""
    records = store.fusion_rules(device)
    if not records:
        return None
    return rules_from_records(records)


def _detected(store: SqliteStore, device: str) -> tuple[FusionPattern, ...] | None:
    """Rules stored by ``hwfarm dataset fusion``, if that ran for this device."""
    found = detected_fusion_rules(store, device)
    return tuple(tuple(p) for p in found) if found else None
