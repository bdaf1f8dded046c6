"""Hardware-aware architecture search (layer 3): the predictors as cost function, the farm as judge.

- ``nas.search``: ``search(...)`` over a space (``farm.zoo.spaces``) with an injected latency
  model (a predictor bundle for the device), accuracy from a table, constraints, Optuna
  strategies (``nas.strategies``), the Pareto front, and ``validate`` through ``farm.profile``;
  ``nas.report`` writes the run directory.
- ``nas.bench``: the tabular benchmark (``hwfarm nas bench``): which few target latencies to
  measure, and what to return, under a latency budget.
- ``nas.params``: a space as named Optuna parameters; ``nas.objectives``: candidates, limits,
  latency models, the accuracy table.
"""
