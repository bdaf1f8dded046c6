"""LiteRT (TensorFlow Lite) runner: ``ai_edge_litert`` first, ``tflite_runtime`` on boards
that only have it. Part of the on-device agent: imports nothing outside ``farm/agent``."""

from __future__ import annotations

import importlib
import importlib.util
from importlib import metadata
from typing import Any, Callable

import numpy as np

from .runners import ModelLoadError, RunnerUnavailable, random_input

__all__ = ["LiteRtRunner"]

# (interpreter module, distribution name) in order of preference.
_PACKAGES = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))
_MISSING = "LiteRT is not installed (pip install ai-edge-litert, or tflite-runtime on a board)"


def _interpreter_module() -> tuple[Any, str]:
    """The first importable interpreter module and its distribution name."""
    for module, dist in _PACKAGES:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            continue
        try:
            return importlib.import_module(module), dist
        except ImportError:  # installed but broken (wrong wheel for this CPU or libc): try the next
            continue
    raise RunnerUnavailable(_MISSING)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class LiteRtRunner:
    """The TFLite interpreter with its default CPU path (XNNPACK) and explicit thread count."""

    name = "litert"

    def available(self) -> bool:
        return any(importlib.util.find_spec(m.split(".")[0]) is not None for m, _ in _PACKAGES)

    def version(self) -> str:
        """``"<distribution> <version>"``, e.g. ``"ai-edge-litert 2.3.0"``."""
        _, dist = _interpreter_module()
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:  # a source build without dist metadata
            return dist

    def check_delegate(self, delegate: str) -> str:
        """Load an external delegate library once (a missing ``libedgetpu.so.1`` is a failed
        health check, not a crash mid-job)."""
        mod, _ = _interpreter_module()
        try:
            mod.load_delegate(delegate)
        except (ValueError, OSError, RuntimeError) as err:
            raise RunnerUnavailable(f"cannot load LiteRT delegate {delegate}: {_first_line(err)}") from None
        return f"delegate {delegate} loads"

    def prepare(self, model_path: str, *, threads: int, delegate: str | None = None) -> Callable[[], None]:
        """Load ``model_path`` with ``threads`` CPU threads and random inputs; return run-once.

        ``delegate``: path of an external delegate library (e.g. ``libedgetpu.so.1``) the
        interpreter hands the graph to; ``None`` runs on the CPU.
        """
        mod, _ = _interpreter_module()
        delegates = []
        if delegate:
            try:
                delegates.append(mod.load_delegate(delegate))
            except (ValueError, OSError, RuntimeError) as err:
                raise RunnerUnavailable(f"cannot load LiteRT delegate {delegate}: {_first_line(err)}") from None
        try:
            interp = mod.Interpreter(model_path=str(model_path), num_threads=threads,
                                     experimental_delegates=delegates or None)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:  # bad file, unsupported op, delegate refusal
            raise ModelLoadError(f"LiteRT could not load {model_path}: {_first_line(err)}") from None
        rng = np.random.default_rng(0)
        for d in interp.get_input_details():
            sig = [int(x) for x in d.get("shape_signature", ())]
            if any(x < 0 for x in sig):
                raise ModelLoadError(f"{model_path}: input {d['name']!r} has a dynamic shape {sig}; "
                                     "convert the model with static input shapes")
            shape = tuple(int(x) for x in d["shape"])
            try:
                value = random_input(shape, d["dtype"], rng)
            except ModelLoadError as err:
                raise ModelLoadError(f"{model_path}: input {d['name']!r}: {err}") from None
            interp.set_tensor(d["index"], value)
        invoke = interp.invoke  # the bound method keeps the interpreter alive
        try:
            invoke()  # surfaces kernel errors at prepare time, not inside the timed loop
        except (ValueError, RuntimeError) as err:
            raise ModelLoadError(f"LiteRT failed to run {model_path}: {_first_line(err)}") from None
        return invoke
