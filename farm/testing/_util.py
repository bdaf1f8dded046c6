"""Helpers shared by the conformance suites: plain asserts, no pytest."""

from __future__ import annotations

from typing import Callable, TypeVar

__all__ = ["expect_raises"]

E = TypeVar("E", bound=BaseException)


def expect_raises(exc: type[E], fn: Callable[[], object], what: str) -> E:
    """Call ``fn`` and return the ``exc`` it raises; AssertionError naming ``what`` otherwise."""
    try:
        fn()
    except exc as err:
        return err
    except Exception as err:
        raise AssertionError(f"{what}: expected {exc.__name__}, got {type(err).__name__}: {err}") from err
    raise AssertionError(f"{what}: expected {exc.__name__}, nothing was raised")
