"""Mixed-precision quantization: per-layer weight/activation bits for bit-width-aware devices.

Two ways to choose the bits, one way to judge them:

- :func:`search_bits` — HAQ's goal (Wang et al., CVPR 2019: per-layer bits under a latency,
  energy or size budget, judged by the device, not by proxies like BitOPs) with Optuna's TPE
  instead of a DDPG agent and the device's latency predictor instead of a hardware
  simulator in the loop. A trial's accuracy is the fake-quantized network's on a validation
  part of the *training* split (held-out images stay untouched until the end); the chosen
  bits are then fine-tuned (quantization-aware, straight-through estimator) and scored once
  on the held-out split.
- :func:`memory_driven_bits` — Rusci et al., "Memory-Driven Mixed Low Precision Quantization
  for Enabling Deep Network Inference on Microcontrollers" (MLSys 2020): start at 8 bits
  and, until the model fits, cut the weights of the layer holding the most flash to the
  next lower width (8 → 4 → 2), then the activation at the peak of SRAM the same way.

Everything is priced on the *deployment graph*: what the device runs — the network as the
LiteRT converter lays it out, full-integer (:func:`farm.formats.tflite_export.graph_to_tflite`),
its MAC nodes carrying ``w_bits`` / ``a_bits`` (:mod:`farm.ir.bits`). Peak SRAM and flash
come from :mod:`farm.ir.memory` (which counts those bits), latency from a predictor or any
``Graph → ms`` function. The same graph written as ``.tflite`` with its bits as metadata is
what the simulated bit-serial accelerator and MCU profiles measure.

Fake quantization: weights symmetric per output channel at ``w`` bits (narrow range: 2 bits
is ternary), a layer's input per tensor at ``a`` bits over a range calibrated on training
images (unsigned when the calibration saw no negative value, as after a ReLU).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.bits import with_bit_widths
from farm.ir.graph import Graph
from farm.ir.memory import flash_kb, peak_sram_kb
from nas.data import Dataset

__all__ = ["BITS", "QLayer", "Deployment", "deployment", "FakeQuant", "quantized_accuracy", "qat",
           "memory_driven_bits", "search_bits", "BitsResult", "Limits"]

BITS = (2, 4, 8, 16)
Bits = dict[str, tuple[int, int]]  # layer (module name) -> (w_bits, a_bits)


@dataclass(frozen=True)
class QLayer:
    """A layer whose bits are chosen: a Conv2d / Linear module and its deployment-graph node."""

    name: str  # the module's qualified name
    node: str  # its MAC node in the deployment graph
    weights: int  # weight elements
    macs: int


@dataclass(frozen=True)
class Deployment:
    """What the device runs: the full-integer deployment graph and the layers of the module on it."""

    graph: Graph
    layers: tuple[QLayer, ...]
    input_shape: tuple[int, ...]

    def with_bits(self, bits: Mapping[str, tuple[int, int]]) -> Graph:
        by_name = {layer.name: layer.node for layer in self.layers}
        return with_bit_widths(self.graph, per_node={by_name[k]: (int(w), int(a)) for k, (w, a) in bits.items()})

    def memory(self, bits: Mapping[str, tuple[int, int]]) -> tuple[float, float]:
        """(peak SRAM KB, flash KB) of the network at ``bits``."""
        g = self.with_bits(bits)
        return peak_sram_kb(g)[0], flash_kb(g)

    def tflite(self, bits: Mapping[str, tuple[int, int]]) -> bytes:
        """The deployment graph as a full-integer ``.tflite`` with its bits as metadata (a
        timing artifact for simulated devices: its values are not the network's)."""
        from farm.formats.tflite_export import graph_to_tflite

        by_name = {layer.name: layer.node for layer in self.layers}
        return graph_to_tflite(self._source, dtype="int8",
                               bit_widths={by_name[k]: (int(w), int(a)) for k, (w, a) in bits.items()})

    _source: Graph = field(default=None, repr=False, compare=False)  # type: ignore[assignment]


def _mac_modules(module: Any) -> list[tuple[str, Any]]:
    import torch.nn as nn

    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def deployment(module: Any, input_shape: Sequence[int]) -> Deployment:
    """Export ``module`` (ONNX, farm's importer), lay it out as the full-integer TFLite
    graph, and pair its Conv2d/Linear modules with that graph's MAC nodes (in order)."""
    import io

    import torch

    from farm.formats.onnx import graph_from_onnx, parse_onnx
    from farm.formats.tflite import graph_from_tflite
    from farm.formats.tflite_export import graph_to_tflite

    shape = tuple(int(s) for s in input_shape)
    buf = io.BytesIO()
    m = copy.deepcopy(module).eval()
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(m, (torch.zeros(shape),), buf,  # type: ignore[arg-type]
                          dynamo=False, external_data=False, input_names=["input"],
                          output_names=["logits"], opset_version=17)
    ir = graph_from_onnx(parse_onnx(buf.getvalue(), source="<module>"), source="<module>")
    dep = graph_from_tflite(graph_to_tflite(ir, dtype="int8"), source="<module>")
    macs = [n for n in dep.nodes if n.macs]
    mods = _mac_modules(module)
    if len(macs) != len(mods):
        raise InputError(f"the network has {len(mods)} Conv2d/Linear layers but its deployment graph {len(macs)} "
                         f"MAC nodes; mixed precision needs one per layer")
    layers = tuple(QLayer(name, node.name, int(mod.weight.numel()), int(node.macs))
                   for (name, mod), node in zip(mods, macs, strict=True))
    d = Deployment(dep, layers, shape)
    object.__setattr__(d, "_source", ir)
    return d


# ---------------------------------------------------------------------------- fake quantization

def _fq_weight(w: Any, bits: int) -> Any:
    import torch

    if bits >= 16:
        return w
    q = 2 ** (bits - 1) - 1
    dims = tuple(range(1, w.dim()))
    s = w.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / q
    return w + (torch.clamp(torch.round(w / s), -q, q) * s - w).detach()


def _fq_act(x: Any, bits: int, lo: float, hi: float) -> Any:
    import torch

    if bits >= 16:
        return x
    if lo >= 0:  # unsigned: 0 .. hi
        s = max(hi, 1e-12) / (2 ** bits - 1)
        q = torch.clamp(torch.round(x / s), 0, 2 ** bits - 1) * s
    else:
        m = max(abs(lo), abs(hi), 1e-12)
        n = 2 ** (bits - 1) - 1
        s = m / n
        q = torch.clamp(torch.round(x / s), -n, n) * s
    return x + (q - x).detach()


class FakeQuant:
    """Fake quantization of ``module``'s layers at ``bits`` (in place, until :meth:`remove`).
    Activation ranges are calibrated on ``calib`` (a batch of training images)."""

    def __init__(self, module: Any, bits: Mapping[str, tuple[int, int]], calib: np.ndarray):
        import torch
        import torch.nn.utils.parametrize as P

        self.module = module
        mods = dict(_mac_modules(module))
        unknown = set(bits) - set(mods)
        if unknown:
            raise InputError(f"no Conv2d/Linear layer named {sorted(unknown)[0]!r}")
        ranges: dict[str, tuple[float, float]] = {}
        hooks = []
        for name in bits:
            def record(mod: Any, args: Any, _name: str = name) -> None:
                x = args[0].detach()
                ranges[_name] = (float(x.min()), float(torch.quantile(x.flatten()[:200_000].float(), 0.9999)))
            hooks.append(mods[name].register_forward_pre_hook(record))
        module.eval()
        with torch.no_grad():
            module(torch.from_numpy(calib))
        for h in hooks:
            h.remove()

        class _W(torch.nn.Module):
            def __init__(self, b: int):
                super().__init__()
                self.b = b

            def forward(self, w: Any) -> Any:
                return _fq_weight(w, self.b)

        self._hooks = []
        for name, (w, a) in bits.items():
            mod = mods[name]
            P.register_parametrization(mod, "weight", _W(int(w)))
            lo, hi = ranges[name]
            self._hooks.append(mod.register_forward_pre_hook(
                lambda _m, args, _a=int(a), _lo=lo, _hi=hi: (_fq_act(args[0], _a, _lo, _hi),) + tuple(args[1:])))

    def remove(self, *, bake: bool = False) -> None:
        """Detach; ``bake=True`` leaves the quantized weights in place (for export)."""
        import torch.nn.utils.parametrize as P

        for h in self._hooks:
            h.remove()
        for _, mod in _mac_modules(self.module):
            if P.is_parametrized(mod, "weight"):
                P.remove_parametrizations(mod, "weight", leave_parametrized=bake)


def quantized_accuracy(module: Any, bits: Mapping[str, tuple[int, int]], data: Dataset, calib: np.ndarray) -> float:
    """Top-1 % of ``module`` fake-quantized at ``bits`` on ``data`` (no fine-tuning)."""
    from nas.train import evaluate

    m = copy.deepcopy(module)
    fq = FakeQuant(m, bits, calib)
    try:
        return evaluate(m, data)
    finally:
        fq.remove()


def qat(module: Any, bits: Mapping[str, tuple[int, int]], train: Dataset, calib: np.ndarray, *, steps: int = 300,
        lr: float = 0.01, seed: int = 0, teacher: Any = None,
        progress: Callable[[int, int, float], None] | None = None) -> Any:
    """A copy of ``module`` fine-tuned with its layers fake-quantized at ``bits``, the
    quantized weights baked in (what is exported)."""
    from nas.train import TrainConfig, fit

    m = copy.deepcopy(module)
    fq = FakeQuant(m, bits, calib)
    fit(m, train, TrainConfig(epochs=10_000, max_steps=steps, lr=lr, seed=seed), teacher=teacher, progress=progress)
    fq.remove(bake=True)
    # activations stay quantized in evaluation (weights already are); strip_activations() drops that
    m.hwfarm_fake_quant = FakeQuant(m, bits, calib)
    return m


def strip_activations(module: Any) -> Any:
    """A copy of a :func:`qat` result without its activation fake quantization (the float
    network with quantized weights: what is exported)."""
    m = copy.deepcopy(module)
    fq = getattr(m, "hwfarm_fake_quant", None)
    if fq is not None:
        fq.remove()
        del m.hwfarm_fake_quant
    return m


# ---------------------------------------------------------------------------- choosing bits

@dataclass(frozen=True)
class Limits:
    max_latency_ms: float | None = None
    max_flash_kb: float | None = None
    max_sram_kb: float | None = None
    runtime_flash_kb: float = 0.0  # the runtime's own share (MCU profiles)
    runtime_sram_kb: float = 0.0

    def violations(self, latency_ms: float | None, sram_kb: float, flash: float) -> dict[str, float]:
        out = {}
        if self.max_latency_ms is not None and latency_ms is not None:
            out["latency_ms"] = latency_ms - self.max_latency_ms
        if self.max_flash_kb is not None:
            out["flash_kb"] = flash + self.runtime_flash_kb - self.max_flash_kb
        if self.max_sram_kb is not None:
            out["sram_kb"] = sram_kb + self.runtime_sram_kb - self.max_sram_kb
        return out


def _lower(b: int, floor: int) -> int | None:
    lower = [x for x in BITS if x < b and x >= floor]
    return max(lower) if lower else None


def memory_driven_bits(dep: Deployment, limits: Limits, *, start: int = 8, floor: int = 2) -> Bits:
    """Rusci et al.'s rule: cut the largest weight tensor's bits until flash fits, then the
    largest activation at the SRAM peak until SRAM fits. InputError when even ``floor``
    bits do not fit."""
    bits: Bits = {layer.name: (start, start) for layer in dep.layers}
    node_of = {layer.node: layer.name for layer in dep.layers}
    if limits.max_flash_kb is not None:
        while True:
            _, fl = dep.memory(bits)
            if fl + limits.runtime_flash_kb <= limits.max_flash_kb:
                break
            cands = [(layer.weights * bits[layer.name][0], layer.name) for layer in dep.layers
                     if _lower(bits[layer.name][0], floor) is not None]
            if not cands:
                raise InputError(f"cannot fit flash {limits.max_flash_kb:g} KB: at {floor}-bit weights the model "
                                 f"needs {fl + limits.runtime_flash_kb:.1f} KB")
            _, name = max(cands)
            w, a = bits[name]
            bits[name] = (_lower(w, floor) or w, a)
    if limits.max_sram_kb is not None:
        while True:
            g = dep.with_bits(bits)
            peak, where = peak_sram_kb(g)
            if peak + limits.runtime_sram_kb <= limits.max_sram_kb:
                break
            # the activations a quantized layer reads around the peak: cut the biggest one
            readers: dict[str, list[str]] = {}
            for n in g.nodes:
                if n.name in node_of:
                    for t in n.inputs:
                        if t.name not in n.weights:
                            readers.setdefault(t.name, []).append(node_of[n.name])
            at = next(i for i, n in enumerate(g.nodes) if n.name == where)
            near = g.nodes[max(0, at - 1):at + 2]
            tensors = {t.name: t for n in near for t in (*n.inputs, *n.outputs) if t.name in readers}
            cands2 = [(t.numel * max(bits[r][1] for r in readers[t.name]), t.name) for t in tensors.values()
                      if any(_lower(bits[r][1], floor) is not None for r in readers[t.name])]
            if not cands2:
                raise InputError(f"cannot fit SRAM {limits.max_sram_kb:g} KB: at {floor}-bit activations the peak "
                                 f"is {peak + limits.runtime_sram_kb:.1f} KB (at {where})")
            _, tname = max(cands2)
            for r in readers[tname]:
                w, a = bits[r]
                bits[r] = (w, _lower(a, floor) or a)
    return bits


@dataclass(frozen=True)
class BitsResult:
    bits: Bits
    accuracy: float  # validation (training split) accuracy, fake-quantized, before fine-tuning
    latency_ms: float | None
    sram_kb: float
    flash_kb: float
    trials: int
    trace: tuple[dict[str, Any], ...] = ()  # every trial: bits, accuracy, latency, memory, feasible


def search_bits(module: Any, dep: Deployment, *, val: Dataset, calib: np.ndarray, limits: Limits,
                latency: Callable[[Graph], float] | None = None, options: Sequence[int] = (2, 4, 8),
                trials: int = 60, seed: int = 0, on_trial: Callable[[int, int], None] | None = None) -> BitsResult:
    """Per-layer (w, a) bits from ``options`` maximizing fake-quantized validation accuracy
    under ``limits`` (latency through ``latency(graph)``, memory from the graph). The first
    trial is all-8-bit (the int8 baseline), the second :func:`memory_driven_bits` when a
    memory limit is set."""
    import warnings

    import optuna

    opts = sorted({int(b) for b in options})
    if not opts or any(b not in BITS for b in opts):
        raise InputError(f"bit options must be among {', '.join(map(str, BITS))}, not {list(options)}")
    if limits.max_latency_ms is not None and latency is None:
        raise InputError("a latency limit needs a latency model (the device's predictor)")
    names = [layer.name for layer in dep.layers]
    trace: list[dict[str, Any]] = []

    def score(bits: Bits) -> tuple[float, float | None, float, float, dict[str, float]]:
        g = dep.with_bits(bits)
        sram, fl = peak_sram_kb(g)[0], flash_kb(g)
        ms = latency(g) if latency is not None else None
        acc = quantized_accuracy(module, bits, val, calib)
        return acc, ms, sram, fl, limits.violations(ms, sram, fl)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        from nas.strategies import NAMED_CONSTRAINTS

        cf: dict[str, Any] = {} if NAMED_CONSTRAINTS else {"constraints_func": lambda t: t.user_attrs["violations"]}
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, **cf)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        start = {f"w:{n}": min(8, max(opts)) for n in names} | {f"a:{n}": min(8, max(opts)) for n in names}
        study.enqueue_trial(start)
        if limits.max_flash_kb is not None or limits.max_sram_kb is not None:
            try:
                md = memory_driven_bits(dep, limits, start=min(8, max(opts)), floor=min(opts))
                study.enqueue_trial({f"w:{n}": md[n][0] for n in names} | {f"a:{n}": md[n][1] for n in names})
            except InputError:
                pass
        for i in range(trials):
            t = study.ask()
            bits = {n: (int(t.suggest_categorical(f"w:{n}", opts)), int(t.suggest_categorical(f"a:{n}", opts)))
                    for n in names}
            acc, ms, sram, fl, viol = score(bits)
            t.set_user_attr("violations", list(viol.values()))
            if NAMED_CONSTRAINTS:
                for key, v in viol.items():
                    t.set_constraint(key, v)
            feasible = all(v <= 0 for v in viol.values())
            trace.append({"bits": {k: list(v) for k, v in bits.items()}, "accuracy": acc, "latency_ms": ms,
                          "sram_kb": sram, "flash_kb": fl, "feasible": feasible})
            study.tell(t, acc)
            if on_trial is not None:
                on_trial(i + 1, trials)
    ok = [r for r in trace if r["feasible"]]
    if not ok:
        worst = {k: min(r[k] for r in trace) for k in ("sram_kb", "flash_kb")}
        raise InputError(f"no bit assignment of {trials} tried met the limits (lowest SRAM {worst['sram_kb']:.1f} KB, "
                         f"flash {worst['flash_kb']:.1f} KB before the runtime's share); loosen a limit")

    def cost(r: dict[str, Any]) -> float:
        return r["latency_ms"] if r["latency_ms"] is not None else r["flash_kb"]

    best = max(ok, key=lambda r: (r["accuracy"], -cost(r)))
    bits = {k: (int(v[0]), int(v[1])) for k, v in best["bits"].items()}
    return BitsResult(bits, best["accuracy"], best["latency_ms"], best["sram_kb"], best["flash_kb"], len(trace),
                      tuple(trace))


