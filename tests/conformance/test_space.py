"""The SearchSpace conformance suite (:mod:`farm.testing.space`) over every registered space
(:data:`farm.zoo.spaces.SPACES`: NAS-Bench-201, FBNet)."""

from __future__ import annotations

from typing import Callable

import pytest

from farm.testing.space import SPACE_CHECKS
from farm.zoo.spaces import SPACES, SearchSpace


def test_the_registered_spaces_are_covered() -> None:
    assert {"nb201", "fbnet"} <= set(SPACES) and all(SPACES[n].name == n for n in SPACES)


@pytest.fixture(params=sorted(SPACES))
def make_space(request: pytest.FixtureRequest) -> Callable[[], SearchSpace]:
    return lambda: SPACES[request.param]


@pytest.mark.parametrize("check", SPACE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_space(make_space: Callable[[], SearchSpace], check: Callable[[Callable[[], SearchSpace]], None]) -> None:
    check(make_space)
