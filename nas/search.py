"""Hardware-aware architecture search: an Optuna study over a space's choices, scored by an
:class:`~nas.objectives.Evaluator` whose latency model is injected.

::

    from nas.objectives import Constraints, PredictorLatencyModel, TableAccuracy, find_accuracy_table
    from nas.search import SearchConfig, search
    import predictors

    cost = PredictorLatencyModel(predictors.load("sim-raspi4"))
    acc = TableAccuracy.from_csv(find_accuracy_table("nb201"))
    res = search("nb201", latency=cost, accuracy=acc,
                 config=SearchConfig(strategy="nsga2", trials=500, constraints=Constraints(max_latency_ms=12)))
    res.best, res.pareto, res.to_json()

Every strategy is an Optuna sampler (:mod:`nas.strategies`), so one loop serves them all:
ask a batch of trials, decode each into an architecture, score the batch in one call of each
model, store the candidate and its constraint values on the trial, tell. The study is the
state: with ``storage`` (an Optuna storage URL such as ``sqlite:///study.db``) a second call
with the same study name continues it, and several processes can share it. The Pareto front
and the best candidate are computed over every complete trial of the study.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from farm.errors import InputError
from farm.zoo.spaces import SearchSpace, get_space
from nas.objectives import AccuracyEstimator, Candidate, Constraints, Evaluator, LatencyModel
from nas.params import choices, decode, suggest
from nas.strategies import NAMED_CONSTRAINTS, make_sampler

__all__ = ["SearchConfig", "SearchResult", "Validation", "search", "pareto_front", "pick_top", "validate"]

# Trials asked before one batched evaluation. TPE is sequential by nature (each trial
# conditions on all told ones); population samplers lose nothing by batching.
_BATCH = {"random": 64, "evolution": 16, "nsga2": 25, "tpe": 1, "shrink": 10, "two-stage": 10}


@dataclass(frozen=True)
class SearchConfig:
    strategy: str = "random"
    trials: int = 100
    seed: int | None = 0
    constraints: Constraints = field(default_factory=Constraints)
    storage: str | None = None  # None: in memory; an Optuna storage URL to resume or share a study
    study_name: str | None = None  # default: hwfarm-<space>-<strategy>
    population_size: int = 50  # nsga2, evolution
    batch: int | None = None  # trials per evaluation call (default: per strategy)


@dataclass(frozen=True)
class Validation:
    """One candidate measured on the device against what the search predicted."""

    arch: str
    predicted_ms: float
    measured_ms: float | None
    unstable: bool = False
    error: str | None = None  # why it was not measured

    @property
    def rel_error(self) -> float | None:
        """measured / predicted - 1."""
        return None if self.measured_ms is None else self.measured_ms / self.predicted_ms - 1.0

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "predicted_ms": self.predicted_ms, "measured_ms": self.measured_ms,
                "rel_error": self.rel_error, "unstable": self.unstable, "error": self.error}


@dataclass(frozen=True)
class SearchResult:
    space: str
    strategy: str
    seed: int | None
    constraints: Constraints
    study_name: str
    candidates: tuple[Candidate, ...]  # every distinct architecture of the study, first trial first
    pareto: tuple[Candidate, ...]  # feasible, non-dominated (accuracy max, latency min), by latency
    best: Candidate | None  # the most accurate feasible candidate (lower latency breaks ties)
    trials: int  # complete trials in the study (a resumed study counts its earlier ones)
    new_trials: int  # trials this call ran
    seconds: float  # this call's search time
    validated: tuple[Validation, ...] = ()
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def candidates_per_s(self) -> float:
        return self.new_trials / self.seconds if self.seconds > 0 else 0.0

    def infeasible_message(self) -> str:
        """Why there is no best: the constraints and how close the study came."""
        cs = self.candidates
        if not cs:
            return "the search scored no candidate (--trials 0?)"
        c = self.constraints
        near: list[str] = []
        for label, unit, limit, values in (
                ("latency", "ms", c.max_latency_ms, [x.latency_ms for x in cs]),
                ("energy", "mJ", c.max_energy_mj, [x.energy_mj for x in cs if x.energy_mj is not None]),
                ("SRAM", "KB", c.max_sram_kb, [x.sram_kb for x in cs if x.sram_kb is not None]),
                ("flash", "KB", c.max_flash_kb, [x.flash_kb for x in cs if x.flash_kb is not None]),
                ("CPU fallback", "ops", c.max_fallback_ops, [x.fallback_ops for x in cs if x.fallback_ops is not None])):
            if limit is not None and values:
                near.append(f"lowest {label} seen {min(values):.4g} {unit} (limit {limit:g})")
        return (f"none of {len(cs)} candidates of {self.space} met the constraints ({c.describe()}): "
                f"{'; '.join(near)}; loosen a limit or search longer")

    def to_json(self) -> dict[str, Any]:
        """The ``hwfarm nas search --json`` object (keys are only ever added)."""
        return {"best": self.best.to_json() if self.best else None,
                "pareto": [c.to_json() for c in self.pareto],
                "trials": self.trials, "seconds": round(self.seconds, 4),
                "candidates_per_s": round(self.candidates_per_s, 2),
                "validated": [v.to_json() for v in self.validated],
                "space": self.space, "device": self.device, "strategy": self.strategy, "seed": self.seed,
                "new_trials": self.new_trials, "study": self.study_name, "constraints": self.constraints.to_json(),
                "feasible": sum(c.feasible for c in self.candidates), "candidates": len(self.candidates),
                **self.extra}


def pareto_front(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Feasible candidates no other feasible one beats on both accuracy (higher) and latency
    (lower), by latency ascending; of equal points, the first."""
    ok = sorted((c for c in candidates if c.feasible), key=lambda c: (c.latency_ms, -c.accuracy))
    front: list[Candidate] = []
    for c in ok:
        if not front or c.accuracy > front[-1].accuracy:
            front.append(c)
    return front


