"""The NAS-Bench-201 search space (15,625 cells)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.zoo.nb201 import OPS, arch_str_from_ops, build_nb201, parse_arch

__all__ = ["NB201Space"]


class NB201Space:
    name = "nb201"
    size = len(OPS) ** 6

    def sample(self, rng: np.random.Generator) -> str:
        return arch_str_from_ops([OPS[i] for i in rng.integers(0, len(OPS), 6)])

    def to_graph(self, arch: str) -> Graph:
        return build_nb201(arch)

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """An architecture string, or an NB201 index looked up in a table with ``arch_idx``
        and ``arch_str`` columns (the shared latency CSV has both)."""
        spec = spec.strip()
        if not spec.isdigit():
            try:
                parse_arch(spec)
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
