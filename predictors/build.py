"""Building a device's kernel dataset: the library behind ``hwfarm dataset build``.

:func:`build` runs a whole build on one device: fusion rules (detected first if the dataset
has none), the sampling plan (float ONNX kernels, or the TFLite plan's .tflite kernels for
LiteRT and int8-only devices), adaptive refinement, the calibration networks, the minimal
models' second sitting, and the cleanup of the generated model files. It returns a
:class:`BuildReport` (what the CLI prints, and its ``--json`` keys); progress goes through
callbacks, so the CLI draws bars and a script stays quiet.

:func:`detect_rules` is the measured fusion detection with the build's defaults (three
repeats on a real device, one on a simulated one), shared with ``hwfarm dataset fusion``.

Words: *rounds* are ``Settings.rounds``, a model measured in interleaved rounds pooled into
one record (``--rounds``); *repeats* are the same models measured again as new records and
combined afterwards (fusion's ``--repeats``; the minimal models' second sitting is one repeat,
under its own names); refinement runs in *steps*.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from farm.devices.caps import device_caps
from farm.errors import InputError
from farm.measurement import Policy
from farm.registry.spec import DeviceSpec
from farm.scheduler.core import JobEvent
from farm.store.sqlite import FusionRecord, SqliteStore
from predictors.dataset import ModelWriter, SpecResult, measure_specs, models_dir_for, summarize_results
from predictors.kernels import detected_fusion_rules

__all__ = ["CALIBRATION_ROUNDS", "BuildReport", "Phase", "PhaseFactory", "build", "detect_rules"]

CALIBRATION_ROUNDS = 3  # rounds of the calibration networks on a real device


class Phase(Protocol):
    """What one phase of a build (a batch of models measured together) reports to."""

    def on_event(self, e: JobEvent) -> None: ...

    def on_cached(self, n: int) -> None: ...


# (title, models, rounds) → a context manager around the phase that yields its Phase (the
# CLI's progress bar). Each model advances the phase once per round.
PhaseFactory = Callable[[str, int, int], AbstractContextManager[Phase]]


class _Quiet:
    def on_event(self, e: JobEvent) -> None:
        pass

    def on_cached(self, n: int) -> None:
        pass


def _quiet(title: str, total: int, rounds: int) -> AbstractContextManager[Phase]:
    return nullcontext(_Quiet())


@dataclass(frozen=True)
class BuildReport:
    """The outcome of :func:`build`.

    ``results``: one per model of the plan, refinement and calibration; ``again``: the minimal
    models' second sitting, re-measurements outside the plan's count; ``rounds``: the rounds
    the kernels were measured in; ``note``: a line about the plan (TFLite plans)."""

    device: str
    db: str
    models_dir: Path
    plan: str  # "onnx" | "tflite"
    fusion_rules: tuple[tuple[str, ...], ...]
    results: tuple[SpecResult, ...]
    again: tuple[SpecResult, ...]
    rounds: int
    models_removed: int
    elapsed_s: float
    dtypes: tuple[str, ...] = ()
    note: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Models measured now, answered from the dataset, failed (second sitting aside)."""
        return {k: sum(1 for x in self.results if x.source == k) for k in ("measured", "cached", "failed")}

    @property
    def failures(self) -> tuple[SpecResult, ...]:
        return tuple(x for x in (*self.results, *self.again) if x.source == "failed")

    @property
    def overhead_again(self) -> int:
        """Minimal models measured a second time."""
        return sum(1 for x in self.again if x.latency_ms is not None)

    @property
    def models_kept(self) -> bool:
        return not self.models_removed

    def kernels(self) -> dict[str, dict[str, Any]]:
        """Per kernel type: counts and latency range (:func:`predictors.dataset.summarize_results`)."""
        return summarize_results(self.results)

    def to_json(self) -> dict[str, Any]:
        """``hwfarm dataset build --json``."""
        plan: dict[str, Any] = {"plan": self.plan}
        if self.plan == "tflite":
            plan["dtypes"] = list(self.dtypes)
        return {"device": self.device, "db": self.db, "models_dir": str(self.models_dir),
                "models_kept": self.models_kept, "fusion_rules": [list(r) for r in self.fusion_rules], **plan,
                "models": len(self.results), **self.counts, "overhead_again": self.overhead_again,
                "rounds": self.rounds, "elapsed_s": round(self.elapsed_s, 2), "kernels": self.kernels()}


