"""Conformance suite for :class:`farm.agent.runners.Runner`.

``make_runner()`` returns a runner whose runtime is installed here (``available()``). The
checks give it a small float32 model in the format its runtime reads (ONNX, or ``.tflite``
for a runtime that reads only TFLite, as :func:`farm.measurement.resolve_runtime` says).

    from farm.testing.runner import check_runner
    check_runner(MyRunner)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from farm.agent.runners import ModelLoadError, Runner
from farm.measurement import resolve_runtime
from farm.testing._models import gemm_model, save_onnx, save_tflite_fc
from farm.testing._util import expect_raises

__all__ = ["RUNNER_CHECKS", "check_runner", "check_names_itself_and_reports_a_version",
           "check_prepare_returns_a_run_once_callable", "check_sessions_with_different_threads_coexist",
           "check_unreadable_model_is_a_model_load_error", "check_missing_file_is_a_model_load_error"]

MakeRunner = Callable[[], Runner]


def _suffix(runner: Runner) -> str:
    name = runner.name
    return ".tflite" if resolve_runtime(name, "onnx") != name and resolve_runtime(name, "tflite") == name else ".onnx"


def _model(runner: Runner, tmp: Path) -> str:
    """A 1x32 → 8 float32 model in the runner's format."""
    if _suffix(runner) == ".tflite":
        return str(save_tflite_fc(32, 8, tmp / "m.tflite").path)
    return str(save_onnx(gemm_model(8), tmp / "m.onnx").path)


def check_names_itself_and_reports_a_version(make_runner: MakeRunner) -> None:
    runner = make_runner()
    assert isinstance(runner.name, str) and runner.name, f"{type(runner).__name__}.name is {runner.name!r}"
    assert runner.available() is True, f"{runner.name}: available() is {runner.available()!r} where it runs"
    version = runner.version()
    assert isinstance(version, str) and version.strip(), f"{runner.name}: version() is {version!r}"


def check_prepare_returns_a_run_once_callable(make_runner: MakeRunner) -> None:
    runner = make_runner()
    with tempfile.TemporaryDirectory() as tmp:
        run_once = runner.prepare(_model(runner, Path(tmp)), threads=1)
        assert callable(run_once), f"{runner.name}: prepare() returned {run_once!r}, not a callable"
        for i in range(3):  # one inference per call, as often as the timing loop asks
            result = run_once()
            assert result is None, f"{runner.name}: run #{i + 1} returned {type(result).__name__}, not None"


def check_sessions_with_different_threads_coexist(make_runner: MakeRunner) -> None:
    """One runner prepares a model twice, with 1 and 2 threads; both callables keep running."""
    runner = make_runner()
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(runner, Path(tmp))
        one, two = runner.prepare(model, threads=1), runner.prepare(model, threads=2)
        for threads, run_once in ((2, two), (1, one), (2, two)):
            assert run_once() is None, f"{runner.name}: the {threads}-thread session's run returned a value"


def check_unreadable_model_is_a_model_load_error(make_runner: MakeRunner) -> None:
    runner = make_runner()
    with tempfile.TemporaryDirectory() as tmp:
        junk = Path(tmp) / f"junk{_suffix(runner)}"
        junk.write_bytes(b"\x08\x07" + b"not a model" * 10)
        err = expect_raises(ModelLoadError, lambda: runner.prepare(str(junk), threads=1),
                            f"{runner.name}: preparing a file that is no model")
        assert str(err).strip(), f"{runner.name}: the ModelLoadError says nothing"
        run_once = runner.prepare(_model(runner, Path(tmp)), threads=1)
        assert run_once() is None, f"{runner.name}: after a refused model, a good one's run returned a value"


def check_missing_file_is_a_model_load_error(make_runner: MakeRunner) -> None:
    runner = make_runner()
    with tempfile.TemporaryDirectory() as tmp:
        missing = str(Path(tmp) / f"missing{_suffix(runner)}")
        expect_raises(ModelLoadError, lambda: runner.prepare(missing, threads=1),
                      f"{runner.name}: preparing a file that does not exist")


RUNNER_CHECKS: tuple[Callable[[MakeRunner], None], ...] = (
    check_names_itself_and_reports_a_version,
    check_prepare_returns_a_run_once_callable,
    check_sessions_with_different_threads_coexist,
    check_unreadable_model_is_a_model_load_error,
    check_missing_file_is_a_model_load_error,
)


def check_runner(make_runner: MakeRunner) -> None:
    """Run every check of :data:`RUNNER_CHECKS`; the first failure raises AssertionError."""
    for check in RUNNER_CHECKS:
        check(make_runner)
