"""Structured channel pruning whose allocation is driven by a device's predicted latency.

Channels are physically removed — the layers get smaller — across every layer that depends on
them (residual adds, concatenations, depthwise convolutions), with Torch-Pruning's dependency
graph: a *channel group* is the set of layers whose channels must go together, named by its
root layer. Three objects stay apart (Torch-Pruning's shape): the dependency graph, an
importance *criterion* that ranks a group's channels (:data:`CRITERIA`: L1/L2 magnitude, BN
scale, first-order Taylor), and the pruner :func:`prune_channels`, which keeps the N best
channels of each named group. What this module adds is how many channels each group keeps:

- :func:`progressive` — NetAdapt (Yang et al. 2018) / CompactNet: each step proposes, for every
  group, removing a chunk of channels (snapped to the device's alignment), scores each proposal
  by the damage it does (cross-entropy on training images held aside for selection) per
  millisecond it saves on the device's predictor, commits the best proposals until the step's
  latency cut is met, fine-tunes briefly, and repeats until the predicted latency is at the target;
- :func:`search_ratios` — AMC's goal without its RL agent: Optuna's TPE over one pruning ratio
  per stage (groups at the same resolution, hidden/depthwise or main channels), each sample
  scaled to the latency target, scored by accuracy after a very short fine-tune, the latency
  bound kept through the sampler's ``constraints_func``;
- :func:`uniform` — the baseline: one ratio everywhere, the smallest that meets the target.

All three end with the same fine-tune (distillation from the original when asked). Latency is
injected (:class:`LatencyModel`): :class:`PredictorLatency` exports the module to ONNX and asks a
device's predictor bundle, memoized by channel configuration — the cost every choice is ranked
by. Given a ``measure`` as well (:class:`FarmLatency`: the farm profiles the candidate on the
device), a method's target is a measured latency: it stops on measurements, which the predictor
on its own can miss by 10-30% once channels go. Accuracy along the way is onnxruntime's on
held-out images (the model as it is deployed). :func:`run_prune` is ``hwfarm compress prune``:
inputs checked first, a run directory that is a model directory (:mod:`nas.modeldir`) plus the
report (:mod:`compress.report`), the speedup proven by paired measurements.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from farm.errors import HwfarmError, InputError
from nas.data import Dataset

__all__ = ["Criterion", "CRITERIA", "ChannelGroup", "channel_groups", "importances", "prune_channels",
           "prune_uniform", "prune_ratios", "uniform_keep", "LatencyModel", "PredictorLatency", "FarmLatency", "onnx_bytes",
           "channel_signature", "detect_alignment", "PruneConfig", "PruneStep", "PruneResult", "METHODS",
           "progressive", "search_ratios", "uniform", "onnx_accuracy", "run_prune"]

Progress = Callable[[str, int, int], None]  # (what, done, total)


def _torch() -> Any:
    try:
        import torch
        import torch_pruning  # noqa: F401
    except ImportError:
        raise InputError("pruning needs torch and torch-pruning (pip install 'hwfarm[torch]')") from None
    return torch


# ---------------------------------------------------------------------------- importance criteria


def _l1() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=1)


def _l2() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2)


def _bn_scale() -> Any:
    import torch_pruning as tp

    return tp.importance.BNScaleImportance()


def _taylor() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance()


@dataclass(frozen=True)
class Criterion:
    """How a group's channels are ranked: ``make()`` returns a Torch-Pruning importance (a
    callable from a group to one score per channel; higher is kept). ``needs_grad``: the
    weights' gradients must be filled (:func:`importances` does it from training images)."""

    name: str
    description: str
    needs_grad: bool
    make: Callable[[], Any]


CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    Criterion("l1", "L1 norm of each channel's weights over the group", False, _l1),
    Criterion("l2", "L2 norm of each channel's weights over the group", False, _l2),
    Criterion("bn_scale", "|gamma| of the group's batch norms (network slimming; L1 where a group has no BN)",
              False, _bn_scale),
    Criterion("taylor", "first-order Taylor |w * dL/dw| on training images (Molchanov et al. 2019)", True, _taylor),
)}


def _criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise InputError(f"unknown importance criterion {name!r}; known: {', '.join(CRITERIA)}")
    return CRITERIA[name]


# ---------------------------------------------------------------------------- channel groups


@dataclass(frozen=True)
class ChannelGroup:
    """Layers whose output channels are removed together. ``name`` is the root layer;
    ``layers`` every layer whose output channels belong to the group; ``depthwise`` when a
    depthwise convolution is among them (an inverted residual's hidden channels); ``size``
    the spatial size of their output (1 for a linear layer)."""

    name: str
    channels: int
    layers: tuple[str, ...]
    depthwise: bool
    size: int

    @property
    def stage(self) -> str:
        """Groups :func:`search_ratios` gives one ratio: resolution and kind."""
        return f"{self.size}px/{'hidden' if self.depthwise else 'main'}"


@dataclass
class _Graph:
    """A module's dependency graph and its prunable groups (Torch-Pruning objects inside)."""

    dg: Any
    groups: list[ChannelGroup]
    roots: dict[str, Any]  # group name -> root module
    full: dict[str, Any]  # group name -> the group of all its channels

    def find(self, key: str) -> ChannelGroup:
        for g in self.groups:
            if key == g.name or key in g.layers:
                return g
        raise InputError(f"no prunable channel group has layer {key!r}")


def _output_layers(module: Any, example: Any) -> list[Any]:
    """The leaf layers whose output is the network's output (the classifier), found by a forward."""
    torch = _torch()
    seen: dict[int, Any] = {}
    hooks = [m.register_forward_hook(lambda m, _i, o: seen.__setitem__(id(o), m))
             for m in module.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            out = module(example)
    finally:
        for h in hooks:
            h.remove()
    m = seen.get(id(out))
    return [m] if m is not None else []


def _sizes(module: Any, example: Any) -> dict[str, int]:
    """Spatial output size of every conv / linear layer (1 for 2-D outputs)."""
    torch = _torch()
    out: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: out.__setitem__(n, int(o.shape[-1]) if o.dim() == 4 else 1))
             for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return out


