"""The Store conformance suite (:mod:`farm.testing.store`) over SqliteStore on a file and on
``":memory:"``."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import pytest

from farm.store import SqliteStore, Store
from farm.testing.store import STORE_CHECKS


def _file(tmp: Path) -> Callable[[], Store]:
    n = itertools.count()
    return lambda: SqliteStore(tmp / f"store-{next(n)}.db")  # each call a fresh, empty file


STORES: dict[str, Callable[[Path], Callable[[], Store]]] = {
    "sqlite-file": _file,
    "sqlite-memory": lambda tmp: lambda: SqliteStore(":memory:"),
}


@pytest.fixture(params=sorted(STORES))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    return STORES[request.param](tmp_path)


@pytest.mark.parametrize("check", list(STORE_CHECKS),
                         ids=[c.__name__.removeprefix("check_") for c in STORE_CHECKS])
def test_store(make_store: Callable[[], Store], check: Callable[[Callable[[], Store]], None]) -> None:
    check(make_store)
