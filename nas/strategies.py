"""Search strategies, all as Optuna samplers, so every one runs through the same ask/tell loop,
the same storage and the same benchmark.

- ``random``: :class:`optuna.samplers.RandomSampler`, the baseline every benchmark reports;
- ``tpe``: :class:`optuna.samplers.TPESampler` (multi-objective TPE on accuracy and latency);
- ``nsga2``: :class:`optuna.samplers.NSGAIISampler`;
- ``evolution``: :class:`RegularizedEvolutionSampler` (Real et al., AAAI 2019; OFA's search
  with a predictor as cost): a population of the newest trials, a tournament picks a parent,
  one choice mutates, the oldest ages out.

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

STRATEGIES = ("random", "tpe", "nsga2", "evolution")
PLANNED_STRATEGIES = ("shrink", "two-stage")  # in the CLI's contract, not implemented yet


# Optuna 5 reads constraints the search sets on each trial (``Trial.set_constraint``) and
# deprecates the samplers' ``constraints_func``; Optuna 4 needs the function.
NAMED_CONSTRAINTS = hasattr(optuna.trial.Trial, "set_constraint")


def constraints_of(trial: FrozenTrial) -> Sequence[float]:
    """The ``constraints_func`` of every sampler: what the search stored on the trial."""
    return list(trial.user_attrs.get("constraints", ()))


def make_sampler(strategy: str, *, seed: int | None, population_size: int = 50) -> Any:
    """The Optuna sampler of a strategy, constraints wired in (values ≤ 0 are feasible)."""
    cf: dict[str, Any] = {} if NAMED_CONSTRAINTS else {"constraints_func": constraints_of}
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, **cf)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size, **cf)
    if strategy == "evolution":
        return RegularizedEvolutionSampler(seed=seed, population_size=population_size,
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
        done = self._complete(study)
        if not search_space or len(done) < self.population_size:
            return {}
        population = done[-self.population_size:]
        picks = self._rng.choice(len(population), self.tournament_size, replace=False)
        parent = max((population[int(i)] for i in sorted(picks)), key=self._fitness)
        params = {k: v for k, v in parent.params.items() if k in search_space}
        cats = {n: d for n, d in search_space.items()
                if isinstance(d, CategoricalDistribution) and len(d.choices) > 1 and n in params}
        names = sorted(cats)
        if names:
            name = names[self._rng.randint(len(names))]
            options = [c for c in cats[name].choices if c != params[name]]
            params[name] = options[self._rng.randint(len(options))]
        return params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._random.after_trial(study, trial, state, values)