def _graph(module: Any, example: Any) -> _Graph:
    torch = _torch()
    import torch_pruning as tp

    nn = torch.nn
    was = module.training
    module.eval()
    try:
        ignored = _output_layers(module, example)
        sizes = _sizes(module, example)
        dg = tp.DependencyGraph().build_dependency(module, example_inputs=example)
    finally:
        module.train(was)
    names = {m: n for n, m in module.named_modules()}
    groups, roots, full = [], {}, {}
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep.target.module
        ok, depthwise, layers = root in names, False, set()
        for dep, _ in group:
            m = dep.target.module
            if dep.target.type == tp.ops.OPTYPE.PARAMETER:
                ok = False  # a bare nn.Parameter: not handled here
                continue
            if isinstance(m, nn.Conv2d) and m.groups > 1:
                if m.groups == m.in_channels == m.out_channels:
                    depthwise = True
                else:
                    ok = False  # grouped convolutions keep their groups' sizes equal: left alone
            if dg.is_out_channel_pruning_fn(dep.handler) and m in names:
                layers.add(names[m])
        channels = dg.get_out_channels(root)
        if not ok or not channels:
            continue
        name = names[root]
        groups.append(ChannelGroup(name, int(channels), tuple(sorted(layers)), depthwise, sizes.get(name, 1)))
        roots[name], full[name] = root, group
    return _Graph(dg, groups, roots, full)


def channel_groups(module: Any, example_input: Any) -> list[ChannelGroup]:
    """The prunable channel groups of ``module`` (the classifier's outputs are never among them)."""
    return list(_graph(module, example_input).groups)


def _fill_grads(module: Any, data: Dataset, *, images: int = 256, batch: int = 64) -> None:
    """Gradients of the cross-entropy on ``images`` training images, accumulated in ``.grad``."""
    torch = _torch()
    import torch.nn.functional as F

    sub = data.take(images, seed=1)
    was = module.training
    module.eval()  # BN on its running statistics: the model as it will run
    module.zero_grad(set_to_none=True)
    for i in range(0, len(sub), batch):
        x, y = torch.from_numpy(sub.x[i:i + batch]), torch.from_numpy(sub.y[i:i + batch])
        (F.cross_entropy(module(x), y, reduction="sum") / len(sub)).backward()
    module.train(was)


def _group_importance(imp: Any, group: Any, fallback: Any) -> Any:
    torch = _torch()
    with torch.no_grad():
        score = imp(group)
        if score is None:  # BN scale on a group without BN
            score = fallback(group)
    return score.detach().cpu()


def importances(module: Any, example_input: Any, *, criterion: str = "l1", data: Dataset | None = None,
                graph: _Graph | None = None) -> dict[str, Any]:
    """Group name → one score per channel (higher is kept). ``taylor`` needs ``data`` (training
    images for the gradients)."""
    crit = _criterion(criterion)
    if crit.needs_grad:
        if data is None:
            raise InputError(f"importance criterion {criterion} needs training images for its gradients")
        _fill_grads(module, data)
    g = graph or _graph(module, example_input)
    imp, fallback = crit.make(), _l1()
    out = {name: _group_importance(imp, g.full[name], fallback) for name in g.roots}
    if crit.needs_grad:
        module.zero_grad(set_to_none=True)
    return out


def prune_channels(module: Any, example_input: Any, keep: Mapping[str, int], *, criterion: str = "l1",
                   scores: Mapping[str, Any] | None = None, data: Dataset | None = None) -> Any:
    """Prune ``module`` in place so the group of each layer named in ``keep`` keeps that many
    channels: the least important ones go (``scores`` from :func:`importances`, else ranked by
    ``criterion`` now). Returns ``module``."""
    torch = _torch()
    g = _graph(module, example_input)
    plan: dict[str, int] = {}
    for key, k in keep.items():
        grp = g.find(key)
        if not 1 <= int(k) <= grp.channels:
            raise InputError(f"group {grp.name}: cannot keep {k} of its {grp.channels} channels")
        plan[grp.name] = int(k)
    todo = [n for n, k in plan.items() if k < next(x.channels for x in g.groups if x.name == n)]
    if not todo:
        return module
    if scores is None or any(n not in scores for n in todo):
        scores = {**(scores or {}), **importances(module, example_input, criterion=criterion, data=data, graph=g)}
    for name in todo:
        root = g.roots[name]
        score = scores[name]
        n_out = g.dg.get_out_channels(root)
        if len(score) != n_out:
            raise InputError(f"group {name}: {len(score)} importance scores for {n_out} channels (stale scores?)")
        idxs = torch.argsort(score)[:n_out - plan[name]].tolist()
        pruner = g.dg.get_pruner_of_module(root)
        g.dg.get_pruning_group(root, pruner.prune_out_channels, sorted(idxs)).prune()
    return module


def _floor(channels: int, alignment: int) -> int:
    """The fewest channels a group may keep: one alignment block (all it has, when fewer)."""
    return min(channels, max(1, alignment))


def _snap(n: float, channels: int, alignment: int) -> int:
    """``n`` channels rounded down to a multiple of ``alignment``, within [floor, channels]."""
    a = max(1, alignment)
    k = int(math.floor(n + 1e-9)) // a * a
    return int(min(channels, max(_floor(channels, a), k)))


def uniform_keep(groups: Sequence[ChannelGroup], ratio: float, *, alignment: int = 1) -> dict[str, int]:
    """Channels each group keeps when ``ratio`` of them go everywhere, snapped to ``alignment``."""
    return {g.name: _snap(g.channels * (1.0 - ratio), g.channels, alignment) for g in groups}