def detect_rules(store: SqliteStore, spec: DeviceSpec, *, models_dir: Path, candidates: Sequence[str] | None = None,
                 repeats: int | None = None, progress: PhaseFactory | None = None,
                 on_requeue: Callable[[list[int]], None] | None = None) -> list[FusionRecord]:
    """Measured fusion detection (:func:`predictors.fusion.detect_fusion`, the farm's default
    protocol), every test model measured ``repeats`` times: by default 3 on a real device, 1
    on a simulated one (its noise is seeded: one measurement says all)."""
    from predictors.fusion import CANDIDATES, detect_fusion, fusion_tests

    names = tuple(candidates) if candidates else tuple(CANDIDATES)
    n_repeats = repeats or (1 if device_caps(spec).simulated else 3)
    total = 2 + len({s.name for n in names for t in fusion_tests(n) for s in (t.head, *t.followers, t.chain)})
    with (progress or _quiet)(f"fusion tests on {spec.name}", total * n_repeats, 1) as phase:
        return detect_fusion(store, spec, models_dir=models_dir, candidates=names, policy=Policy(), repeats=n_repeats,
                             on_event=phase.on_event, on_cached=phase.on_cached, on_requeue=on_requeue)


@dataclass(frozen=True)
class _Run:
    """What every phase of one build shares."""

    store: SqliteStore
    spec: DeviceSpec
    models_dir: Path
    force: bool
    progress: PhaseFactory
    on_requeue: Callable[[list[int]], None] | None
    writer: ModelWriter | None = None
    model_format: str = "onnx"

    def measure(self, specs: Sequence[Any], title: str, rounds: int = 1, *,
                writer: ModelWriter | None = None) -> list[SpecResult]:
        with self.progress(title, len(specs), rounds) as phase:
            return measure_specs(self.store, self.spec, specs, models_dir=self.models_dir, on_event=phase.on_event,
                                 on_cached=phase.on_cached, on_requeue=self.on_requeue, force=self.force,
                                 writer=writer or self.writer, model_format=self.model_format, rounds=rounds)


