"""LiteRT (TensorFlow Lite) runner: ``ai_edge_litert`` first, ``tflite_runtime`` on boards
that only have it. Part of the on-device agent: imports nothing outside ``farm/agent``."""

from __future__ import annotations

import importlib
import importlib.util
from importlib import metadata
from typing import Any, Callable

import numpy as np

from .runner import ModelLoadError, RunnerUnavailable, first_line, random_input

__all__ = ["LiteRtRunner", "delegation_report", "delegate_library", "BUILTIN_DELEGATES"]

# ``delegate:`` values that need no library: the default CPU path and the builtin kernels.
BUILTIN_DELEGATES = ("xnnpack", "cpu")
_ALIASES = {"edgetpu": "libedgetpu.so.1"}

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


def delegate_library(delegate: str) -> str:
    """The library an external ``delegate:`` names (``edgetpu`` is ``libedgetpu.so.1``)."""
    return _ALIASES.get(delegate, delegate)


def _load_delegate(mod: Any, library: str, options: dict[str, str] | None) -> Any:
    try:
        return mod.load_delegate(library, dict(options or {}))
    except (ValueError, OSError, RuntimeError) as err:
        raise RunnerUnavailable(f"cannot load LiteRT delegate {library}: {first_line(err)}") from None


def _ops_details(interp: Any) -> list[dict[str, Any]] | None:
    """The interpreter's node list after delegation (None where this build cannot list it)."""
    try:
        return [{"index": int(d["index"]), "op_name": str(d["op_name"]),
                 "inputs": [int(x) for x in d["inputs"]], "outputs": [int(x) for x in d["outputs"]]}
                for d in interp._get_ops_details()]
    except (AttributeError, KeyError, TypeError, ValueError, RuntimeError):
        return None


def delegation_report(ops: list[dict[str, Any]] | None, delegate: str | None) -> dict[str, Any]:
    """Which nodes a delegate took and which stayed on the CPU, from the interpreter's node
    list after delegation (pure; ``ops`` as ``Interpreter._get_ops_details()`` lists them).

    Delegation appends one ``DELEGATE`` node per partition after the model's own nodes and
    keeps the replaced nodes in the list. A partition's members are found by walking back
    from its outputs through their producers until its inputs. The keys are those phones
    record from ``benchmark_model`` (``requested``, ``ran``, ``coverage``, ``replaced_nodes``,
    ``total_nodes``, ``partitions``, ``cpu_fallback_ops``, ``evidence``), plus
    ``delegated_ops`` and ``cpu_ops`` (op types by placement).
    """
    requested = delegate or "default (XNNPACK)"
    if ops is None:
        return {"requested": requested, "ran": None, "coverage": None, "evidence": None}
    first = next((i for i, d in enumerate(ops) if d["op_name"] == "DELEGATE"), len(ops))
    model_ops, kernels = ops[:first], [d for d in ops[first:] if d["op_name"] == "DELEGATE"]
    producer = {t: i for i, d in enumerate(model_ops) for t in d["outputs"] if t >= 0}
    taken: set[int] = set()
    for k in kernels:
        bounds = {t for t in k["inputs"] if t >= 0}
        stack = [t for t in k["outputs"] if t >= 0]
        while stack:
            n = producer.get(stack.pop())
            if n is None or n in taken:
                continue
            taken.add(n)
            stack.extend(t for t in model_ops[n]["inputs"] if t >= 0 and t not in bounds)
    on_cpu = sorted({d["op_name"] for i, d in enumerate(model_ops) if i not in taken})
    name = None
    if kernels:
        name = ("XNNPACK" if delegate == "xnnpack" else "XNNPACK (default delegate)") \
            if delegate in (None, "xnnpack") else delegate_library(delegate)
    coverage = "none" if not taken else ("full" if len(taken) == len(model_ops) else "partial")
    return {"requested": requested, "ran": [name] if name else None, "coverage": coverage,
            "replaced_nodes": len(taken), "total_nodes": len(model_ops), "partitions": len(kernels),
            "delegated_ops": sorted({model_ops[i]["op_name"] for i in taken}) or None,
            "cpu_ops": on_cpu or None,
            "cpu_fallback_ops": (on_cpu or None) if delegate != "cpu" else None,
            "evidence": "interpreter node list after delegation"}


class LiteRtRunner:
    """The TFLite interpreter with its default CPU path (XNNPACK) and explicit thread count."""

    name = "litert"
    delegation: dict[str, Any] | None = None

    def available(self) -> bool:
        return any(importlib.util.find_spec(m.split(".")[0]) is not None for m, _ in _PACKAGES)

    def version(self) -> str:
        """``"<distribution> <version>"``, e.g. ``"ai-edge-litert 2.3.0"``."""
        _, dist = _interpreter_module()
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:  # a source build without dist metadata
            return dist

    def check_delegate(self, delegate: str, options: dict[str, str] | None = None) -> str:
        """Load an external delegate library once (a missing ``libedgetpu.so.1`` is a failed
        health check, not a crash mid-job). ``cpu`` and ``xnnpack`` are built in."""
        mod, _ = _interpreter_module()
        if delegate in BUILTIN_DELEGATES:
            return f"delegate {delegate} is built in"
        library = delegate_library(delegate)
        _load_delegate(mod, library, options)
        return f"delegate {library} loads"

    def prepare(self, model_path: str, *, threads: int, delegate: str | None = None,
                delegate_options: dict[str, str] | None = None) -> Callable[[], None]:
        """Load ``model_path`` with ``threads`` CPU threads and random inputs; return run-once.

        ``delegate``: ``None`` (LiteRT's default: XNNPACK takes what it supports), ``xnnpack``
        (the same, asked for), ``cpu`` (the builtin kernels, no default delegate), ``edgetpu``
        (``libedgetpu.so.1``) or the path of an external delegate library, loaded with
        ``delegate_options``. Afterwards :attr:`delegation` says which nodes the delegate took
        and which stayed on the CPU (:func:`delegation_report`).
        """
        mod, _ = _interpreter_module()
        delegates = []
        kwargs: dict[str, Any] = {}
        if delegate == "cpu":
            resolver = getattr(mod, "OpResolverType", None)
            if resolver is None:
                raise RunnerUnavailable("this LiteRT build cannot turn off its default delegate (delegate: cpu)")
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        elif delegate and delegate not in BUILTIN_DELEGATES:
            delegates.append(_load_delegate(mod, delegate_library(delegate), delegate_options))
        try:
            interp = mod.Interpreter(model_path=str(model_path), num_threads=threads,
                                     experimental_delegates=delegates or None, **kwargs)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as err:  # bad file, unsupported op, delegate refusal
            raise ModelLoadError(f"LiteRT could not load {model_path}: {first_line(err)}") from None
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
            raise ModelLoadError(f"LiteRT failed to run {model_path}: {first_line(err)}") from None
        self.delegation = delegation_report(_ops_details(interp), delegate)
        return invoke