def prune_uniform(module: Any, ratio: float, example_input: Any, *, criterion: str = "l1", alignment: int = 1,
                  data: Dataset | None = None) -> Any:
    """Remove ``ratio`` of every group's channels (snapped to ``alignment``), in place."""
    if not 0.0 <= ratio < 1.0:
        raise InputError(f"pruning ratio {ratio}: must be in [0, 1)")
    keep = uniform_keep(channel_groups(module, example_input), ratio, alignment=alignment)
    return prune_channels(module, example_input, keep, criterion=criterion, data=data)


def prune_ratios(module: Any, ratios: Mapping[str, float], example_input: Any, *, criterion: str = "l1",
                 alignment: int = 1, data: Dataset | None = None) -> Any:
    """Remove a per-group share of channels (group or layer name → ratio), in place."""
    g = _graph(module, example_input)
    keep = {}
    for key, r in ratios.items():
        if not 0.0 <= r < 1.0:
            raise InputError(f"pruning ratio {r} for {key}: must be in [0, 1)")
        grp = g.find(key)
        keep[grp.name] = _snap(grp.channels * (1.0 - r), grp.channels, alignment)
    return prune_channels(module, example_input, keep, criterion=criterion, data=data)


# ---------------------------------------------------------------------------- latency


def channel_signature(module: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """What a structured pruning changes: every conv / linear weight's shape, by layer name."""
    torch = _torch()
    return tuple((n, tuple(m.weight.shape)) for n, m in module.named_modules()
                 if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))


def onnx_bytes(module: Any, input_shape: Sequence[int]) -> bytes:
    """``module`` as ONNX bytes, exported as a model directory exports it (:func:`nas.modeldir.export_onnx`:
    TorchScript exporter, opset 17, batch 1, BN folded, weights inside)."""
    import io
    import warnings

    from farm.errors import ModelError
    from nas.modeldir import INPUT_NAME, OPSET, OUTPUT_NAME

    torch = _torch()
    was = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (torch.zeros(*input_shape),), buf, dynamo=False, external_data=False,
                              opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              do_constant_folding=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"could not export the module to ONNX: {first}") from None
    finally:
        module.train(was)
    return buf.getvalue()


@runtime_checkable
class LatencyModel(Protocol):
    """Latency (ms) of a torch module on one device. ``onnx``: the module's export, when the
    caller has it already (a model answering from the module alone ignores it). A model with
    ``uses_onnx = True`` is always handed the export, and the methods then score accuracy with
    onnxruntime on the same bytes (else with torch)."""

    def latency_ms(self, module: Any, *, onnx: bytes | None = None) -> float:
        ...


class PredictorLatency:
    """A device's predictor bundle (:class:`predictors.api.DevicePredictor`, or anything with
    ``predict(onnx_bytes).latency_ms``) pricing torch modules: export to ONNX, the farm's
    importer, the predictor. Memoized by channel configuration (:func:`channel_signature`)."""

    uses_onnx = True

    def __init__(self, predictor: Any, input_shape: Sequence[int]):
        self.predictor = predictor
        self.input_shape = tuple(int(s) for s in input_shape)
        self._cache: dict[Any, float] = {}
        self.n_predicted = 0

    def latency_ms(self, module: Any, *, onnx: bytes | None = None) -> float:
        key = channel_signature(module)
        if key not in self._cache:
            data = onnx if onnx is not None else onnx_bytes(module, self.input_shape)
            self._cache[key] = float(self.predictor.predict(data).latency_ms)
            self.n_predicted += 1
        return self._cache[key]


class FarmLatency:
    """Latency measured by the farm on a device (:func:`farm.api.profile`): the ground truth the
    methods stop on when they are given one as ``measure``. Memoized by channel configuration
    (a float model's latency does not depend on its weights); each new one is one profile job,
    stored in ``db`` like any other. :class:`farm.errors.HwfarmError` when the device fails."""

    uses_onnx = True

    def __init__(self, device: str, input_shape: Sequence[int], *, registry: str | os.PathLike[str] = "devices.yaml",
                 db: str | os.PathLike[str] = "hwfarm.db"):
        self.device, self.registry, self.db = device, registry, db
        self.input_shape = tuple(int(s) for s in input_shape)
        self._cache: dict[Any, float] = {}
        self.n_measured = 0

    def latency_ms(self, module: Any, *, onnx: bytes | None = None) -> float:
        import tempfile

        from farm.api import profile

        key = channel_signature(module)
        if key not in self._cache:
            data = onnx if onnx is not None else onnx_bytes(module, self.input_shape)
            with tempfile.TemporaryDirectory(prefix="hwfarm-prune-") as tmp:
                path = Path(tmp) / "candidate.onnx"
                path.write_bytes(data)
                (r,) = profile([path], device=self.device, registry=self.registry, db=self.db)
            if r.measurement is None:
                raise HwfarmError(r.error or f"{self.device}: the candidate was not measured")
            self._cache[key] = float(r.measurement.latency_ms)
            self.n_measured += 1
        return self._cache[key]


