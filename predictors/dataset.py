"""Building a device's kernel dataset through the farm.

:func:`measure_specs` writes each :class:`~predictors.sampling.KernelSpec` of a plan as an ONNX
file (under ``models_dir``, one folder per kernel type, named by the spec), queues it on the
device through the farm's :class:`~farm.scheduler.core.Scheduler` and returns one
:class:`SpecResult` per spec. Everything lands in the store like any ``hwfarm profile``
measurement, so:

- it is **resumable**: a measurement is keyed by (device, workload sha256, settings hash) and
  a spec's bytes depend only on the spec, so running the same build again (after a crash, a
  ``kill -9`` or Ctrl-C) answers finished specs from the dataset and measures the rest; jobs
  left ``running`` by a dead process are re-queued first;
- the agent starts once per build, not per model: the scheduler keeps one device (one agent
  session) per worker for all its jobs.

The predictor trains from the store: every measurement of a workload whose stored graph forms
one kernel on the device is a training sample for that kernel type.

:data:`DATASET_POLICY` is the measurement protocol for kernel datasets: the farm's default
stopping rule (median's 95% CI within ±1%) with a shorter floor (0.05 s warm-up, 0.15 s of
timed runs instead of 0.2 s + 0.5 s) and a lower cap (200 runs or 2 s instead of 500 or 10 s:
on a loaded host the CI may never reach ±1%, and 200 runs pin a median well enough for a
kernel model), which is what makes the default plan fit in ~20 minutes on one host core (5 min on a
quiet host; 22 min with the contention gate waiting out a noisy neighbour most of the time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from farm.devices import open_device
from farm.devices.caps import device_caps
from farm.errors import InputError
from farm.ir.graph import Graph
from farm.ir.kernels import Kernel
from farm.measurement import Measurement, Policy, Settings, resolve_runtime
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import JobEvent, Scheduler
from farm.store.sqlite import SqliteStore
from farm.workload import Workload, load_workload
from predictors.kernels import detected_fusion_rules
from predictors.sampling import KernelSpec, build_graph, kernel_type_of, single_kernel, to_onnx_bytes

__all__ = ["DATASET_POLICY", "SpecResult", "KernelSample", "kernel_samples", "models_dir_for", "write_models", "dataset_settings", "measure_specs",
           "summarize_results"]

DATASET_POLICY = Policy(warmup=5, warmup_s=0.05, min_runs=10, min_time_s=0.15, max_runs=200, max_time_s=2.0,
                        target_ci=0.01)


@dataclass(frozen=True)
class SpecResult:
    """One spec's outcome. ``source``: measured | cached | failed."""

    spec: KernelSpec  # or a predictors.tflite_plan.TfliteSpec
    workload: str
    path: str
    source: str
    measurement: Measurement | None = None
    error: str | None = None

    @property
    def latency_ms(self) -> float | None:
        return self.measurement.latency_ms if self.measurement is not None else None



def models_dir_for(db: str | os.PathLike[str]) -> Path:
    """Where a dataset's generated models live by default: beside the db file
    (``hwfarm.db`` → ``hwfarm-models/``)."""
    p = Path(db)
    return p.parent / f"{p.stem}-models"


# A plan's model writer: spec → (file bytes, suffix). The default writes the float ONNX plan;
# predictors.tflite_plan writes .tflite (float32 / int8) kernels through the same path.
ModelWriter = Callable[[Any], tuple[bytes, str]]


def _onnx_writer(spec: Any) -> tuple[bytes, str]:
    return to_onnx_bytes(build_graph(spec)), ".onnx"


def write_models(specs: Sequence[Any], models_dir: Path, *, subdir: str | None = None,
                 writer: ModelWriter | None = None) -> list[Workload]:
    """Write each spec's model (ONNX unless ``writer`` says otherwise; once: an existing
    identical file is reused) and load it as a workload, graph imported from the file like
    any user model."""
    out = []
    for spec in specs:
        folder = models_dir / (subdir or spec.kernel_type)
        folder.mkdir(parents=True, exist_ok=True)
        data, suffix = (writer or _onnx_writer)(spec)
        path = folder / f"{spec.name}{suffix}"
        if not path.exists() or path.read_bytes() != data:
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)  # atomic: a killed build never leaves a half-written model
        out.append(load_workload(path))
    return out


DATASET_EXTRA_ROUNDS = 1  # a kernel measured in a slow state gets at most this many more rounds


def dataset_settings(spec: DeviceSpec, policy: Policy = DATASET_POLICY, *, model_format: str = "onnx",
                     rounds: int = 1, quiet: bool = True) -> Settings:
    """A dataset build's settings. On a real device the quiet estimator (``farm.estimate``):
    ``rounds`` quiet rounds wanted (one for a kernel: on a quiet machine a kernel costs what
    it did), and up to ``DATASET_EXTRA_ROUNDS`` more, later in the build, for a kernel whose
    round ran slow; one that never ran quiet is marked unstable and left out of training.
    Simulated devices have no slow states: their rounds are pooled (as every round is with
    ``quiet=False``)."""
    simulated = device_caps(spec).simulated or not quiet
    return Settings(runtime=resolve_runtime(spec.default_runtime, model_format), threads=spec.threads,
                    affinity=spec.affinity, policy=policy, rounds=rounds,
                    max_rounds=None if simulated else rounds + DATASET_EXTRA_ROUNDS,
                    estimator="pooled" if simulated else "quiet")


