"""Search spaces for architecture search.

The registry and the graph-level spaces (sampling, spelling, graph IR) live in
:mod:`farm.zoo.spaces`, shared with the CLI and the predictors; search semantics (Optuna
parameters, torch modules, accuracy) are added here on top of them.
"""

from __future__ import annotations

from farm.zoo.spaces import SPACES, FBNetSpace, NB201Space, SearchSpace, get_space

__all__ = ["SPACES", "SearchSpace", "NB201Space", "FBNetSpace", "get_space"]
