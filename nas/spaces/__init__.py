"""Search spaces: sampling, encodings and graph building for architecture families.

Graph builders live in ``farm/zoo`` (the farm and the predictors need them too); a space
adds what a search needs on top: how to sample, name and look up candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from farm.ir.graph import Graph
from nas.spaces.fbnet import FBNetSpace
from nas.spaces.nb201 import NB201Space


class SearchSpace(Protocol):
    """What every space offers: a candidate is a string (the shared CSVs' spelling)."""

    name: str
    size: int

    def sample(self, rng: np.random.Generator) -> str: ...

    def to_graph(self, arch: str) -> Graph: ...

    def resolve(self, spec: str, *, table: Path | None = None) -> str: ...


SPACES: dict[str, Callable[[], SearchSpace]] = {"nb201": NB201Space, "fbnet": FBNetSpace}

__all__ = ["SPACES", "SearchSpace", "NB201Space", "FBNetSpace"]
