"""Conformance suite for :class:`farm.zoo.spaces.SearchSpace`.

``make_space()`` returns the space. A candidate is a string in the space's canonical
spelling: sampling is seeded by the generator passed in, ``resolve`` maps a spelling (or a
table's ``arch_idx``) to the canonical one and refuses what is not a candidate with an
InputError, and ``to_graph`` builds the candidate's graph IR.

Index lookups use a table in the shared latency CSVs' layout: ``arch_idx`` plus the
candidate in ``arch_str`` (NAS-Bench-201) or ``arch`` (FBNet); the check writes both.

    from farm.testing.space import check_space
    check_space(MySpace)
"""

from __future__ import annotations

import csv
import tempfile
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.testing._util import expect_raises
from farm.zoo.spaces import SearchSpace

__all__ = ["SPACE_CHECKS", "check_space", "check_satisfies_the_protocol", "check_sampling_is_seeded",
           "check_samples_are_canonical", "check_candidates_build_graphs",
           "check_a_bad_spelling_is_an_input_error", "check_an_index_is_looked_up_in_a_table"]

MakeSpace = Callable[[], SearchSpace]


def check_satisfies_the_protocol(make_space: MakeSpace) -> None:
    space = make_space()
    assert isinstance(space, SearchSpace), f"{type(space).__name__} does not satisfy the SearchSpace protocol"
    assert isinstance(space.name, str) and space.name, f"{type(space).__name__}.name is {space.name!r}"
    assert isinstance(space.size, int) and space.size > 1, f"{space.name}: size is {space.size!r}"


def check_sampling_is_seeded(make_space: MakeSpace) -> None:
    space = make_space()
    first = [space.sample(np.random.default_rng(7)) for _ in range(2)]
    assert first[0] == first[1], f"{space.name}: one seed gave two candidates: {first}"
    rng = np.random.default_rng(0)
    drawn = [space.sample(rng) for _ in range(20)]
    assert all(isinstance(a, str) and a for a in drawn), f"{space.name}: sample() gave {drawn[:3]}…"
    assert len(set(drawn)) > 1, f"{space.name}: 20 draws from one generator gave one candidate {drawn[0]!r}"


def check_samples_are_canonical(make_space: MakeSpace) -> None:
    space = make_space()
    rng = np.random.default_rng(1)
    for _ in range(5):
        arch = space.sample(rng)
        assert space.resolve(arch) == arch, f"{space.name}: resolve() changes the sampled {arch!r}"
        assert space.resolve(f"  {arch}\n") == arch, f"{space.name}: resolve() does not strip {arch!r}"


def check_candidates_build_graphs(make_space: MakeSpace) -> None:
    space = make_space()
    rng = np.random.default_rng(2)
    for _ in range(3):
        arch = space.sample(rng)
        g = space.to_graph(arch)
        assert isinstance(g, Graph), f"{space.name}: to_graph({arch!r}) is a {type(g).__name__}"
        assert g.nodes and g.macs > 0 and g.params > 0, \
            f"{space.name}: {arch!r} built {len(g.nodes)} nodes, {g.macs} MACs, {g.params} params"
        assert space.to_graph(arch).to_dict() == g.to_dict(), f"{space.name}: to_graph({arch!r}) is not repeatable"


def check_a_bad_spelling_is_an_input_error(make_space: MakeSpace) -> None:
    space = make_space()
    for bad in ("not a candidate", "|nor this~9|"):
        err = expect_raises(InputError, partial(space.resolve, bad), f"{space.name}: resolve({bad!r})")
        assert str(err).strip(), f"{space.name}: the InputError for {bad!r} says nothing"


def check_an_index_is_looked_up_in_a_table(make_space: MakeSpace) -> None:
    space = make_space()
    arch = space.sample(np.random.default_rng(3))
    err = expect_raises(InputError, lambda: space.resolve("12"), f"{space.name}: resolve('12') without a table")
    assert "table" in str(err), f"{space.name}: an index without a table should ask for one: {err}"
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "latency.csv"
        with open(table, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["arch_idx", "arch_str", "arch", "latency_ms"])
            w.writerow(["12", arch, arch, "1.5"])
        got = space.resolve("12", table=table)
        assert got == arch, f"{space.name}: arch_idx 12 resolved to {got!r}, the table says {arch!r}"
        expect_raises(InputError, lambda: space.resolve("13", table=table),
                      f"{space.name}: resolve() of an index the table lacks")


SPACE_CHECKS: tuple[Callable[[MakeSpace], None], ...] = (
    check_satisfies_the_protocol,
    check_sampling_is_seeded,
    check_samples_are_canonical,
    check_candidates_build_graphs,
    check_a_bad_spelling_is_an_input_error,
    check_an_index_is_looked_up_in_a_table,
)


def check_space(make_space: MakeSpace) -> None:
    """Run every check of :data:`SPACE_CHECKS`; the first failure raises AssertionError."""
    for check in SPACE_CHECKS:
        check(make_space)
