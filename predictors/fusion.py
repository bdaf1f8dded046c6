"""Detect a device's fusion rules with the farm itself (nn-Meter's method).

For each candidate op sequence (``conv+bn``, ``conv+bn+relu``, ``add+relu``, …) the farm
measures the head alone (A), each following op alone on the head's output shape (B, C, …)
and the whole chain (A+B+…). Every model also pays the per-inference overhead, so two
minimal models are measured too: one tiny ReLU (``T1``) and two chained tiny ReLUs (``T2``);
the invoke overhead is ``2·T1 − T2`` (assuming a device does not fuse ReLU+ReLU). With net
times ``x = T(x) − overhead``:

- not fused: the chain runs every op as its own kernel, ``chain ≈ A + B + …``;
- fused: the chain is one kernel, ``chain ≈ A`` (the fused ops ride along in the head's loop).

Verdict per test shape: fused iff ``chain − A < ½·min(B, C, …)``. A shape is *conclusive*
only if the smallest follower costs clearly more than the measurement uncertainty (4× the
head's and chain's 95% CI half-widths plus 2% of A): a follower that costs nothing on the
device (a free elementwise op) cannot tell fused from not fused. A candidate is fused iff
it was fused on every conclusive shape and at least one shape was conclusive. Three shapes
per candidate: a tiny one (where a follower's fixed per-kernel cost dominates) and two where
the followers' memory traffic is a sizeable fraction of the head's time.

Results go to the dataset (``fusion_rules`` table, one row per candidate with its
evidence); :func:`~predictors.kernels.detected_fusion_rules` (re-exported here) turns them
into the op-sequence rules that :func:`farm.ir.kernels.form_kernels` takes. An op sequence is a rule when every candidate
with that sequence (``conv+bn`` and ``dwconv+bn`` are both ``Conv, BatchNormalization``) was
fused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from farm.errors import InputError
from farm.measurement import Measurement, Policy
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import JobEvent
from farm.store.sqlite import FusionRecord, SqliteStore
from predictors.dataset import DATASET_POLICY, SpecResult, measure_specs
from predictors.kernels import detected_fusion_rules, rules_from_records
from predictors.runtimes import LAYOUT_OPS
from predictors.sampling import KernelSpec, build_graph, parse_names

__all__ = ["CANDIDATES", "FusionTest", "fusion_tests", "decide", "invoke_overhead_ms", "rules_from_records",
           "detect_fusion_graph", "check_graph_method", "detect_fusion", "detected_fusion_rules",
           "candidate_ops", "parse_candidates"]

# name → (head kernel type, variant) of the chain model (see predictors.sampling.build_graph).
CANDIDATES: dict[str, tuple[str, str]] = {
    "conv+bn": ("conv", "bn"), "conv+relu": ("conv", "relu"), "conv+relu6": ("conv", "relu6"),
    "conv+bn+relu": ("conv", "bn+relu"), "conv+bn+relu6": ("conv", "bn+relu6"), "conv+add": ("conv", "add"),
    "conv+add+relu": ("conv", "add+relu"), "dwconv+bn": ("dwconv", "bn"), "dwconv+relu": ("dwconv", "relu"),
    "dwconv+bn+relu": ("dwconv", "bn+relu"), "gemm+relu": ("gemm", "relu"), "add+relu": ("eltwise", "add+relu"),
    "bn+relu": ("bn", "relu"),
}

# Test shapes per head type: small channel counts at a large resolution, so that the
# followers (memory-bound elementwise ops) cost a sizeable fraction of the head.
_SHAPES: dict[str, tuple[dict[str, int], ...]] = {
    "conv": ({"cin": 8, "cout": 8, "hw": 8, "k": 1}, {"cin": 16, "cout": 16, "hw": 56, "k": 1},
             {"cin": 8, "cout": 16, "hw": 28, "k": 3}),
    "dwconv": ({"cin": 8, "hw": 8, "k": 3}, {"cin": 32, "hw": 56, "k": 3}, {"cin": 64, "hw": 28, "k": 3}),
    "gemm": ({"rows": 1, "cin": 16, "cout": 16}, {"rows": 64, "cin": 32, "cout": 32},
             {"rows": 256, "cin": 16, "cout": 16}),
    "eltwise": ({"cin": 8, "hw": 4}, {"cin": 32, "hw": 56}, {"cin": 64, "hw": 28}),
    "bn": ({"cin": 8, "hw": 4}, {"cin": 32, "hw": 56}, {"cin": 64, "hw": 28}),
}
_MINIMAL = KernelSpec("overhead", "relu", cin=1)
_MINIMAL2 = KernelSpec("overhead", "relu+relu", cin=1)


def parse_candidates(text: str | None) -> tuple[str, ...]:
    if text is None or not text.strip():
        return tuple(CANDIDATES)
    return parse_names(text, tuple(CANDIDATES), option="--candidates", noun="candidate")


def candidate_ops(name: str) -> tuple[str, ...]:
    """The ONNX op sequence of a candidate (``conv+bn+relu`` → Conv, BatchNormalization, Relu)."""
    return tuple(n.op for n in build_graph(fusion_tests(name)[0].chain).nodes)


@dataclass(frozen=True)
class FusionTest:
    """The models of one candidate at one shape: head alone, each follower alone, the chain."""

    candidate: str
    head: KernelSpec
    followers: tuple[KernelSpec, ...]
    chain: KernelSpec


def _follower(op: str, out_shape: tuple[int, ...]) -> KernelSpec:
    if len(out_shape) == 4:
        c, hw = out_shape[1], out_shape[2]
    else:  # a 2-D gemm output: the same number of elements as a [1, N, 1, 1] tensor
        c, hw = out_shape[0] * out_shape[1], 1
    if op == "bn":
        return KernelSpec("bn", cin=c, hw=hw)
    if op in ("relu", "relu6"):
        return KernelSpec("act", op, cin=c, hw=hw)
    if op == "add":
        return KernelSpec("eltwise", "add", cin=c, hw=hw)
    raise ValueError(f"no standalone model for {op!r}")


def fusion_tests(name: str) -> list[FusionTest]:
    head_type, variant = CANDIDATES[name]
    tests = []
    for shape in _SHAPES[head_type]:
        if head_type == "eltwise":  # add+relu: the head is the Add
            head = KernelSpec("eltwise", "add", **shape)
            chain = replace(head, variant=variant)
            follow_ops = variant.split("+")[1:]
        else:
            extra = {"cout": shape["cin"]} if head_type == "dwconv" else {}  # depthwise: cout = cin
            head = KernelSpec(head_type, "", **(shape | extra))
            chain = replace(head, variant=variant)
            follow_ops = variant.split("+")
        out_shape = build_graph(head).outputs[0].shape
        tests.append(FusionTest(name, head, tuple(_follower(op, out_shape) for op in follow_ops), chain))
    return tests


def _ci_half(m: Measurement) -> float:
    return max(0.0, (m.stats.ci_high_ms - m.stats.ci_low_ms) / 2)


def invoke_overhead_ms(one: Measurement, two: Measurement) -> float:
    """Per-inference overhead from a one-op and a two-op minimal model: ``2·T1 − T2``."""
    return max(0.0, 2 * one.latency_ms - two.latency_ms)


def decide(overhead_ms: float, head: Measurement, followers: Sequence[Measurement],
           chain: Measurement) -> dict[str, Any]:
    """One shape's verdict and its numbers (net milliseconds after the invoke overhead)."""
    base = overhead_ms
    a = max(head.latency_ms - base, 0.0)
    fs = [max(f.latency_ms - base, 0.0) for f in followers]
    c = max(chain.latency_ms - base, 0.0)
    resolution = 4 * (_ci_half(head) + _ci_half(chain)) + 0.02 * a
    conclusive = min(fs) > resolution
    return {"overhead_ms": base, "head_ms": a, "followers_ms": fs, "chain_ms": c,
            "unfused_sum_ms": a + sum(fs), "resolution_ms": resolution, "conclusive": conclusive,
            "fused": bool(conclusive and c - a < 0.5 * min(fs))}


