"""Search strategies, all as Optuna samplers, so every one runs through the same ask/tell loop,
the same storage and the same benchmark.

- ``random``: :class:`optuna.samplers.RandomSampler`, the baseline every benchmark reports;
- ``tpe``: :class:`optuna.samplers.TPESampler` (multi-objective TPE on accuracy and latency);
- ``nsga2``: :class:`optuna.samplers.NSGAIISampler`;
- ``evolution``: :class:`RegularizedEvolutionSampler` (Real et al., AAAI 2019; OFA's search
  with a predictor as cost): a population of the newest trials, a tournament picks a parent,
  one choice mutates, the oldest ages out;
- ``shrink``: :class:`ShrinkSampler`, progressive space shrinking for cell spaces (AutoShrink,
  Zhang et al., AAAI 2019): sample the space, then stage by stage drop each choice's option
  whose measured effect on fitness is worst, until one architecture is left;
- ``two-stage``: :class:`TwoStageSampler` (HURRICANE, Zhang et al. 2019): a random probe first
  learns what each option costs on *this* device and buys in accuracy, options that another
  option beats on both are dropped, then evolution searches what is left.

Constraints reach every sampler as Optuna's constraint values (≤ 0 is feasible): set on each
trial with ``Trial.set_constraint`` (Optuna 5), or through ``constraints_func`` (Optuna 4);
the search also keeps them in the trial's ``constraints`` user attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from farm.errors import InputError

__all__ = ["STRATEGIES", "PLANNED_STRATEGIES", "NAMED_CONSTRAINTS", "make_sampler", "constraints_of",
           "RegularizedEvolutionSampler"]

STRATEGIES = ("random", "tpe", "nsga2", "evolution", "shrink", "two-stage")
PLANNED_STRATEGIES: tuple[str, ...] = ()  # in the CLI's contract, not implemented yet


# Optuna 5 reads constraints the search sets on each trial (``Trial.set_constraint``) and
# deprecates the samplers' ``constraints_func``; Optuna 4 needs the function.
NAMED_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


def constraints_of(trial: FrozenTrial) -> Sequence[float]:
    """The ``constraints_func`` of every sampler: what the search stored on the trial."""
    return list(trial.user_attrs.get("constraints", ()))


def make_sampler(strategy: str, *, seed: int | None, population_size: int = 50, trials: int | None = None) -> Any:
    """The Optuna sampler of a strategy, constraints wired in (values ≤ 0 are feasible).
    ``trials`` (the search's budget) sizes the stages of ``shrink`` and ``two-stage``."""
    cf: dict[str, Any] = {} if NAMED_CONSTRAINTS else {"constraints_func": constraints_of}
    if strategy == "random":
        return RandomProposer(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, **cf)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size, **cf)
    if strategy == "evolution":
        return RegularizedEvolutionSampler(seed=seed, population_size=population_size,
                                           constraints_func=constraints_of)
    if strategy == "shrink":
        return ShrinkSampler(seed=seed, stage_trials=max(5, (trials or 200) // 24), constraints_func=constraints_of)
    if strategy == "two-stage":
        return TwoStageSampler(seed=seed, probe_trials=max(20, (trials or 200) // 5),
                               population_size=min(population_size, max(10, (trials or 200) // 10)),
                               constraints_func=constraints_of)
    if strategy in PLANNED_STRATEGIES:
        raise InputError(f"--strategy {strategy}: not yet implemented (have: {', '.join(STRATEGIES)})")
    raise InputError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    """Regularized ("aging") evolution as an Optuna sampler over categorical parameters.

    Until ``population_size`` trials are complete it samples at random. After that the
    population is the newest ``population_size`` complete trials (so the oldest ages out);
    ``tournament_size`` of them are drawn, the fittest is the parent, and one of its choices
    is changed to another option. Fitness: a feasible trial beats an infeasible one; among
    feasible ones the higher first objective (accuracy) wins, among infeasible ones the
    smaller total violation. The state lives in the study, so a resumed or shared study
    continues where it was."""

    def __init__(self, *, population_size: int = 50, tournament_size: int = 10, seed: int | None = None,
                 constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None):
        if population_size < 2 or not 1 <= tournament_size:
            raise ValueError("population_size must be ≥ 2 and tournament_size ≥ 1")
        self.population_size = population_size
        self.tournament_size = min(tournament_size, population_size)
        self._constraints_func = constraints_func
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def _complete(self, study: optuna.Study) -> list[FrozenTrial]:
        return list(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def _allowed(self, study: optuna.Study, name: str) -> list[Any] | None:
        """The options of parameter ``name`` the sampler may pick (None: all)."""
        return None

    def _population(self, study: optuna.Study) -> list[FrozenTrial]:
        return self._complete(study)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        done = self._complete(study)
        return dict(done[-1].distributions) if done else {}

    def _fitness(self, t: FrozenTrial) -> tuple[int, float]:
        cons = list(self._constraints_func(t)) if self._constraints_func else []
        excess = sum(max(0.0, float(c)) for c in cons)
        if excess > 0:
            return (0, -excess)
        return (1, float(t.values[0]))

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        done = self._population(study)
        if not search_space or len(done) < self.population_size:
            return {}
        population = done[-self.population_size:]
        picks = self._rng.choice(len(population), self.tournament_size, replace=False)
        parent = max((population[int(i)] for i in sorted(picks)), key=self._fitness)
        params = {k: v for k, v in parent.params.items() if k in search_space}
        cats = {n: d for n, d in search_space.items()
                if isinstance(d, CategoricalDistribution) and len(d.choices) > 1 and n in params}
        names = sorted(cats)
        allowed = {n: self._allowed(study, n) for n in names}
        names = [n for n in names if allowed[n] is None or len(allowed[n] or ()) > 1]
        if names:
            name = names[self._rng.randint(len(names))]
            options = [c for c in (allowed[name] or cats[name].choices) if c != params[name]]
            params[name] = options[self._rng.randint(len(options))]
        return params

    def propose(self, study: optuna.Study, n: int, distributions: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
        """``n`` whole parameter sets at once (the search's fast path: no per-parameter
        ``suggest`` calls): children of the current population, or random ones while it fills."""
        population = self._population(study)[-self.population_size:]
        out = []
        for _ in range(n):
            if len(population) < self.population_size:
                params = {}
                for name, d in distributions.items():
                    allowed = self._allowed(study, name)
                    options = allowed if allowed is not None else list(getattr(d, "choices", ()))
                    params[name] = options[self._rng.randint(len(options))]
                out.append(params)
                continue
            picks = self._rng.choice(len(population), self.tournament_size, replace=False)
            parent = max((population[int(i)] for i in sorted(picks)), key=self._fitness)
            params = {k: v for k, v in parent.params.items() if k in distributions}
            cats = sorted(k for k, d in distributions.items()
                          if isinstance(d, CategoricalDistribution) and len(d.choices) > 1 and k in params)
            allowed_of = {k: self._allowed(study, k) for k in cats}
            cats = [k for k in cats if allowed_of[k] is None or len(allowed_of[k] or ()) > 1]
            if cats:
                name = cats[self._rng.randint(len(cats))]
                d = distributions[name]
                assert isinstance(d, CategoricalDistribution)
                options = [c for c in (allowed_of[name] or d.choices) if c != params[name]]
                params[name] = options[self._rng.randint(len(options))]
            out.append(params)
        return out

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        allowed = self._allowed(study, param_name)
        if allowed is not None and isinstance(param_distribution, CategoricalDistribution):
            return allowed[self._rng.randint(len(allowed))]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._random.after_trial(study, trial, state, values)


def _fitness_ranks(trials: Sequence[FrozenTrial], constraints_func: Callable[[FrozenTrial], Sequence[float]] | None
                   ) -> np.ndarray:
    """Each trial's fitness as a rank in [0, 1]: feasible beats infeasible; among feasible the
    higher accuracy (first objective), among infeasible the smaller total violation."""
    keys = []
    for t in trials:
        excess = sum(max(0.0, float(c)) for c in (constraints_func(t) if constraints_func else ()))
        keys.append((0, -excess) if excess > 0 else (1, float(t.values[0])))
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = np.empty(len(keys))
    ranks[order] = np.arange(len(keys)) / max(len(keys) - 1, 1)
    return ranks


def option_effects(trials: Sequence[FrozenTrial], names: Sequence[str], target: np.ndarray, *,
                   alpha: float = 1.0) -> dict[str, dict[Any, float]]:
    """Each option's additive effect on ``target`` (a ridge fit on the one-hot options of
    ``names``, one coefficient per option seen): what the trials say choosing it does."""
    cols: list[tuple[str, Any]] = sorted({(n, t.params[n]) for t in trials for n in names if n in t.params},
                                         key=lambda c: (c[0], str(c[1])))
    index = {c: i for i, c in enumerate(cols)}
    X = np.zeros((len(trials), len(cols)))
    for r, t in enumerate(trials):
        for n in names:
            if n in t.params:
                X[r, index[(n, t.params[n])]] = 1.0
    y = target - target.mean()
    coef = np.linalg.solve(X.T @ X + alpha * np.eye(len(cols)), X.T @ y) if cols else np.zeros(0)
    out: dict[str, dict[Any, float]] = {}
    for (n, o), c in zip(cols, coef, strict=True):
        out.setdefault(n, {})[o] = float(c)
    return out


class ShrinkSampler(optuna.samplers.BaseSampler):
    """Progressive space shrinking (AutoShrink's idea with the predictors as the judge).

    Stage by stage, ``stage_trials`` architectures are drawn at random from what is still
    allowed; then the one option of the whole space whose effect on fitness
    (:func:`option_effects` on every trial's fitness rank) falls furthest below the best
    option of its choice is removed — one at a time, as AutoShrink removes one edge. After
    enough stages one option per choice remains, and the search has converged on it. The allowed
    options are replayed from the study's trials, so a resumed study continues its stages."""

    def __init__(self, *, stage_trials: int = 25, seed: int | None = None,
                 constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None):
        if stage_trials < 2:
            raise ValueError("stage_trials must be ≥ 2")
        self.stage_trials = stage_trials
        self._constraints_func = constraints_func
        self._rng = np.random.RandomState(seed)
        self._cache: tuple[int, dict[str, list[Any]]] = (-1, {})

    def reseed_rng(self) -> None:
        self._rng.seed()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def allowed(self, study: optuna.Study) -> dict[str, list[Any]]:
        """Parameter → options still allowed (parameters never seen are unrestricted)."""
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if self._cache[0] == len(done):
            return self._cache[1]
        allowed: dict[str, list[Any]] = {}
        for t in done[:1]:
            for n, d in t.distributions.items():
                if isinstance(d, CategoricalDistribution):
                    allowed[n] = list(d.choices)
        for stage in range(len(done) // self.stage_trials):
            batch = done[:(stage + 1) * self.stage_trials]  # every trial so far: more data, same effects
            open_ = [n for n, opts in allowed.items() if len(opts) > 1]
            if not open_:
                break
            effects = option_effects(batch, open_, _fitness_ranks(batch, self._constraints_func))
            # the one option in the whole space that hurts most (relative to its choice's best)
            worst: tuple[float, str, Any] | None = None
            for n in open_:
                seen = {o: e for o, e in effects.get(n, {}).items() if o in allowed[n]}
                if len(seen) < len(allowed[n]):  # an option not tried yet: nothing to judge it on
                    continue
                top = max(seen.values())
                for o, e in seen.items():
                    key = (e - top, n, o)
                    if worst is None or (key[0], key[1], str(key[2])) < (worst[0], worst[1], str(worst[2])):
                        worst = key
            if worst is not None:
                allowed[worst[1]] = [o for o in allowed[worst[1]] if o != worst[2]]
        self._cache = (len(done), allowed)
        return allowed

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        if not isinstance(param_distribution, CategoricalDistribution):
            return optuna.samplers.RandomSampler(seed=int(self._rng.randint(2**31))).sample_independent(
                study, trial, param_name, param_distribution)
        options = self.allowed(study).get(param_name, list(param_distribution.choices))
        return options[self._rng.randint(len(options))]


class TwoStageSampler(RegularizedEvolutionSampler):
    """Two-stage hardware-aware search (HURRICANE's idea, with predictors instead of a
    lookup of measured operators).

    Stage 1 draws ``probe_trials`` architectures at random. From them, each option's effect
    on latency (second objective, in log) and on accuracy (first) is fitted
    (:func:`option_effects`); an option another option of the same choice beats on both —
    slower on this device and no more accurate — is dropped. Stage 2 is regularized evolution
    over the options that are left, its population drawn from stage 2's trials only."""

    def __init__(self, *, probe_trials: int = 40, population_size: int = 20, tournament_size: int = 5,
                 seed: int | None = None, constraints_func: Callable[[FrozenTrial], Sequence[float]] | None = None):
        super().__init__(population_size=population_size, tournament_size=tournament_size, seed=seed,
                         constraints_func=constraints_func)
        self.probe_trials = probe_trials
        self._kept: dict[str, list[Any]] | None = None

    def kept(self, study: optuna.Study) -> dict[str, list[Any]] | None:
        """The options stage 2 searches (None during the probe)."""
        if self._kept is not None:
            return self._kept
        done = self._complete(study)
        if len(done) < self.probe_trials:
            return None
        probe = done[:self.probe_trials]
        names = sorted({n for t in probe for n, d in t.distributions.items() if isinstance(d, CategoricalDistribution)})
        lat = option_effects(probe, names, np.log(np.maximum([t.values[1] for t in probe], 1e-12)))
        acc = option_effects(probe, names, np.array([t.values[0] for t in probe], dtype=float))
        kept: dict[str, list[Any]] = {}
        for n in names:
            d = probe[0].distributions.get(n)
            opts = list(d.choices) if isinstance(d, CategoricalDistribution) else []
            seen = [o for o in opts if o in lat.get(n, {})]
            keep = [o for o in seen if not any(
                lat[n][p] <= lat[n][o] and acc[n][p] >= acc[n][o] and (lat[n][p], acc[n][p]) != (lat[n][o], acc[n][o])
                for p in seen if p != o)]
            kept[n] = keep + [o for o in opts if o not in seen] or opts
        self._kept = kept
        return kept

    def _allowed(self, study: optuna.Study, name: str) -> list[Any] | None:
        kept = self.kept(study)
        return None if kept is None else kept.get(name)

    def _population(self, study: optuna.Study) -> list[FrozenTrial]:
        return self._complete(study)[self.probe_trials:]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self.kept(study) is None:
            return {}
        return super().sample_relative(study, trial, search_space)


class RandomProposer(optuna.samplers.RandomSampler):
    """Optuna's random sampler that can also propose whole parameter sets (the fast path)."""

    def __init__(self, seed: int | None = None):
        super().__init__(seed=seed)
        self._np = np.random.RandomState(seed)

    def propose(self, study: optuna.Study, n: int, distributions: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            out.append({k: d.choices[self._np.randint(len(d.choices))] for k, d in distributions.items()
                        if isinstance(d, CategoricalDistribution)})
        return out