def pick_top(result: SearchResult, k: int) -> list[Candidate]:
    """The top ``k`` candidates to export: the Pareto front by accuracy (best first), then
    other feasible candidates by accuracy when the front is shorter than ``k``."""
    first = sorted(result.pareto, key=lambda c: (-c.accuracy, c.latency_ms))
    seen = {c.arch for c in first}
    rest = sorted((c for c in result.candidates if c.feasible and c.arch not in seen),
                  key=lambda c: (-c.accuracy, c.latency_ms))
    return (first + rest)[:k]


def _candidate_from(t: Any, constraints: Constraints) -> Candidate | None:
    d = t.user_attrs.get("candidate")
    if not isinstance(d, dict):
        return None
    c = Candidate(**{k: v for k, v in d.items() if k in Candidate.__dataclass_fields__})
    return replace(c, feasible=constraints.feasible(c), trial=t.number)


def _check_energy(cfg: SearchConfig, cands: Sequence[Candidate]) -> None:
    if cfg.constraints.max_energy_mj is not None and any(c.energy_mj is None for c in cands):
        raise InputError("--max-energy-mj: the cost model predicts no energy (the bundle has no "
                         "energy model: its device did not measure energy)")


def search(space: str | SearchSpace, *, latency: LatencyModel, accuracy: AccuracyEstimator,
           config: SearchConfig | None = None, device: str | None = None, energy: LatencyModel | None = None,
           fallback: Any | None = None, on_trial: Callable[[int, int], None] | None = None) -> SearchResult:
    """Run ``config.trials`` trials of ``config.strategy`` on ``space``; ``on_trial(done,
    total)`` is called after each evaluated batch (a progress bar). ``energy``, when given,
    prices the energy of the Pareto front and the best afterwards (a search without an energy
    limit need not pay for energy on every candidate). ``fallback`` (a
    :class:`nas.accelerator.FallbackModel`) predicts each candidate's operators on an
    accelerator's host CPU (``fallback_ops``, which ``max_fallback_ops`` limits)."""
    import optuna
    from optuna.trial import TrialState

    cfg = config or SearchConfig()
    sp = get_space(space) if isinstance(space, str) else space
    if cfg.trials < 0:
        raise InputError(f"--trials {cfg.trials}: must be at least 0")
    sampler = make_sampler(cfg.strategy, seed=cfg.seed, population_size=cfg.population_size, trials=cfg.trials)
    name = cfg.study_name or f"hwfarm-{sp.name}-{cfg.strategy}"
    evaluator = Evaluator(sp, latency=latency, accuracy=accuracy, constraints=cfg.constraints, fallback=fallback)
    batch = max(1, cfg.batch or _BATCH.get(cfg.strategy, 16))
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        name: optuna.distributions.CategoricalDistribution(list(opts)) for name, opts in choices(sp.name)}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                study = optuna.create_study(storage=cfg.storage, sampler=sampler, study_name=name,
                                            directions=["maximize", "minimize"], load_if_exists=True)
            except ValueError as err:  # e.g. the stored study has other directions
                raise InputError(f"study {name!r} in {cfg.storage}: {err}") from None
            stored = study.user_attrs.get("space")
            if stored is None:
                study.set_user_attr("space", sp.name)
            elif stored != sp.name:
                raise InputError(f"study {name!r} in {cfg.storage} searches space {stored}, not {sp.name}; "
                                 f"pick another study name")
            t0 = time.perf_counter()
            done = 0
            propose = getattr(sampler, "propose", None)
            while propose is not None and done < cfg.trials:
                # The fast path: whole parameter sets proposed at once, scored, and added as
                # complete trials (no per-parameter suggest calls: ~3 ms a trial on big spaces).
                sets = propose(study, min(batch, cfg.trials - done), dists)
                archs = [decode(sp.name, p) for p in sets]
                cands = evaluator.evaluate(archs)
                _check_energy(cfg, cands)
                study.add_trials([optuna.trial.create_trial(
                    params=p, distributions=dists, values=[c.accuracy, c.latency_ms],
                    user_attrs={"candidate": {k: v for k, v in c.to_json().items() if k not in ("feasible", "trial")},
                                "constraints": cfg.constraints.violations(c)})
                    for p, c in zip(sets, cands, strict=True)])
                done += len(sets)
                if on_trial is not None:
                    on_trial(done, cfg.trials)
            while done < cfg.trials:
                trials = [study.ask() for _ in range(min(batch, cfg.trials - done))]
                archs = [suggest(t, sp.name) for t in trials]
                cands = evaluator.evaluate(archs)
                try:
                    _check_energy(cfg, cands)
                except InputError:
                    for t in trials:
                        study.tell(t, state=TrialState.FAIL)
                    raise
                for t, c in zip(trials, cands, strict=True):
                    t.set_user_attr("candidate", {k: v for k, v in c.to_json().items()
                                                  if k not in ("feasible", "trial")})
                    t.set_user_attr("constraints", cfg.constraints.violations(c))
                    if NAMED_CONSTRAINTS:
                        for key, v in cfg.constraints.named_violations(c).items():
                            t.set_constraint(key, v)
                    study.tell(t, [c.accuracy, c.latency_ms])
                done += len(trials)
                if on_trial is not None:
                    on_trial(done, cfg.trials)
            seconds = time.perf_counter() - t0
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    finally:
        optuna.logging.set_verbosity(verbosity)
    seen: dict[str, Candidate] = {}
    for ft in complete:
        got = _candidate_from(ft, cfg.constraints)
        if got is not None and got.arch not in seen:
            seen[got.arch] = got
    if cfg.constraints.max_sram_kb is not None or cfg.constraints.max_flash_kb is not None:
        # trials a resumed study scored without a memory limit have no memory figures yet
        missing = [c for c in seen.values() if c.sram_kb is None or c.flash_kb is None]
        for c in evaluator.complete(missing):
            seen[c.arch] = replace(c, feasible=cfg.constraints.feasible(c))
    feasible = [c for c in seen.values() if c.feasible]
    best = max(feasible, key=lambda c: (c.accuracy, -c.latency_ms)) if feasible else None
    front = pareto_front(list(seen.values()))
    shown = front + ([best] if best is not None and best not in front else [])
    for c in evaluator.complete(shown, energy=energy):  # the graph's figures (and energy) of what is reported
        seen[c.arch] = c
    cands_all = tuple(seen.values())
    best = seen[best.arch] if best is not None else None
    return SearchResult(space=sp.name, strategy=cfg.strategy, seed=cfg.seed, constraints=cfg.constraints,
                        study_name=name, candidates=cands_all, pareto=tuple(seen[c.arch] for c in front), best=best,
                        trials=len(complete), new_trials=done, seconds=seconds, device=device)