def detect_alignment(predictor: Any, *, candidates: Sequence[int] = (32, 16, 8, 4), default: int = 8
                     ) -> tuple[int, str]:
    """The channel multiple worth snapping to on ``predictor``'s device, and where it came from:

    - ``"steps"``: the predictor's latency of a 1×1 convolution (64 channels in, 24×24) is flat
      within each block of that many output channels — the staircase of a device that pads
      channels to its vector width (the largest such multiple wins);
    - ``"layout"``: the channel block of the runtime's blocked layout that the bundle models
      (onnxruntime's NCHWc on x86: 8 with AVX2, 16 with AVX-512);
    - ``"default"``: ``default``.
    """
    from farm.ir.builder import IRBuilder

    hi = 2 * max(candidates) + 1
    graphs = []
    for c in range(1, hi + 1):
        b = IRBuilder((1, 64, 24, 24))
        graphs.append(b.build(f"align{c}", b.conv("conv", "input", c, 1)))
    try:
        ms = np.array([p.latency_ms for p in predictor.predict_many(graphs)], dtype=float)
    except Exception:  # a predictor that cannot price a bare convolution: no steps to read
        ms = np.array([])
    if ms.size and np.ptp(ms) > 0.05 * float(ms.max()):
        for a in sorted(candidates, reverse=True):
            blocks = [ms[k * a:(k + 1) * a] for k in range(len(ms) // a)]  # channels k*a+1 … (k+1)*a
            flat = all(float(np.ptp(b)) <= 0.01 * float(b.max()) for b in blocks)
            rising = all(float(blocks[i + 1].min()) > float(blocks[i].max()) for i in range(len(blocks) - 1))
            if len(blocks) >= 2 and flat and rising:
                return a, "steps"
    block = getattr(getattr(getattr(predictor, "latency", None), "rules", None), "layout_block", 0)
    if isinstance(block, int) and block > 1:
        return block, "layout"
    return default, "default"


# ---------------------------------------------------------------------------- evaluation


class _Onnx:
    """onnxruntime on ONNX bytes (batch 1, one thread): logits of images, accuracy, loss."""

    def __init__(self, data: bytes):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def logits(self, x: np.ndarray) -> np.ndarray:
        run, name = self.session.run, self.name
        return np.concatenate([run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])

    def score(self, data: Dataset) -> tuple[float, float]:
        """(top-1 %, mean cross-entropy) on ``data``."""
        return _scores(self.logits(data.x), data.y)


def _scores(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(top-1 %, mean cross-entropy) of ``logits`` against labels ``y``."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    ce = float(-logp[np.arange(len(y)), y].mean())
    return float((z.argmax(1) == y).mean() * 100.0), ce


def onnx_accuracy(data: bytes, images: Dataset) -> float:
    """Top-1 % of an ONNX model (bytes) on ``images`` (onnxruntime, as deployed)."""
    return _Onnx(data).score(images)[0]


def _params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


# ---------------------------------------------------------------------------- configuration and results


@dataclass(frozen=True)
class PruneConfig:
    """How a pruning method runs. ``alignment``: channel counts snap to multiples of it (None:
    :func:`detect_alignment` on the predictor, 8 without one). Fine-tuning: ``epochs`` at the
    end (``final_steps`` overrides it with a number of steps), distilled from the original
    when ``distill``; progressive steps and search trials fine-tune ``step_steps`` /
    ``trial_steps`` steps. ``val_images`` training images are held aside to score proposals
    and trials (never trained on before the final fine-tune)."""

    criterion: str = "l1"
    alignment: int | None = None
    epochs: int = 2
    final_steps: int | None = None
    distill: bool = True
    lr: float = 0.01
    batch_size: int = 64
    seed: int = 0
    val_images: int = 256
    # progressive (NetAdapt)
    step_fraction: float = 0.1  # latency each step cuts, as a share of the original's
    chunk_fraction: float = 0.125  # channels one proposal removes from a group (at least one block)
    step_steps: int = 30
    max_steps: int = 40
    # search (Optuna TPE)
    trials: int = 20
    trial_steps: int = 20
    max_ratio: float = 0.85


@dataclass(frozen=True)
class PruneStep:
    """One model along the way: predicted latency, held-out accuracy (%, None where not
    evaluated), parameters, the groups pruned at this step; ``measured_ms`` when the farm
    measured it."""

    step: int
    label: str
    predicted_ms: float
    accuracy: float | None
    params: int
    pruned: tuple[str, ...] = ()
    measured_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["pruned"] = list(self.pruned)
        return d


@dataclass(frozen=True)
class PruneResult:
    """A pruned, fine-tuned ``module`` and how it got there."""

    module: Any
    method: str
    criterion: str
    alignment: int
    target_ms: float
    predicted_ms_before: float
    predicted_ms_after: float
    channels_before: Mapping[str, int]
    channels_after: Mapping[str, int]
    steps: tuple[PruneStep, ...]
    train_steps: int  # fine-tuning steps spent in all
    trials: int = 0
    measured_ms_before: float | None = None  # when the method was given a measure
    measured_ms_after: float | None = None
    seconds: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def predicted_speedup(self) -> float:
        return self.predicted_ms_before / self.predicted_ms_after if self.predicted_ms_after > 0 else math.inf

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "criterion": self.criterion, "alignment": self.alignment,
                "target_ms": self.target_ms, "predicted_ms_before": self.predicted_ms_before,
                "predicted_ms_after": self.predicted_ms_after, "predicted_speedup": self.predicted_speedup,
                "channels_before": dict(self.channels_before), "channels_after": dict(self.channels_after),
                "measured_ms_before": self.measured_ms_before, "measured_ms_after": self.measured_ms_after,
                "steps": [s.to_json() for s in self.steps], "train_steps": self.train_steps, "trials": self.trials,
                "seconds": round(self.seconds, 2), **dict(self.extra)}


class _Run:
    """What every method shares: the original, the data split, the injected latency, scoring."""

    def __init__(self, module: Any, *, input_shape: Sequence[int], train: Dataset, test: Dataset,
                 latency: LatencyModel, target_ms: float, config: PruneConfig, alignment: int,
                 progress: Progress | None, measure: LatencyModel | None = None):
        torch = _torch()
        _criterion(config.criterion)
        if not target_ms > 0:
            raise InputError(f"latency target {target_ms} ms: must be above 0")
        self.t0 = time.perf_counter()
        self.original = module
        self.shape = tuple(int(s) for s in input_shape)
        self.example = torch.zeros(*self.shape)
        self.train, self.test = train, test
        self.latency, self.target_ms, self.config = latency, float(target_ms), config
        self.measure = measure
        self.alignment = max(1, int(alignment))
        self.progress = progress or (lambda _what, _done, _total: None)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(train))
        n_val = min(config.val_images, len(train) // 4)
        self.val = Dataset(train.name, "train", train.x[order[:n_val]], train.y[order[:n_val]])
        rest = np.sort(order[n_val:])
        self.fit_data = Dataset(train.name, "train", train.x[rest], train.y[rest])
        self.train_steps = 0
        self.groups0 = channel_groups(module, self.example)
        self.before = {g.name: g.channels for g in self.groups0}
        self.ms0 = self.predict(module)
        self.measured0 = self.measured(module)

    def measured(self, module: Any, onnx: bytes | None = None) -> float | None:
        return None if self.measure is None else float(self.measure.latency_ms(module, onnx=onnx))

    def judged(self, step: PruneStep) -> float:
        """The latency the target is about: measured when the run measures, else predicted."""
        return step.predicted_ms if step.measured_ms is None else step.measured_ms

    @property
    def predicted_target(self) -> float:
        """The target in predicted ms (a measured target scaled by the original's ratio)."""
        if self.measured0 is None or not self.measured0 > 0:
            return self.target_ms
        return self.target_ms * self.ms0 / self.measured0

    def export(self, module: Any) -> bytes | None:
        """The module's ONNX when the latency model reads it (accuracy then comes from it too)."""
        return onnx_bytes(module, self.shape) if getattr(self.latency, "uses_onnx", False) else None

    def predict(self, module: Any, onnx: bytes | None = None) -> float:
        return float(self.latency.latency_ms(module, onnx=onnx))

    def score(self, module: Any, onnx: bytes | None, data: Dataset) -> tuple[float, float]:
        """(top-1 %, cross-entropy) on ``data``: onnxruntime on ``onnx`` when given, else torch."""
        if onnx is not None:
            return _Onnx(onnx).score(data)
        from nas.train import predict_logits

        return _scores(predict_logits(module, data.x), data.y)

    def copy_with(self, keep: Mapping[str, int], *, base: Any = None, scores: Mapping[str, Any] | None = None) -> Any:
        m = copy.deepcopy(self.original if base is None else base)
        return prune_channels(m, self.example, keep, criterion=self.config.criterion, scores=scores,
                              data=self.fit_data)

    def check_reachable(self) -> None:
        """InputError when even every group at its floor (one alignment block) misses the target."""
        now = self.ms0 if self.measured0 is None else self.measured0
        if now <= self.target_ms:
            return
        floor = self.copy_with({g.name: _floor(g.channels, self.alignment) for g in self.groups0})
        data = self.export(floor)
        ms = self.predict(floor, data) if self.measure is None else self.measured(floor, data)
        assert ms is not None
        if ms > self.target_ms:
            how = "predicted" if self.measure is None else "measured"
            raise InputError(f"latency target {self.target_ms:.4g} ms ({how}) cannot be reached: every layer "
                             f"group pruned to {self.alignment} channel(s) is still {how} at {ms:.4g} ms "
                             f"(the original: {now:.4g} ms)")

    def fine_tune(self, module: Any, steps: int, *, label: str, data: Dataset | None = None,
                  teacher: Any = None, seed: int = 0) -> None:
        from nas.train import TrainConfig, fit

        if steps <= 0:
            return
        cfg = TrainConfig(epochs=max(1, math.ceil(steps * self.config.batch_size / max(1, len(data or self.fit_data)))),
                          batch_size=self.config.batch_size, lr=self.config.lr, seed=self.config.seed + seed,
                          max_steps=steps)
        res = fit(module, data or self.fit_data, cfg, teacher=teacher,
                  progress=lambda done, total, _loss: self.progress(label, done, total))
        self.train_steps += res.steps

    def finish(self, module: Any) -> int:
        """The final fine-tune on all training images, distilled from the original when asked."""
        c = self.config
        steps = c.final_steps if c.final_steps is not None else \
            c.epochs * max(1, math.ceil(len(self.train) / c.batch_size))
        teacher = copy.deepcopy(self.original).eval() if c.distill else None
        self.fine_tune(module, steps, label="fine-tune", data=self.train, teacher=teacher, seed=1000)
        module.eval()
        return steps

    def point(self, step: int, label: str, module: Any, pruned: Sequence[str] = (), *,
              onnx: bytes | None = None) -> PruneStep:
        data = onnx if onnx is not None else self.export(module)
        ms = self.predict(module, data)
        acc = self.score(module, data, self.test)[0] if len(self.test) else None
        return PruneStep(step, label, ms, acc, _params(module), tuple(pruned), self.measured(module, data))

    def result(self, module: Any, method: str, steps: list[PruneStep], *, trials: int = 0,
               extra: Mapping[str, Any] | None = None) -> PruneResult:
        after = {g.name: g.channels for g in channel_groups(module, self.example)}
        return PruneResult(module=module, method=method, criterion=self.config.criterion, alignment=self.alignment,
                           target_ms=self.target_ms, predicted_ms_before=self.ms0,
                           predicted_ms_after=steps[-1].predicted_ms, channels_before=dict(self.before),
                           channels_after={k: after.get(k, 0) for k in self.before}, steps=tuple(steps),
                           train_steps=self.train_steps, trials=trials, seconds=time.perf_counter() - self.t0,
                           measured_ms_before=self.measured0, measured_ms_after=steps[-1].measured_ms,
                           extra=dict(extra or {}))


def _run(module: Any, kwargs: dict[str, Any]) -> _Run:
    config = kwargs.pop("config", None) or PruneConfig()
    alignment = kwargs.pop("alignment", None) or config.alignment or 8
    return _Run(module, config=config, alignment=alignment, **kwargs)


# ---------------------------------------------------------------------------- progressive (NetAdapt)


def progressive(module: Any, *, input_shape: Sequence[int], train: Dataset, test: Dataset, latency: LatencyModel,
                target_ms: float, config: PruneConfig | None = None, alignment: int | None = None,
                progress: Progress | None = None, measure: LatencyModel | None = None) -> PruneResult:
    """NetAdapt's loop on a copy of ``module`` until its latency is at ``target_ms``.

    Each step, every group with channels to spare proposes losing ``chunk_fraction`` of them
    (at least one ``alignment`` block, the rest snapped to a multiple of it); a proposal's
    score is the rise of the cross-entropy on the held-aside images per predicted ms it saves.
    The best-scoring proposals are committed until the step has cut ``step_fraction`` of the
    original's predicted latency (or reached the target), then a short fine-tune; the final
    fine-tune follows the last step.

    ``target_ms`` is predicted ms, or measured ms when ``measure`` (a :class:`LatencyModel` of
    the device itself, :class:`FarmLatency`) is given: the loop then stops on measurements and
    records them along the way, while the predictor still ranks the proposals. The same holds
    for :func:`uniform` (which then bisects on measurements) and :func:`search_ratios`."""
    run = _run(module, dict(input_shape=input_shape, train=train, test=test, latency=latency, target_ms=target_ms,
                            config=config, alignment=alignment, progress=progress, measure=measure))
    c, a = run.config, run.alignment
    run.check_reachable()
    work = copy.deepcopy(module)
    steps = [run.point(0, "original", work)]
    base_ce = run.score(work, run.export(work), run.val)[1]
    step_cut = c.step_fraction * run.ms0
    n = 0
    while run.judged(steps[-1]) > run.target_ms:
        n += 1
        now = steps[-1]
        if n > c.max_steps:
            raise InputError(f"latency target {run.target_ms:.4g} ms not reached in {c.max_steps} steps "
                             f"(at {run.judged(now):.4g} ms)")
        g = _graph(work, run.example)
        scores = importances(work, run.example, criterion=c.criterion, data=run.fit_data, graph=g)
        proposals = []  # (damage per ms, -ms saved, group, keep, ms saved)
        todo = [grp for grp in g.groups if grp.channels > _floor(run.before.get(grp.name, grp.channels), a)]
        for i, grp in enumerate(todo):
            run.progress(f"step {n}: proposals", i, len(todo))
            chunk = max(a, round(grp.channels * c.chunk_fraction))
            keep = _snap(grp.channels - chunk, grp.channels, a)
            if keep >= grp.channels:
                continue
            cand = run.copy_with({grp.name: keep}, base=work, scores=scores)
            data = run.export(cand)
            saved = now.predicted_ms - run.predict(cand, data)
            if saved <= 0:
                continue
            ce = run.score(cand, data, run.val)[1]
            proposals.append((max(ce - base_ce, 0.0) / saved, -saved, grp.name, keep, saved))
        run.progress(f"step {n}: proposals", len(todo), len(todo))
        if not proposals:
            raise InputError(f"latency target {run.target_ms:.4g} ms not reached: no group left whose pruning "
                             f"lowers the predicted latency (at {run.judged(now):.4g} ms)")
        proposals.sort()
        # the gap to the target, in predicted ms (a measured gap scaled by the current ratio)
        gap = (run.judged(now) - run.target_ms) * now.predicted_ms / run.judged(now)
        need = min(step_cut, gap)
        chosen: dict[str, int] = {}
        got = 0.0
        for _, _, name, keep, saved in proposals:
            chosen[name] = keep
            got += saved
            if got >= need:
                break
        prune_channels(work, run.example, chosen, criterion=c.criterion, scores=scores)
        run.fine_tune(work, c.step_steps, label=f"step {n}: fine-tune", seed=n)
        data = run.export(work)
        steps.append(run.point(n, f"step {n}", work, sorted(chosen), onnx=data))
        base_ce = run.score(work, data, run.val)[1]
    run.finish(work)
    return run.result(work, "progressive", [*steps, run.point(n + 1, "pruned", work)])


# ---------------------------------------------------------------------------- uniform


def _bisect(fn: Callable[[float], float], target: float, lo: float, hi: float, *, iters: int = 12) -> float:
    """The smallest x in [lo, hi] with fn(x) ≤ target, fn assumed non-increasing (hi if none)."""
    if fn(lo) <= target:
        return lo
    for _ in range(iters):
        mid = (lo + hi) / 2
        if fn(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


class _KeepLatency:
    """Latency of the original pruned to a channel configuration (measured when the run
    measures, else predicted), memoized by it."""

    def __init__(self, run: _Run, scores: Mapping[str, Any], *, measured: bool = False):
        self.run, self.scores, self.measured = run, scores, measured and run.measure is not None
        self.cache: dict[tuple[tuple[str, int], ...], float] = {}

    def __call__(self, keep: Mapping[str, int]) -> float:
        key = tuple(sorted(keep.items()))
        if key not in self.cache:
            m = self.run.copy_with(keep, scores=self.scores)
            ms = self.run.measured(m) if self.measured else self.run.predict(m)
            assert ms is not None
            self.cache[key] = ms
        return self.cache[key]


def uniform(module: Any, *, input_shape: Sequence[int], train: Dataset, test: Dataset, latency: LatencyModel,
            target_ms: float, config: PruneConfig | None = None, alignment: int | None = None,
            progress: Progress | None = None, measure: LatencyModel | None = None) -> PruneResult:
    """The same share of channels removed from every group: the smallest share (bisected on the
    latency, channels snapped to ``alignment``) that meets ``target_ms``; then the final
    fine-tune. With ``measure``, the share is bisected on measurements."""
    run = _run(module, dict(input_shape=input_shape, train=train, test=test, latency=latency, target_ms=target_ms,
                            config=config, alignment=alignment, progress=progress, measure=measure))
    run.check_reachable()
    steps = [run.point(0, "original", module)]
    scores = importances(module, run.example, criterion=run.config.criterion, data=run.fit_data)
    lat = _KeepLatency(run, scores, measured=True)
    run.progress("uniform: the share that meets the target", 0, 1)
    ratio = _bisect(lambda r: lat(uniform_keep(run.groups0, r, alignment=run.alignment)), run.target_ms, 0.0, 1.0,
                    iters=12 if run.measure is None else 8)
    keep = uniform_keep(run.groups0, ratio, alignment=run.alignment)
    work = run.copy_with(keep, scores=scores)
    steps.append(run.point(1, f"uniform {ratio:.2f}", work, [g for g, k in keep.items() if k < run.before[g]]))
    run.finish(work)
    steps.append(run.point(2, "pruned", work))
    return run.result(work, "uniform", steps, extra={"ratio": round(ratio, 4)})


# ---------------------------------------------------------------------------- search (Optuna)


def search_ratios(module: Any, *, input_shape: Sequence[int], train: Dataset, test: Dataset, latency: LatencyModel,
                  target_ms: float, config: PruneConfig | None = None, alignment: int | None = None,
                  progress: Progress | None = None, measure: LatencyModel | None = None,
                  storage: Any = None) -> PruneResult:
    """Per-stage pruning ratios searched with Optuna's TPE (AMC's goal, a sampler instead of its
    agent). A trial suggests one ratio per stage (:attr:`ChannelGroup.stage`) as a *shape*,
    scaled (bisection on the predictor) to the least pruning that meets the target; it is
    scored by accuracy on the held-aside images after ``trial_steps`` of fine-tuning. A shape
    that cannot meet the target even at ``max_ratio`` is infeasible: ``latency − target`` is
    its constraint (``Trial.set_constraint``; ``constraints_func`` on Optuna 4). The best
    feasible trial's channels are pruned and fine-tuned. With ``measure``, the target is
    carried into predicted ms by the original's measured / predicted ratio."""
    import optuna

    run = _run(module, dict(input_shape=input_shape, train=train, test=test, latency=latency, target_ms=target_ms,
                            config=config, alignment=alignment, progress=progress, measure=measure))
    c = run.config
    run.check_reachable()
    target = run.predicted_target
    steps = [run.point(0, "original", module)]
    scores = importances(module, run.example, criterion=c.criterion, data=run.fit_data)
    lat = _KeepLatency(run, scores)
    stages = sorted({g.stage for g in run.groups0})

    def keep_of(shape: Mapping[str, float], scale: float) -> dict[str, int]:
        return {g.name: _snap(g.channels * (1.0 - min(c.max_ratio, scale * shape[g.stage])), g.channels,
                              run.alignment) for g in run.groups0}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    named = hasattr(optuna.trial.Trial, "set_constraint")  # Optuna 5; Optuna 4 reads constraints_func
    cf: dict[str, Any] = {} if named else {"constraints_func": lambda t: (t.user_attrs["violation"],)}
    sampler = optuna.samplers.TPESampler(seed=c.seed, n_startup_trials=max(1, min(10, c.trials // 3)), **cf)
    study = optuna.create_study(direction="maximize", sampler=sampler, storage=storage)
    best: tuple[float, float, dict[str, int]] | None = None  # (accuracy, -ms, keep)
    for i in range(c.trials):
        run.progress("search: trials", i, c.trials)
        trial = study.ask()
        shape = {s: trial.suggest_float(s, 0.0, c.max_ratio) for s in stages}
        top = max(shape.values())
        hi = c.max_ratio / top if top > 0 else 0.0

        def ms_at(scale: float, shape: Mapping[str, float] = shape) -> float:
            return lat(keep_of(shape, scale))

        scale = _bisect(ms_at, target, 0.0, hi, iters=8) if hi > 0 else 0.0
        keep = keep_of(shape, scale)
        ms = lat(keep)
        trial.set_user_attr("violation", ms - target)
        trial.set_user_attr("latency_ms", ms)
        if named:
            trial.set_constraint("latency_ms", ms - target)
        if ms > target:
            study.tell(trial, 0.0)
            continue
        cand = run.copy_with(keep, scores=scores)
        run.fine_tune(cand, c.trial_steps, label=f"search: trial {i + 1}", seed=10 * (i + 1))
        acc = run.score(cand, run.export(cand), run.val)[0]
        study.tell(trial, acc)
        if best is None or (acc, -ms) > best[:2]:
            best = (acc, -ms, keep)
    run.progress("search: trials", c.trials, c.trials)
    if best is None:
        raise InputError(f"latency target {run.target_ms:.4g} ms: none of {c.trials} sampled ratio shapes met it "
                         f"(try --method progressive or uniform)")
    keep = best[2]
    work = run.copy_with(keep, scores=scores)
    steps.append(run.point(1, "searched", work, [g for g, k in keep.items() if k < run.before[g]]))
    run.finish(work)
    steps.append(run.point(2, "pruned", work))
    feasible = sum(1 for t in study.trials if t.user_attrs.get("violation", 1.0) <= 0)
    return run.result(work, "search", steps, trials=c.trials,
                      extra={"feasible_trials": feasible, "stages": stages,
                             "best_trial_accuracy_val": round(best[0], 4)})


METHODS: dict[str, Callable[..., PruneResult]] = {"progressive": progressive, "search": search_ratios,
                                                  "uniform": uniform}


# ---------------------------------------------------------------------------- hwfarm compress prune


def run_prune(
    model: str | os.PathLike[str],
    *,
    device: str,
    target_latency_ms: float | None = None,
    target_speedup: float | None = None,
    method: str = "progressive",
    data: str | None = None,
    epochs: int = 2,
    out: str | os.PathLike[str] | None = None,
    config: PruneConfig | None = None,
    registry: str | os.PathLike[str] = "devices.yaml",
    db: str | os.PathLike[str] = "hwfarm.db",
    on_status: Callable[[str], None] | None = None,
    progress: Progress | None = None,
) -> Any:
    """Prune a model directory for ``device`` to a latency target and write the run directory:
    a model directory of the pruned network (arch.json, weights, model.onnx) plus report.json,
    the accuracy/latency plot and its CSV. Every input is checked before anything is written;
    a run that fails leaves nothing behind. Returns the :class:`compress.report.CompressReport`.

    The targets are about measurements (``target_speedup`` divides the original's measured
    latency): the method stops on the farm's measurements of its candidates
    (:class:`FarmLatency`) while the predictor ranks them. Where the device cannot be measured,
    both targets apply to predicted ms instead, and the report says so."""
    from compress.evaluate import accuracy_onnx, check_data, image_input, measure_speedup, resolve_model
    from compress.quantize import default_run_dir
    from compress.report import CompressReport, Point, check_run_dir, run_directory, write_report
    from farm.registry.spec import load_registry
    from nas.data import DATASETS, load_dataset
    from nas.modeldir import ONNX, load_model_dir, save_model_dir
    from predictors.api import load as load_predictor

    status = on_status or (lambda _msg: None)
    if method not in METHODS:
        raise InputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if (target_latency_ms is None) == (target_speedup is None):
        raise InputError("give one target: --target-latency-ms X or --target-speedup S")
    if target_latency_ms is not None and not target_latency_ms > 0:
        raise InputError(f"--target-latency-ms {target_latency_ms}: must be above 0")
    if target_speedup is not None and not target_speedup > 1:
        raise InputError(f"--target-speedup {target_speedup}: must be above 1")
    if epochs < 0:
        raise InputError(f"--epochs {epochs}: must be 0 or more")
    if data is not None and data not in DATASETS:
        raise InputError(f"--data {data!r}: unknown dataset; known: {', '.join(DATASETS)}")
    p = Path(model)
    if p.is_file() and p.suffix.lower() == ".onnx":
        raise InputError(f"{p}: pruning needs a model directory with torch weights (written by `hwfarm train`), "
                         f"not an ONNX file")
    src = resolve_model(p)
    if src.directory is None:
        raise InputError(f"{p}: pruning needs a model directory with torch weights (written by `hwfarm train`)")
    name = data or src.data
    if name is None:
        raise InputError(f"{p}: which dataset does it take? pass --data (mnist_5k or digits)")
    load_registry(registry).get(device)
    run_dir = check_run_dir(out if out is not None else default_run_dir(p, device, f"pruned-{method}"))
    inp = image_input(src.onnx)
    test = load_dataset(name, "test", input_size=inp.size, channels=inp.channels)
    check_data(inp, test, label=str(src.onnx))
    predictor = load_predictor(device, db=db)
    if predictor.device != device:
        raise InputError(f"bundle {predictor.bundle_id!r} was trained for device {predictor.device!r}, not {device!r}")
    train = load_dataset(name, "train", input_size=inp.size, channels=inp.channels)
    loaded = load_model_dir(src.directory)
    shape = loaded.input_shape
    cfg = replace(config or PruneConfig(), epochs=epochs)
    if cfg.alignment is None:
        align, align_source = detect_alignment(predictor)
    else:
        align, align_source = cfg.alignment, "given"
    lat = PredictorLatency(predictor, shape)
    status("predicting the original's latency")
    ms0 = lat.latency_ms(loaded.module)
    status(f"measuring the original on {device}")
    measure: FarmLatency | None = FarmLatency(device, shape, registry=registry, db=db)
    measured0, measure_note = None, None
    try:
        assert measure is not None
        measured0 = measure.latency_ms(loaded.module)
    except HwfarmError as err:  # unreachable: the targets fall back to the predictor's ms
        if isinstance(err, InputError):
            raise
        measure, measure_note = None, str(err)
    if target_latency_ms is not None:
        target_ms = target_latency_ms
    else:
        assert target_speedup is not None
        target_ms = (measured0 if measured0 is not None else ms0) / target_speedup
    how = "measured" if measure is not None else "predicted"
    status(f"pruning ({method}) to {target_ms:.4g} ms {how}")
    res = METHODS[method](loaded.module, input_shape=shape, train=train, test=test, latency=lat, target_ms=target_ms,
                          config=cfg, alignment=align, progress=progress, measure=measure)
    with run_directory(run_dir) as d:
        status("writing the pruned model")
        save_model_dir(d, arch_spec=loaded.arch, module=res.module, dataset=name, input_size=shape[-1],
                       in_channels=shape[1], num_classes=int(loaded.meta["num_classes"]),
                       accuracy=res.steps[-1].accuracy, overwrite=True,
                       train={"pruned_from": str(src.directory), "method": method, "epochs": epochs},
                       extra={"prune": res.to_json()})
        pruned = d / ONNX
        status("held-out accuracy before and after")
        acc_before = accuracy_onnx(src.onnx, test)
        acc_after = accuracy_onnx(pruned, test)
        status(f"measuring both models on {device}")
        m = measure_speedup(src.onnx, pruned, device=device, registry=registry, db=db)
        before_ms = m.before_ms if m.measured else ms0
        after_ms = m.after_ms if m.measured else res.predicted_ms_after
        speedup = m.speedup if m.measured else res.predicted_speedup
        kb_before, kb_after = src.onnx.stat().st_size / 1024, pruned.stat().st_size / 1024
        points = [Point("original", acc_before, before_ms, kb_before, m.measured)]
        points += [Point(s.label, s.accuracy, s.predicted_ms if s.measured_ms is None else s.measured_ms, math.nan,
                         s.measured_ms is not None) for s in res.steps[1:-1] if s.accuracy is not None]
        points.append(Point(f"pruned ({method})", acc_after, after_ms, kb_after, m.measured))
        report = CompressReport(
            model=str(pruned), original=str(model), device=device, data=name, method=f"prune-{method}",
            accuracy_before=acc_before, accuracy_after=acc_after, latency_ms_before=before_ms,
            latency_ms_after=after_ms, measured=m.measured, speedup=speedup, size_kb_before=kb_before,
            size_kb_after=kb_after, simulated=m.simulated, speedup_ci95=m.ci95, pairs=m.pairs,
            predicted_ms_before=ms0, predicted_ms_after=res.predicted_ms_after, bundle=predictor.bundle_id,
            run_dir=str(d), points=tuple(points),
            details={"prune": res.to_json(), "alignment_source": align_source,
                     "target": {"latency_ms": target_latency_ms, "speedup": target_speedup, "ms": target_ms,
                                "judged_by": how, "measured_original_ms": measured0,
                                "met": None if not m.measured else bool(
                                    m.after_ms is not None and m.before_ms is not None and (
                                        m.after_ms <= target_latency_ms if target_latency_ms is not None
                                        else m.before_ms / m.after_ms >= (target_speedup or 1.0)))},
                     "params_before": _params(loaded.module), "params_after": _params(res.module),
                     "held_out_images": len(test), "measure_error": m.error or measure_note})
        write_report(report, d)
    return report
