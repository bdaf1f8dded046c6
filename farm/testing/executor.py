"""Conformance suite for :class:`farm.scheduler.executor.Executor`.

``run_workers([(device name, worker), ...])`` runs every worker concurrently and returns
when all have returned; an exception raised by a worker is raised to the caller after the
others have finished. ``make_executor()`` returns a fresh executor that runs workers of this
process (a cluster executor runs these checks against a local cluster).

    from farm.testing.executor import check_executor
    check_executor(ThreadExecutor)
"""

from __future__ import annotations

import threading
from typing import Callable

from farm.scheduler.executor import Executor
from farm.testing._util import expect_raises

__all__ = ["EXECUTOR_CHECKS", "check_executor", "check_satisfies_the_protocol", "check_every_worker_runs_once",
           "check_workers_run_concurrently", "check_a_failure_is_raised_after_the_others_finish",
           "check_no_workers_returns"]

MakeExecutor = Callable[[], Executor]

WAIT_S = 10.0  # how long a worker waits for its partner: only a broken executor ever waits this long


def check_satisfies_the_protocol(make_executor: MakeExecutor) -> None:
    executor = make_executor()
    assert isinstance(executor, Executor), f"{type(executor).__name__} does not satisfy the Executor protocol"


def check_every_worker_runs_once(make_executor: MakeExecutor) -> None:
    ran: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> Callable[[], None]:
        def run() -> None:
            with lock:
                ran.append(name)
        return run

    names = [f"dev-{i}" for i in range(6)]
    make_executor().run_workers(tuple((n, worker(n)) for n in names))  # any Sequence, not only lists
    assert sorted(ran) == names, f"workers that ran: {sorted(ran)}, expected each of {names} once"


def check_workers_run_concurrently(make_executor: MakeExecutor) -> None:
    """Two workers that each wait for the other's signal both finish."""
    a_up, b_up = threading.Event(), threading.Event()
    met: dict[str, bool] = {}

    def a() -> None:
        a_up.set()
        met["a"] = b_up.wait(WAIT_S)

    def b() -> None:
        b_up.set()
        met["b"] = a_up.wait(WAIT_S)

    make_executor().run_workers([("dev-a", a), ("dev-b", b)])
    assert met == {"a": True, "b": True}, f"the workers did not run at the same time: {met}"


class _Boom(Exception):
    pass


def check_a_failure_is_raised_after_the_others_finish(make_executor: MakeExecutor) -> None:
    failed = threading.Event()
    finished: list[str] = []
    boom = _Boom("dev-a broke")

    def broken() -> None:
        failed.set()
        raise boom

    def slow() -> None:
        failed.wait(WAIT_S)
        threading.Event().wait(0.2)  # still busy well after dev-a's failure
        finished.append("dev-b")

    executor = make_executor()
    err = expect_raises(_Boom, lambda: executor.run_workers([("dev-a", broken), ("dev-b", slow)]),
                        "run_workers() with a worker that raises")
    assert err is boom, f"run_workers() raised {err!r}, not the worker's exception"
    assert finished == ["dev-b"], "run_workers() raised before the other worker had finished"


def check_no_workers_returns(make_executor: MakeExecutor) -> None:
    """run_workers([]) returns at once, raising nothing; the executor still runs workers after."""
    executor = make_executor()
    executor.run_workers([])
    ran: list[str] = []
    executor.run_workers([("dev-a", lambda: ran.append("dev-a"))])
    assert ran == ["dev-a"], "after run_workers([]), the executor no longer runs workers"


EXECUTOR_CHECKS: tuple[Callable[[MakeExecutor], None], ...] = (
    check_satisfies_the_protocol,
    check_every_worker_runs_once,
    check_workers_run_concurrently,
    check_a_failure_is_raised_after_the_others_finish,
    check_no_workers_returns,
)


def check_executor(make_executor: MakeExecutor) -> None:
    """Run every check of :data:`EXECUTOR_CHECKS`; the first failure raises AssertionError."""
    for check in EXECUTOR_CHECKS:
        check(make_executor)