def validate(result: SearchResult, k: int, *, device: str, workdir: str | os.PathLike[str],
             registry: str | os.PathLike[str] = "devices.yaml", db: str | os.PathLike[str] = "hwfarm.db",
             **profile_kwargs: Any) -> SearchResult:
    """Export the top ``k`` candidates (:func:`pick_top`) as ONNX files under ``workdir``,
    measure them on ``device`` through the farm (:func:`farm.profile`; the records go to the
    dataset ``db``) and return ``result`` with predicted vs measured latency."""
    if k < 1:
        raise InputError(f"--validate {k}: must be at least 1")
    top = pick_top(result, k)
    if not top:
        raise InputError(f"--validate: {result.infeasible_message()}")
    out = measure_candidates(result.space, top, device=device, workdir=workdir, registry=registry, db=db,
                             **profile_kwargs)
    return replace(result, validated=tuple(out), device=result.device or device)


def measure_candidates(space: str, top: Sequence[Candidate], *, device: str, workdir: str | os.PathLike[str],
                       registry: str | os.PathLike[str] = "devices.yaml", db: str | os.PathLike[str] = "hwfarm.db",
                       **profile_kwargs: Any) -> list[Validation]:
    """Export ``top`` as ONNX files under ``workdir`` and measure them on ``device``
    (:func:`farm.profile`, records into ``db``): predicted vs measured, one per candidate."""
    import farm
    from farm.formats.onnx_export import graph_to_onnx

    sp = get_space(space)
    folder = Path(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, c in enumerate(top, start=1):
        path = folder / f"candidate-{i}.onnx"
        path.write_bytes(graph_to_onnx(sp.to_graph(c.arch)).SerializeToString())
        paths.append(path)
    res = farm.profile(paths, device=device, registry=registry, db=db, **profile_kwargs)
    out = []
    for c, r in zip(top, res, strict=True):
        m = r.measurement
        if m is None:
            out.append(Validation(c.arch, c.latency_ms, None, error=r.error))
        else:
            out.append(Validation(c.arch, c.latency_ms, float(m.latency_ms), bool(m.provenance.get("unstable"))))
    return out