def bitops(dep: Deployment, bits: Mapping[str, tuple[int, int]]) -> float:
    """Σ MACs · w · a (the proxy HAQ argues against; reported alongside)."""
    return float(sum(layer.macs * bits[layer.name][0] * bits[layer.name][1] for layer in dep.layers))


def size_kb(dep: Deployment, bits: Mapping[str, tuple[int, int]]) -> float:
    return math.fsum(layer.weights * bits[layer.name][0] / 8 for layer in dep.layers) / 1024


# ---------------------------------------------------------------------------- the command's run

def _latency_model(device: str, caps: Any, db: str | os.PathLike[str]) -> tuple[Callable[[Graph], float] | None, str]:
    """The device's predictor bundle when it has one, else a simulated device's own analytical
    model (said so), else none."""
    try:
        from predictors.api import load

        p = load(device, db=db)
        return (lambda g: float(p.predict(g).latency_ms)), f"predictor {p.bundle_id}"
    except InputError:
        pass
    if caps is not None and caps.profile:
        from farm.sim.model import simulate
        from farm.sim.profile import load_profile

        prof = load_profile(caps.profile)
        return (lambda g: float(simulate(g, prof).latency_ms)), f"sim:{caps.profile} (analytical, noise-free)"
    return None, "none"


def run_mixed(model: str | os.PathLike[str], *, device: str, out: str | os.PathLike[str] | None = None,
              data: str | None = None, max_latency_ms: float | None = None, max_flash_kb: float | None = None,
              max_sram_kb: float | None = None, trials: int = 40, qat_steps: int = 300, seed: int = 0,
              overwrite: bool = False, registry: str | os.PathLike[str] = "devices.yaml",
              db: str | os.PathLike[str] = "hwfarm.db", on_status: Callable[[str], None] | None = None) -> Any:
    """``hwfarm compress quantize MODEL --bits mixed`` (or with a memory limit): per-layer bits
    for a bit-width-aware device. Strategies tried: uniform bits (the widest that fits), the
    memory-driven rule when a memory limit is set, and the TPE search; each is fine-tuned
    (QAT) and the one with the best held-out accuracy that meets the limits wins. Both the
    8-bit and the chosen deployment are measured on the device (simulated bit-serial and MCU
    profiles run them). Writes the run directory; returns its :class:`CompressReport`."""
    from compress.quantize import default_run_dir
    from compress.report import CompressReport, Point, check_run_dir, run_directory, write_report
    from farm.devices.caps import device_caps
    from farm.registry.spec import load_registry
    from nas.data import DATASETS, load_dataset
    from nas.modeldir import is_model_dir, load_model_dir
    from nas.train import evaluate

    status = on_status or (lambda _msg: None)
    model = Path(model)
    if not is_model_dir(model):
        raise InputError(f"{model}: mixed precision fine-tunes the network, so it needs a model directory written "
                         f"by `hwfarm train` (torch weights), not an ONNX file")
    run = check_run_dir(out if out is not None else default_run_dir(model, device, "mixed"), overwrite=overwrite)
    caps = device_caps(load_registry(registry).get(device))
    if caps.profile is None and caps.runtime not in ("litert", "benchmark_model"):
        raise InputError(f"{device} runs {caps.runtime}: mixed precision below 8 bits needs a bit-width-aware "
                         f"device (the bit-serial or MCU simulated devices, a LiteRT target); for a CPU use --bits 8")
    for flag, v in (("--max-latency-ms", max_latency_ms), ("--max-flash-kb", max_flash_kb),
                    ("--max-sram-kb", max_sram_kb)):
        if v is not None and not v > 0:
            raise InputError(f"{flag} {v}: must be above 0")
    loaded = load_model_dir(model)
    name = data or loaded.meta.get("data")
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    size, ch = int(loaded.meta["input_size"]), int(loaded.meta["in_channels"])
    train = load_dataset(name, "train", input_size=size, channels=ch)
    test = load_dataset(name, "test", input_size=size, channels=ch)
    val = train.take(500, seed=seed + 1)
    calib = train.take(64, seed=seed).x
    mcu = caps.sram_kb is not None
    limits = Limits(max_latency_ms=max_latency_ms,
                    max_flash_kb=max_flash_kb if max_flash_kb is not None else (caps.flash_kb if mcu else None),
                    max_sram_kb=max_sram_kb if max_sram_kb is not None else (caps.sram_kb if mcu else None),
                    runtime_flash_kb=float(caps.runtime_flash_kb or 0.0) if mcu else 0.0,
                    runtime_sram_kb=float(caps.runtime_sram_kb or 0.0) if mcu else 0.0)
    latency, cost_source = _latency_model(device, caps, db)
    status("building the deployment graph")
    dep = deployment(loaded.module, (1, ch, size, size))
    base = evaluate(loaded.module, test)
    b8 = {layer.name: (8, 8) for layer in dep.layers}
    tried: list[tuple[str, Bits]] = []
    for w in (8, 4, 2):  # uniform: the widest that fits
        uni = {k: (w, w) for k in b8}
        g = dep.with_bits(uni)
        if all(v <= 0 for v in limits.violations(latency(g) if latency else None, *dep.memory(uni)).values()):
            tried.append((f"uniform {w}-bit", uni))
            break
    if limits.max_flash_kb is not None or limits.max_sram_kb is not None:
        try:
            tried.append(("memory-driven", memory_driven_bits(dep, limits)))
        except InputError:
            pass
    if trials > 0:
        status(f"searching per-layer bits ({trials} trials)")
        try:
            found = search_bits(loaded.module, dep, val=val, calib=calib, limits=limits, latency=latency,
                                trials=trials, seed=seed)
            tried.append(("search (TPE)", found.bits))
        except InputError:
            pass
    if not tried:
        raise InputError(f"no bit assignment from 2 to 8 bits meets the limits on {device} "
                         f"({', '.join(f'{k} {v:+.1f}' for k, v in limits.violations(None, *dep.memory({k: (2, 2) for k in b8})).items())} over at 2 bits); nothing written")
    results = []
    for label, bits in tried:
        status(f"fine-tuning {label} ({qat_steps} steps)")
        tuned = qat(loaded.module, bits, train, calib, steps=qat_steps, seed=seed, teacher=loaded.module)
        results.append((evaluate(tuned, test), label, bits, tuned))
    acc_after, label, bits, tuned = max(results, key=lambda r: r[0])
    with run_directory(run, overwrite=overwrite) as d:
        import farm

        paths = [d / "int8.tflite", d / "model.tflite"]
        paths[0].write_bytes(dep.tflite(b8))
        paths[1].write_bytes(dep.tflite(bits))
        from nas.modeldir import export_onnx

        export_onnx(strip_activations(tuned), d / "model.onnx", (1, ch, size, size))
        status(f"measuring the 8-bit and the mixed deployment on {device}")
        res = farm.profile(paths, device=device, registry=registry, db=db)
        ms = [r.measurement.latency_ms if r.measurement is not None else None for r in res]
        errors = [r.error for r in res if r.measurement is None]
        measured = not errors
        if not measured and latency is not None:
            ms = [latency(dep.with_bits(b8)), latency(dep.with_bits(bits))]
        sram, fl = dep.memory(bits)
        kb8, kb = size_kb(dep, b8), size_kb(dep, bits)
        speed = ms[0] / ms[1] if ms[0] and ms[1] else None
        report = CompressReport(
            model=str(d / "model.onnx"), original=str(model), device=device, data=str(name), method="mixed",
            accuracy_before=base, accuracy_after=acc_after, latency_ms_before=ms[0], latency_ms_after=ms[1],
            measured=measured, speedup=speed, size_kb_before=kb8 * 4, size_kb_after=kb,
            simulated=bool(caps.profile), run_dir=str(d),
            points=(Point("original (8-bit deployment)", base, ms[0], kb8 * 4, measured),
                    *(Point(lbl, acc, None, size_kb(dep, b), False) for acc, lbl, b, _ in results),
                    Point(f"chosen: {label}", acc_after, ms[1], kb, measured)),
            details={"strategy": label, "bits": {k: list(v) for k, v in bits.items()},
                     "nodes": {layer.name: layer.node for layer in dep.layers},
                     "tried": [{"strategy": lbl, "accuracy": acc} for acc, lbl, _, _ in results],
                     "peak_sram_kb": sram + limits.runtime_sram_kb, "flash_kb": fl + limits.runtime_flash_kb,
                     "limits": {"max_latency_ms": limits.max_latency_ms, "max_flash_kb": limits.max_flash_kb,
                                "max_sram_kb": limits.max_sram_kb},
                     "latency_model": cost_source, "bitops": bitops(dep, bits), "measure_error": errors[0] if errors else None,
                     "size": "weights at their bits (size_kb_before: float32)",
                     "model_tflite": "model.tflite: the deployment with its bits as metadata (timing artifact)"})
        write_report(report, d)
    return report