def build(store: SqliteStore, spec: DeviceSpec, *, models_dir: Path | None = None, budget: int | None = None,
          seed: int = 0, refine: float = 0.2, kernels: Sequence[str] | None = None, dtype: str | None = None,
          calibration: int | None = None, rounds: int = 1, force: bool = False, keep_models: bool = False,
          detect: bool = True, progress: PhaseFactory | None = None,
          on_requeue: Callable[[list[int]], None] | None = None,
          on_note: Callable[[str], None] | None = None) -> BuildReport:
    """Measure a kernel dataset on ``spec`` into ``store`` (resumable: run it again to finish).

    ``budget``: models in all, refinement included (default: the default plan); ``refine``:
    the share of it spent on adaptive refinement; ``kernels``: kernel types (default: all of
    the plan's); ``dtype``: TFLite plans' dtypes, comma-separated; ``calibration``: whole
    networks measured after the kernels (default: by the budget); ``rounds``: the kernels
    measured in that many interleaved rounds; ``detect``: detect the fusion rules first if
    the dataset has none. Model files go to ``models_dir`` (default: beside the db) and are
    removed after a build with no failures unless ``keep_models``.

    ``progress`` is called around each phase; ``on_requeue`` with the jobs a dead process
    left running; ``on_note`` with the fusion rules the ONNX plan is built for. Failed models
    are in :attr:`BuildReport.failures`; bad arguments raise :class:`farm.errors.InputError`."""
    from predictors.sampling import DEFAULT_BUDGET
    from predictors.tflite_plan import plan_format

    if budget is not None and budget < 1:
        raise InputError(f"--budget {budget}: must be at least 1")
    total = DEFAULT_BUDGET if budget is None else budget
    n_refine = int(round(refine * total)) if total >= 20 else 0
    started = time.monotonic()
    tflite = plan_format(spec) == "tflite"
    if not tflite and dtype is not None:
        raise InputError(f"--dtype {dtype!r}: device {spec.name!r} takes the float ONNX plan ({spec.default_runtime}); "
                         "--dtype selects the dtypes of TFLite plans (LiteRT and int8-only devices)")
    if models_dir is None:
        if store.path == ":memory:":
            raise InputError("an in-memory dataset has no folder beside it for the models: give models_dir")
        models_dir = models_dir_for(store.path)
    run = _Run(store, spec, models_dir, force, progress or _quiet, on_requeue)
    if tflite:
        results, note, again = _build_tflite(run, kernels, total, n_refine, seed, dtype, rounds)
        rules: tuple[tuple[str, ...], ...] = ()
        tflite_specs: list[Any] = [x.spec for x in results]  # TfliteSpec
        dtypes = tuple(sorted({t.dtype for t in tflite_specs}))
    else:
        results, rules, again = _build_onnx(run, kernels, total, n_refine, seed, calibration, rounds, detect,
                                            budget, on_note)
        note, dtypes = None, ()
    removed = 0
    if not keep_models and not any(x.source == "failed" for x in (*results, *again)):
        # a failed build keeps them for `hwfarm jobs run`
        for x in (*results, *again):
            Path(x.path).unlink(missing_ok=True)
            removed += 1
        for d in sorted((p for p in models_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(d.iterdir()):  # the per-kernel-type folders the build emptied
                d.rmdir()
    return BuildReport(spec.name, store.path, models_dir, "tflite" if tflite else "onnx", rules, tuple(results),
                       tuple(again), rounds, removed, time.monotonic() - started, dtypes, note)


def _refinement_steps(n_refine: int) -> list[int]:
    """How many models each refinement step adds: two steps from 100 models on, else one."""
    steps = 2 if n_refine >= 100 else 1
    return [n_refine // steps + (n_refine % steps if r == steps - 1 else 0) for r in range(steps if n_refine else 0)]


def _build_onnx(run: _Run, kernels: Sequence[str] | None, total: int, n_refine: int, seed: int,
                calibration: int | None, rounds: int, detect: bool, budget: int | None,
                on_note: Callable[[str], None] | None
                ) -> tuple[list[SpecResult], tuple[tuple[str, ...], ...], list[SpecResult]]:
    """The float ONNX plan, refinement and calibration networks: (results, rules, second sitting)."""
    from predictors.calibration import calibration_plan, default_calibration, write_calibration
    from predictors.fusion import detect_fusion_graph
    from predictors.sampling import KERNEL_TYPES, make_plan, refine_plan

    store, spec = run.store, run.spec
    found = detected_fusion_rules(store, spec.name)
    if found is None and detect:
        # A local onnxruntime device: ask its optimizer (load-independent, seconds); any
        # other device: time the A, B, A+B test models on it.
        if spec.kind == "local" and (spec.runtime or "onnxruntime") == "onnxruntime":
            detect_fusion_graph(store, spec)
        else:
            detect_rules(store, spec, models_dir=run.models_dir, progress=run.progress, on_requeue=run.on_requeue)
        found = detected_fusion_rules(store, spec.name)
    rules = found or ()
    if on_note is not None:
        on_note(f"fusion rules of {spec.name}: " + (", ".join("+".join(r) for r in rules) or "none"))

    plan = make_plan(budget=total - n_refine, kernels=tuple(kernels) if kernels else KERNEL_TYPES, seed=seed,
                     fusion=rules)
    in_rounds = f" in {rounds} rounds" if rounds > 1 else ""
    results = run.measure(plan, f"kernels on {spec.name}{in_rounds}", rounds)
    steps = _refinement_steps(n_refine)
    for r, n in enumerate(steps):
        ok = [x for x in results if x.latency_ms is not None]
        extra = refine_plan([x.spec for x in ok], [float(x.latency_ms or 0) for x in ok], n=n, seed=seed + 1 + r,
                            exclude={x.spec.name for x in results})
        results += run.measure(extra, f"refinement {r + 1}/{len(steps)} on {spec.name}{in_rounds}", rounds)
    cal = calibration_plan(default_calibration(budget) if calibration is None else calibration)
    if cal:
        # In rounds on a real device: each network's median then spans the minutes the
        # calibration takes, not the second or two a drifting machine gave it (a simulated
        # device's noise is seeded and does not drift: one round says all).
        cal_rounds = 1 if device_caps(spec).simulated else CALIBRATION_ROUNDS
        results += run.measure(cal, f"calibration networks on {spec.name}", cal_rounds, writer=write_calibration)
    return results, tuple(tuple(r) for r in rules), _second_sitting(run, [x.spec for x in results])


def _second_sitting(run: _Run, specs: list[Any]) -> list[SpecResult]:
    """Measure the plan's minimal models again at the end of a build on a real device (their
    results). They set the per-inference overhead every prediction carries: measured only at
    the build's start, a machine slowed then lifts every tiny kernel's prediction. The
    predictor keeps each one's faster sitting. (A simulated device's noise is seeded and
    does not drift: one sitting.)"""
    from predictors.sampling import second_sitting

    again = second_sitting(specs) if not device_caps(run.spec).simulated else []
    if not again:
        return []
    return run.measure(again, f"minimal models again on {run.spec.name}")


def _build_tflite(run: _Run, kernels: Sequence[str] | None, total: int, n_refine: int, seed: int, dtype: str | None,
                  rounds: int) -> tuple[list[SpecResult], str, list[SpecResult]]:
    """The TFLite plan (float32 / int8 .tflite kernels) measured on a device, with refinement:
    (results, a line about the plan, second sitting)."""
    from dataclasses import replace

    from predictors.tflite_plan import (
        TFLITE_KERNEL_TYPES,
        bit_serial,
        describe,
        fits_for,
        make_tflite_plan,
        parse_dtypes,
        refine_tflite_plan,
        tflite_bytes,
    )

    spec = run.spec
    dtypes = parse_dtypes(dtype, spec)
    fits, bits = fits_for(spec), bit_serial(spec)
    plan = make_tflite_plan(budget=total - n_refine, kernels=kernels or TFLITE_KERNEL_TYPES, seed=seed, dtypes=dtypes,
                            fits=fits, bits=bits)

    def writer(t: Any) -> tuple[bytes, str]:
        return tflite_bytes(t), ".tflite"

    run = replace(run, writer=writer, model_format="tflite")
    in_rounds = f" in {rounds} rounds" if rounds > 1 else ""
    results = run.measure(plan, f"tflite kernels on {spec.name}{in_rounds}", rounds)
    steps = _refinement_steps(n_refine)
    for r, n in enumerate(steps):
        ok = [x for x in results if x.latency_ms is not None]
        done: list[Any] = [x.spec for x in ok]  # TfliteSpec
        extra = refine_tflite_plan(done, [float(x.latency_ms or 0) for x in ok], n=n,
                                   seed=seed + 1 + r, fits=fits, bits=bits)
        extra = [t for t in extra if t.name not in {x.spec.name for x in results}]
        results += run.measure(extra, f"refinement {r + 1}/{len(steps)} on {spec.name}{in_rounds}", rounds)
    again = _second_sitting(run, [x.spec for x in results])
    return results, f"TFLite plan on {spec.name}: {describe(plan)}; activations fused in the files", again
