"""The Runner conformance suite (:mod:`farm.testing.runner`) over every built-in runtime in
:data:`farm.agent.runners.RUNNERS` (onnxruntime, LiteRT); a runtime not installed here is
skipped, naming the package."""

from __future__ import annotations

from typing import Callable

import pytest

from farm.agent.runners import RUNNERS, Runner
from farm.testing.runner import RUNNER_CHECKS

INSTALL = {"onnxruntime": "pip install onnxruntime", "litert": "pip install ai-edge-litert"}


@pytest.fixture(params=sorted(RUNNERS))
def make_runner(request: pytest.FixtureRequest) -> Callable[[], Runner]:
    make = RUNNERS[request.param]
    if not make().available():
        pytest.skip(f"runtime {request.param} is not installed here ({INSTALL.get(request.param, '')})")
    return make


def test_every_builtin_runtime_is_covered() -> None:
    assert {"onnxruntime", "litert"} <= set(RUNNERS)
    assert all(RUNNERS[name]().name == name for name in RUNNERS)


@pytest.mark.parametrize("check", RUNNER_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_runner(make_runner: Callable[[], Runner], check: Callable[[Callable[[], Runner]], None]) -> None:
    check(make_runner)
