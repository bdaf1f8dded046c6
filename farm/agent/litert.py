"""LiteRT (TensorFlow Lite) runner: ``ai_edge_litert`` first, ``tflite_runtime`` on boards
that only have it. Part of the on-device agent: imports nothing outside ``farm/agent``."""

from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import Any, Callable

import numpy as np

from .runners import ModelLoadError, RunnerUnavailable, random_input

__all__ = ["LiteRtRunner"]

_PACKAGES = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))


def _interpreter_module() -> tuple[Any, str]:
    for module, dist in _PACKAGES:
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            return importlib.import_module(module), dist
    raise RunnerUnavailable("LiteRT is not installed (pip install ai-edge-litert, or tflite-runtime on a board)")


class LiteRtRunner:
    name = "litert"

    def available(self) -> bool:
        return any(importlib.util.find_spec(m.split(".")[0]) is not None for m, _ in _PACKAGES)

    def version(self) -> str:
        _, dist = _interpreter_module()
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            return dist

    def prepare(self, model_path: str, *, threads: int, delegate: str | None = None) -> Callable[[], None]:
        """``delegate``: path of an external delegate library (e.g. ``libedgetpu.so.1``)."""
        mod, _ = _interpreter_module()
        delegates = []
        if delegate:
            try:
                delegates.append(mod.load_delegate(delegate))
            except (ValueError, OSError, RuntimeError) as err:
                raise RunnerUnavailable(f"cannot load delegate {delegate!r}: {err}") from None
        try:
            interp = mod.Interpreter(model_path=model_path, num_threads=threads,
                                     experimental_delegates=delegates or None)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelLoadError(f"LiteRT could not load {model_path}: {first}") from None
        rng = np.random.default_rng(0)
        for d in interp.get_input_details():
            sig = d.get("shape_signature")
            if sig is not None and any(int(x) < 0 for x in sig):
                raise ModelLoadError(f"{model_path}: input {d['name']!r} has a dynamic shape {list(sig)}; "
                                     "convert the model with static input shapes")
            interp.set_tensor(d["index"], random_input(tuple(int(x) for x in d["shape"]), d["dtype"], rng))
        invoke = interp.invoke
        try:
            invoke()
        except RuntimeError as err:
            raise ModelLoadError(f"LiteRT failed to run {model_path}: {err}") from None
        return invoke