def _combine(repeats: list[Measurement]) -> Measurement:
    """One measurement from several repeats of the same model (separate records): the median
    of their medians, with a CI half-width of at least half their spread (load that drifts
    between repeats makes a verdict inconclusive instead of wrong)."""
    if len(repeats) == 1:
        return repeats[0]
    meds = sorted(m.latency_ms for m in repeats)
    med = meds[len(meds) // 2] if len(meds) % 2 else (meds[len(meds) // 2 - 1] + meds[len(meds) // 2]) / 2
    half = max(max(_ci_half(m) for m in repeats), (meds[-1] - meds[0]) / 2)
    stats = replace(repeats[0].stats, median_ms=med, ci_low_ms=med - half, ci_high_ms=med + half)
    return replace(repeats[0], stats=stats)


def detect_fusion(store: SqliteStore, device: DeviceSpec, *, models_dir: Path,
                  candidates: Sequence[str] | None = None, policy: Policy = DATASET_POLICY, repeats: int = 1,
                  on_event: Callable[[JobEvent], None] | None = None,
                  on_cached: Callable[[int], None] | None = None,
                  on_requeue: Callable[[list[int]], None] | None = None) -> list[FusionRecord]:
    """Measure the candidates' test models on ``device``, decide, store and return the records.

    ``repeats`` > 1 measures every test model that many times, the whole set in alternating
    order each time (later repeats are forced, new records; not ``Settings.rounds``, which
    pool into one record), and decides on the combined numbers (:func:`_combine`): on a host
    whose load drifts, one measurement can mislead.

    Raises :class:`farm.errors.DeviceError` if a test model could not be measured (nothing is
    stored then: a partial verdict would be worse than none)."""
    if repeats < 1:
        raise InputError(f"--repeats {repeats}: must be at least 1")
    names = tuple(candidates) if candidates is not None else tuple(CANDIDATES)
    tests = [t for n in names for t in fusion_tests(n)]
    specs: dict[str, KernelSpec] = {_MINIMAL.name: _MINIMAL, _MINIMAL2.name: _MINIMAL2}
    for t in tests:
        for s in (t.head, *t.followers, t.chain):
            specs.setdefault(s.name, s)
    order = list(specs.values())
    results: list[SpecResult] = []
    for r in range(repeats):
        results += measure_specs(store, device, order if r % 2 == 0 else order[::-1], models_dir=models_dir,
                                 policy=policy, subdir="fusion", on_event=on_event, on_cached=on_cached,
                                 on_requeue=on_requeue,
                                 force=r > 0)
    by_name: dict[str, list[Measurement]] = {}
    for res in results:
        if res.measurement is not None:
            by_name.setdefault(res.spec.name, []).append(res.measurement)
    failed = [r for r in results if r.measurement is None]
    if failed:
        from farm.errors import DeviceError

        raise DeviceError(f"device {device.name!r}: fusion test model {failed[0].spec.name} failed: {failed[0].error}"
                          f" ({len(failed)} of {len(results)} failed); no fusion rules stored")

    def m(spec: KernelSpec) -> Measurement:
        return _combine(by_name[spec.name])

    t0 = invoke_overhead_ms(m(_MINIMAL), m(_MINIMAL2))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = []
    for name in names:
        shapes = []
        for t in fusion_tests(name):
            verdict = decide(t0, m(t.head), [m(f) for f in t.followers], m(t.chain))
            shapes.append({"chain": t.chain.name, "head": t.head.name, "followers": [f.name for f in t.followers]}
                          | verdict)
        conclusive = [s for s in shapes if s["conclusive"]]
        fused = bool(conclusive) and all(s["fused"] for s in conclusive)
        records.append(FusionRecord(device.name, name, candidate_ops(name), fused,
                                    {"method": "measured", "shapes": shapes, "conclusive": bool(conclusive),
                                     "overhead_ms": t0, "repeats": repeats}, now))
    store.put_fusion_rules(device.name, records)
    return records


def check_graph_method(device: DeviceSpec) -> None:
    """InputError unless the graph method applies to ``device`` (local:// with onnxruntime)."""
    if device.kind != "local" or (device.runtime or "onnxruntime") != "onnxruntime":
        raise InputError(f"device {device.name!r}: --method graph needs a local:// device running onnxruntime "
                         f"(this one is {device.kind}://, runtime {device.runtime or 'onnxruntime'}); "
                         "use the measured method")


def detect_fusion_graph(store: SqliteStore, device: DeviceSpec, *,
                        candidates: Sequence[str] | None = None) -> list[FusionRecord]:
    """Ask the runtime instead of the clock: build each candidate's chain model, let the
    device's onnxruntime optimize it (the level the agent runs with, ``ORT_ENABLE_ALL``) and
    count the compute nodes left (layout reorders aside). One node left ⇒ fused.

    Only for ``local://`` devices running onnxruntime: the optimizer that runs here is then the
    one the device runs. Load-independent, so it is the reliable choice on a busy host; the
    measured method (:func:`detect_fusion`) is the one for every other device."""
    import tempfile

    check_graph_method(device)
    import onnx
    import onnxruntime as ort

    from predictors.sampling import to_onnx_bytes

    names = tuple(candidates) if candidates is not None else tuple(CANDIDATES)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = []
    with tempfile.TemporaryDirectory(prefix="hwfarm-fusion-") as tmp:
        for name in names:
            shapes = []
            for t in fusion_tests(name):
                opts = ort.SessionOptions()
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                opts.intra_op_num_threads = device.threads
                opts.log_severity_level = 3  # the "optimized model is hardware specific" warning: we know
                opts.optimized_model_filepath = str(Path(tmp) / f"{t.chain.name}.onnx")
                ort.InferenceSession(to_onnx_bytes(build_graph(t.chain)), opts, providers=["CPUExecutionProvider"])
                ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
                compute = [op for op in ops if op not in LAYOUT_OPS]
                shapes.append({"chain": t.chain.name, "optimized_ops": ops, "conclusive": True,
                               "fused": len(compute) == 1})
            fused = all(x["fused"] for x in shapes)
            records.append(FusionRecord(device.name, name, candidate_ops(name), fused,
                                        {"method": "onnxruntime-graph", "runtime_version": ort.__version__,
                                         "shapes": shapes, "conclusive": True}, now))
    store.put_device(device)
    store.put_fusion_rules(device.name, records)
    return records
