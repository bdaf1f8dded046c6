"""The Executor conformance suite (:mod:`farm.testing.executor`) over ThreadExecutor."""

from __future__ import annotations

from typing import Callable

import pytest

from farm.scheduler.executor import Executor, ThreadExecutor
from farm.testing.executor import EXECUTOR_CHECKS

EXECUTORS: dict[str, Callable[[], Executor]] = {
    "thread": ThreadExecutor,
}


@pytest.fixture(params=sorted(EXECUTORS))
def make_executor(request: pytest.FixtureRequest) -> Callable[[], Executor]:
    return EXECUTORS[request.param]


@pytest.mark.parametrize("check", EXECUTOR_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_executor(make_executor: Callable[[], Executor], check: Callable[[Callable[[], Executor]], None]) -> None:
    check(make_executor)