def measure_specs(store: SqliteStore, device: DeviceSpec, specs: Sequence[Any], *, models_dir: Path,
                  policy: Policy = DATASET_POLICY, subdir: str | None = None,
                  on_event: Callable[[JobEvent], None] | None = None,
                  on_cached: Callable[[int], None] | None = None,
                  on_requeue: Callable[[list[int]], None] | None = None,
                  force: bool = False, writer: ModelWriter | None = None,
                  model_format: str = "onnx", rounds: int = 1, quiet: bool = True) -> list[SpecResult]:
    """Measure every spec on ``device``, in order (stored measurements answer without a run
    unless ``force``). ``writer`` and ``model_format`` select another plan's files (.tflite);
    ``rounds`` > 1 measures them in interleaved rounds (``farm.measurement``); ``quiet=False``
    pools the rounds as the first release did (benchmarks compare the two)."""
    if not specs:
        return []
    open_device(device).close()  # a kind that cannot run here fails before anything is written
    try:
        workloads = write_models(specs, models_dir, subdir=subdir, writer=writer)
    except OSError as err:
        raise InputError(f"{models_dir}: cannot write models: {err.strerror or err}") from None
    settings = dataset_settings(device, policy, model_format=model_format, rounds=rounds, quiet=quiet)
    sched = Scheduler(store, on_event=on_event)
    requeued = sched.requeue_stale()
    if requeued and on_requeue is not None:
        on_requeue(requeued)
    subs = [sched.submit(device, w, settings, force=force) for w in workloads]
    n_cached = sum(1 for s in subs if s.cached is not None)
    if on_cached is not None and n_cached:
        on_cached(n_cached)
    ids = {s.job.id for s in subs if s.job is not None}
    report = sched.run([device], job_ids=ids, workloads={w.hash: w for w in workloads}) if ids else None
    results = []
    for spec, w, sub in zip(specs, workloads, subs, strict=True):
        path = w.path or ""
        if sub.cached is not None:
            results.append(SpecResult(spec, w.hash, path, "cached", sub.cached))
        elif report is not None and sub.job is not None and sub.job.id in report.done:
            results.append(SpecResult(spec, w.hash, path, "measured", report.done[sub.job.id]))
        else:
            fail = report.failed.get(sub.job.id) if report is not None and sub.job is not None else None
            results.append(SpecResult(spec, w.hash, path, "failed", None, fail.message if fail else "not run"))
    return results


def summarize_results(results: Sequence[SpecResult]) -> dict[str, dict[str, Any]]:
    """Per kernel type: how many specs, measured now, answered from the dataset, failed, and
    the latency range (ms) of the ones with a measurement."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        s = out.setdefault(r.spec.kernel_type, {"models": 0, "measured": 0, "cached": 0, "failed": 0,
                                                "min_ms": None, "median_ms": None, "max_ms": None, "_lat": []})
        s["models"] += 1
        s[r.source] += 1
        if r.latency_ms is not None:
            s["_lat"].append(r.latency_ms)
    for s in out.values():
        lat = sorted(s.pop("_lat"))
        if lat:
            s["min_ms"], s["median_ms"], s["max_ms"] = lat[0], lat[len(lat) // 2], lat[-1]
    return out


@dataclass(frozen=True)
class KernelSample:
    """A training sample for a kernel model: a measurement of a workload that is one kernel
    on its device (after fusion), with that kernel (type, ops, MACs, bytes) and the graph."""

    kernel_type: str
    kernel: Kernel
    measurement: Measurement
    graph: Graph


def kernel_samples(store: SqliteStore, device: str, *,
                   fusion: Sequence[Sequence[str]] | None = None,
                   include_unstable: bool = False) -> list[KernelSample]:
    """Every measurement on ``device`` whose stored graph forms exactly one kernel under
    ``fusion`` (default: the rules detected on the device, none if never detected) — the
    contract between the dataset and the kernel predictor. Workloads of several kernels
    (whole networks, fusion chains the device does not fuse) are evaluation data instead.
    Measurements marked unstable (measured in a slow state throughout: ``farm.estimate``)
    are left out unless ``include_unstable``: a predictor learns the quiet machine."""
    if fusion is None:
        fusion = detected_fusion_rules(store, device) or ()
    rules = tuple(tuple(r) for r in fusion)
    graphs: dict[str, Graph | None] = {}
    out = []
    for m in store.measurements(device=device):
        if m.provenance.get("unstable") and not include_unstable:
            continue
        if m.workload not in graphs:
            rec = store.get_workload(m.workload)
            graphs[m.workload] = rec.graph if rec is not None else None
        g = graphs[m.workload]
        k = single_kernel(g, rules) if g is not None else None
        if g is not None and k is not None:
            out.append(KernelSample(kernel_type_of(k), k, m, g))
    return out
