"""Runners: the inference runtimes that execute a model file on this machine.

A runner turns a model file into a zero-argument callable that performs exactly one
inference on pre-generated random inputs. Timing happens outside (``measure.py``), so every
runner is timed the same way. Runtimes are imported lazily: a board needs only the one it
uses.

Contract for every runner (see ``tests/farm/test_runners.py``):

- ``name``: the runtime's registry name (``onnxruntime``, ``litert``).
- ``available() -> bool``: the runtime can be imported here.
- ``version() -> str``: the runtime's version string.
- ``prepare(model_path, *, threads) -> Callable[[], None]``: load the model with exactly
  ``threads`` intra-op threads (inter-op 1), bind inputs, return the run-once callable.
  Raises :class:`ModelLoadError` when the runtime rejects the model and
  :class:`RunnerUnavailable` when the runtime is missing.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import numpy as np

from .runner import ModelLoadError, Runner, RunnerUnavailable, first_line, random_input

__all__ = [
    "Runner",
    "RunnerUnavailable",
    "ModelLoadError",
    "OnnxRuntimeRunner",
    "get_runner",
    "RUNNERS",
    "random_input",
]


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int16)": np.int16,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


class OnnxRuntimeRunner:
    """onnxruntime's CPU execution provider, sequential execution, explicit thread counts."""

    name = "onnxruntime"

    def available(self) -> bool:
        return importlib.util.find_spec("onnxruntime") is not None

    def version(self) -> str:
        if not self.available():
            raise RunnerUnavailable("onnxruntime is not installed (pip install onnxruntime)")
        import onnxruntime as ort

        return ort.__version__

    def prepare(self, model_path: str, *, threads: int) -> Callable[[], None]:
        if not self.available():
            raise RunnerUnavailable("onnxruntime is not installed (pip install onnxruntime)")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Without this the intra-op pool's threads spin after each run and steal the core
        # the next measurement runs on.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0" if threads > 1 else "1")
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception zoo
            raise ModelLoadError(f"onnxruntime could not load {model_path}: {first_line(err)}") from err
        rng = np.random.default_rng(0)
        feeds = {}
        for inp in sess.get_inputs():
            shape = tuple(inp.shape)
            if any(not isinstance(d, int) or d <= 0 for d in shape):
                raise ModelLoadError(
                    f"{model_path}: input {inp.name!r} has a dynamic shape {list(shape)}; "
                    "export the model with static input shapes"
                )
            if inp.type not in _ORT_TYPES:
                raise ModelLoadError(f"{model_path}: input {inp.name!r} has unsupported type {inp.type}")
            feeds[inp.name] = random_input(shape, _ORT_TYPES[inp.type], rng)
        # IO binding with preallocated outputs: each timed call is the session's work, not
        # Python-side output allocation (about 2 µs per call here; a third of a tiny model).
        binding = sess.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value))
        for out in sess.get_outputs():
            dtype = _ORT_TYPES.get(out.type)
            if dtype is not None and all(isinstance(d, int) and d > 0 for d in out.shape):
                binding.bind_ortvalue_output(out.name, ort.OrtValue.ortvalue_from_shape_and_type(out.shape, dtype))
            else:
                binding.bind_output(out.name)  # shape known only at run time: ORT allocates
        run = sess.run_with_iobinding

        def run_once() -> None:
            run(binding)

        try:
            run_once()  # surfaces kernel errors at prepare time, not inside the timed loop
        except Exception as err:
            raise ModelLoadError(f"onnxruntime failed to run {model_path}: {first_line(err)}") from err
        return run_once


def _litert_runner() -> Runner:
    from .litert import LiteRtRunner

    return LiteRtRunner()


# Built-in runners by registry name; factories so that importing this module loads no runtime.
RUNNERS: dict[str, Callable[[], Runner]] = {
    "onnxruntime": OnnxRuntimeRunner,
    "litert": _litert_runner,
}


def get_runner(name: str) -> Runner:
    try:
        return RUNNERS[name]()
    except KeyError:
        raise RunnerUnavailable(f"unknown runtime {name!r}; known: {', '.join(sorted(RUNNERS))}") from None
