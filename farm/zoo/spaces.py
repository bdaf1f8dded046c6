"""The one registry of search spaces: name → space, shared by the CLI, predictors and searches.

A space here is what the farm needs of an architecture family: sample a candidate, name it
(a candidate is a string: the shared CSVs' spelling), resolve a user's spelling or a table
index, and build its graph IR fast and without torch. Search semantics (Optuna parameters,
torch modules, accuracy) are added on top in ``nas/spaces``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.zoo import fbnet, nb201
from farm.zoo.mbv3 import MBV3Space
from farm.zoo.mcu_space import MCUSpace

__all__ = ["SearchSpace", "NB201Space", "FBNetSpace", "MBV3Space", "MCUSpace", "SPACES", "get_space"]


@runtime_checkable
class SearchSpace(Protocol):
    """What every space offers (checked for each registered space by :mod:`farm.testing.space`)."""

    name: str
    size: int

    def sample(self, rng: np.random.Generator) -> str:
        """A random candidate in the space's canonical spelling."""
        ...

    def to_graph(self, arch: str) -> Graph:
        """The candidate's graph IR (no torch; fast enough to price thousands per second)."""
        ...

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """A user's spelling, or an index looked up in ``table``, as the canonical spelling;
        InputError naming what is wrong otherwise."""
        ...


class NB201Space:
    name = "nb201"
    size = len(nb201.OPS) ** 6

    def sample(self, rng: np.random.Generator) -> str:
        return nb201.arch_str_from_ops([nb201.OPS[i] for i in rng.integers(0, len(nb201.OPS), 6)])

    def to_graph(self, arch: str) -> Graph:
        return nb201.build_nb201(arch)

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """An architecture string, or an NB201 index looked up in a table with ``arch_idx``
        and ``arch_str`` columns (the shared latency CSV has both)."""
        spec = spec.strip()
        if not spec.isdigit():
            try:
                nb201.parse_arch(spec)
            except ValueError as err:
                raise InputError(str(err)) from None
            return spec
        if table is None:
            raise InputError(f"architecture index {spec} needs a table with arch_idx and arch_str columns (--table)")
        with open(table, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("arch_idx") == spec:
                    return row["arch_str"]
        raise InputError(f"{table}: no architecture with arch_idx {spec}")


class FBNetSpace:
    """Candidates are ``arch`` strings (``k5_e6-skip-…``), the CSV's canonical spelling."""

    name = "fbnet"
    size = len(fbnet.OPS) ** fbnet.NUM_LAYERS
    table_columns = ("arch_idx", "arch")

    def sample(self, rng: np.random.Generator) -> str:
        return fbnet.arch_str([int(i) for i in rng.integers(0, len(fbnet.OPS), fbnet.NUM_LAYERS)])

    def to_graph(self, arch: str) -> Graph:
        return fbnet.build_fbnet(arch)

    def encode(self, arch: str) -> tuple[int, ...]:
        """The 22 op indices (the CSV's ``op_idx``)."""
        return fbnet.parse_arch(arch)

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """An ``arch`` string, an ``op_idx`` string (``7-8-1-…``), or an ``arch_idx`` looked up
        in a table with ``arch_idx`` and ``arch`` columns (the shared FBNet latency CSV)."""
        spec = spec.strip()
        if not spec.isdigit():
            try:
                return fbnet.arch_str(fbnet.parse_arch(spec))
            except ValueError as err:
                raise InputError(str(err)) from None
        if table is None:
            raise InputError(f"architecture index {spec} needs a table with arch_idx and arch columns (--table)")
        with open(table, newline="") as f:
            reader = csv.DictReader(f)
            if not {"arch_idx", "arch"} <= set(reader.fieldnames or ()):
                raise InputError(f"{table}: not an FBNet table (needs columns arch_idx and arch)")
            for row in reader:
                if row["arch_idx"] == spec:
                    try:
                        return fbnet.arch_str(fbnet.parse_arch(row["arch"]))
                    except ValueError as err:
                        raise InputError(f"{table}: arch_idx {spec}: {err}") from None
        raise InputError(f"{table}: no architecture with arch_idx {spec}")


SPACES: dict[str, SearchSpace] = {"nb201": NB201Space(), "fbnet": FBNetSpace(), "mbv3": MBV3Space(),
                                  "mcu": MCUSpace()}


def get_space(name: str) -> SearchSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise InputError(f"unknown search space {name!r}; known: {', '.join(SPACES)}") from None
