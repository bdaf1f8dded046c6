"""The FBNet search space (9 ops × 22 layers, 9²² architectures) of HW-NAS-Bench's CIFAR-100
setting; graphs come from :mod:`farm.zoo.fbnet`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.zoo.fbnet import NUM_LAYERS, OPS, arch_str, build_fbnet, parse_arch

__all__ = ["FBNetSpace"]


class FBNetSpace:
    """Candidates are ``arch`` strings (``k5_e6-skip-…``), the CSV's canonical spelling."""

    name = "fbnet"
    size = len(OPS) ** NUM_LAYERS
    table_columns = ("arch_idx", "arch")

    def sample(self, rng: np.random.Generator) -> str:
        return arch_str([int(i) for i in rng.integers(0, len(OPS), NUM_LAYERS)])

    def to_graph(self, arch: str) -> Graph:
        return build_fbnet(arch)

    def encode(self, arch: str) -> tuple[int, ...]:
        """The 22 op indices (the CSV's ``op_idx``)."""
        return parse_arch(arch)

    def resolve(self, spec: str, *, table: Path | None = None) -> str:
        """An ``arch`` string, an ``op_idx`` string (``7-8-1-…``), or an ``arch_idx`` looked up
        in a table with ``arch_idx`` and ``arch`` columns (the shared FBNet latency CSV)."""
        spec = spec.strip()
        if not spec.isdigit():
            try:
                return arch_str(parse_arch(spec))
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
                        return arch_str(parse_arch(row["arch"]))
                    except ValueError as err:
                        raise InputError(f"{table}: arch_idx {spec}: {err}") from None
        raise InputError(f"{table}: no architecture with arch_idx {spec}")
