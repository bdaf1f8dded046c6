"""Executors: where the scheduler's per-device workers run.

The scheduler decides *what* runs (jobs in the store, leases, retries); an executor only
runs its workers — one per device — and returns when all have returned. In-process threads
are the default; a cluster executor (Dask distributed, each device host a worker advertising
its devices as resources) plugs in through the same protocol. The store, not the executor,
decides whether a job ran.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

__all__ = ["Executor", "ThreadExecutor"]


@runtime_checkable
class Executor(Protocol):
    def run_workers(self, workers: Sequence[tuple[str, Callable[[], None]]]) -> None:
        """Run every ``(device name, worker)`` concurrently; return when all have returned.
        An exception raised by a worker is raised here after the others have finished."""
        ...


class ThreadExecutor:
    """One daemon thread per device worker, in this process (named ``hwfarm-DEVICE``)."""

    def run_workers(self, workers: Sequence[tuple[str, Callable[[], None]]]) -> None:
        errors: list[BaseException] = []

        def guarded(fn: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    fn()
                except BaseException as err:  # re-raised in the caller's thread below
                    errors.append(err)
            return run

        threads = [threading.Thread(target=guarded(fn), name=f"hwfarm-{name}", daemon=True) for name, fn in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
