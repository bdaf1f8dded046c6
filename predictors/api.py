"""The predictors' Python API: train a device's predictor from the dataset, load it, query it.

::

    import predictors
    p = predictors.load("host-cpu")                 # newest bundle for the device (beside hwfarm.db)
    p.predict("model.onnx").latency_ms              # a file, ONNX/TFLite bytes, a Workload or a Graph
    p.predict_many(graphs)                          # batched: features extracted once for all
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from farm.agent.measure import slowed_throughout
from farm.errors import InputError
from farm.formats.onnx import graph_from_onnx, onnx_skeleton, parse_onnx, read_onnx_structure
from farm.ir.graph import Graph
from farm.store.sqlite import SqliteStore
from farm.workload import Workload, load_workload, workload_from_bytes
from predictors.boundary import io_boundary
from predictors.bundle import BundleInfo, bundles_dir, find_bundle, read_bundle, read_spaces, save_bundle
from predictors.calibration import CALIBRATION_DIR
from predictors.kernel_model import KernelLevelPredictor, KernelPrediction, Prediction, chain_length, is_minimal_model
from predictors.kernels import FusionRules, detect_kernels, fusion_rules_for
from predictors.metrics import accuracy_metrics
from predictors.runtimes import layout_block
from predictors.space_model import SpaceModel, arch_of_graph, build_arch, sample_archs

__all__ = ["DevicePredictor", "TrainingSet", "load", "training_set", "train", "train_space", "evaluate",
           "accuracy_metrics"]

ModelLike = Graph | Workload | bytes | str | os.PathLike[str]


def _graph_of(x: ModelLike) -> Graph:
    """The graph of a model: a Graph, a Workload, a model's bytes (ONNX, or TFLite by its
    ``TFL3`` identifier) or a file's path. ONNX is read for its structure only (its weights'
    bytes are never decoded), which is what makes one query of a 100 MB model fast."""
    if isinstance(x, Graph):
        return x
    if isinstance(x, Workload):
        return x.graph
    if isinstance(x, bytes | bytearray | memoryview):
        data = bytes(x)
        if data[4:8] == b"TFL3":  # as a .tflite file is read (bit widths from its metadata included)
            return workload_from_bytes(data, fmt="tflite", name="model", label="<bytes>").graph
        return graph_from_onnx(parse_onnx(onnx_skeleton(data, source="<bytes>"), source="<bytes>"), source="<bytes>")
    p = Path(x)
    if p.suffix.lower() == ".onnx":
        return read_onnx_structure(p)
    return load_workload(p).graph


class DevicePredictor:
    """A loaded bundle: latency (and energy, where measured) of any model on one device."""

    def __init__(self, info: BundleInfo, latency: KernelLevelPredictor, energy: KernelLevelPredictor | None = None,
                 spaces: dict[str, SpaceModel] | None = None):
        self.info = info
        self.latency = latency
        self.energy = energy
        self.spaces = spaces or {}

    @property
    def device(self) -> str:
        return self.info.device

    @property
    def bundle_id(self) -> str:
        return self.info.id

    def predict(self, model: ModelLike) -> Prediction:
        """Latency (ms) with an interval, energy (mJ) or None, and the per-kernel breakdown."""
        return self.predict_many([model])[0]

    def predict_archs(self, archs: Sequence[str], *, space: str) -> np.ndarray:
        """(n, 3) low/point/high latency (ms) of a search space's architectures, from the
        bundle's graph-level model of that space: the fast path searches use."""
        model = self.spaces.get(space)
        if model is None:
            raise InputError(f"bundle {self.bundle_id!r} has no model of space {space!r} (has: "
                             f"{', '.join(sorted(self.spaces)) or 'none'}); train with --space {space}")
        return model.predict_quantiles(archs)

    def predict_many(self, models: Sequence[ModelLike], *, space: str | None = None) -> list[Prediction]:
        """Predictions for many models at once. With ``space``, ``models`` are architecture
        strings of that space (e.g. NB201 ``arch_str``) answered by its graph-level model."""
        if space is not None:
            qa = self.predict_archs([str(m) for m in models], space=space)
            return [Prediction(float(p), (float(lo), float(hi))) for lo, p, hi in qa]
        graphs = [_graph_of(m) for m in models]
        kernels, q, fb = self.latency.kernel_quantiles(graphs)
        base = self.latency.model_overhead(graphs)
        e_tot: list[float | None] = [None] * len(graphs)
        e_k: list[np.ndarray | None] = [None] * len(graphs)
        if self.energy is not None:
            _, eq, _ = self.energy.kernel_quantiles(graphs)
            e_base = self.energy.model_overhead(graphs)
            for i, qi in enumerate(eq):
                e_k[i] = qi[:, 1]
                e_tot[i] = float(e_base[i] + qi[:, 1].sum())
        out = []
        for i, ks in enumerate(kernels):
            tot = base[i] + (q[i].sum(axis=0) if len(ks) else np.zeros(3))
            ek = e_k[i]
            kp = tuple(KernelPrediction(k.name, k.type, float(q[i][j, 1]), bool(fb[i][j]),
                                        float(ek[j]) if ek is not None else None) for j, k in enumerate(ks))
            out.append(Prediction(float(tot[1]), (float(tot[0]), float(tot[2])), e_tot[i], kp))
        return out


def load(device_or_bundle: str | os.PathLike[str], *, db: str | os.PathLike[str] = "hwfarm.db") -> DevicePredictor:
    """A bundle directory, a bundle id, or a device name (its newest bundle beside ``db``)."""
    directory = bundles_dir(db)
    s = str(device_or_bundle)
    if (Path(s) / "bundle.json").is_file() or (directory / s / "bundle.json").is_file():
        info = find_bundle(directory, bundle=s)
    else:
        info = find_bundle(directory, device=s)
    _, lat, en = read_bundle(info.path)
    return DevicePredictor(info, lat, en, read_spaces(info))


# ---------------------------------------------------------------------------- training from the dataset


@dataclass(frozen=True)
class TrainingSet:
    """A device's measurements with their graphs, split into kernels (train) and networks (eval)."""

    device: str
    runtime: str
    threads: int
    simulated: bool
    rules: FusionRules
    graphs: tuple[Graph, ...]
    latency_ms: tuple[float, ...]
    energy_mj: tuple[float | None, ...]
    names: tuple[str, ...]
    single: tuple[bool, ...]  # one kernel on this device, a minimal model or a generated chain (training data)
    dataset_hash: str
    generated: tuple[bool, ...] = ()  # a test model of `dataset build`/`fusion` (never evaluation data)
    slowed: tuple[bool, ...] = ()  # every timed run contended: the gate never saw the machine's fast state
    calibration: tuple[bool, ...] = ()  # a calibration network of `dataset build` (training, never evaluation)

    @property
    def n_kernels(self) -> int:
        return sum(self.single)

    @property
    def n_slowed_kernels(self) -> int:
        """Kernel measurements left out of training: the contention gate saw every run slowed."""
        return sum(1 for s, w in zip(self.single, self.slowed, strict=False) if s and w)

    def calibration_nets(self) -> tuple[list[Graph], list[float], list[float | None]]:
        """The calibration networks (predictors.calibration) with their latency and energy."""
        idx = [i for i, c in enumerate(self.calibration) if c]
        return ([self.graphs[i] for i in idx], [self.latency_ms[i] for i in idx], [self.energy_mj[i] for i in idx])

    def subset(self, single: bool) -> tuple[list[Graph], list[float], list[float | None], list[str]]:
        """Single-kernel models (training), or whole models the dataset builder did not
        generate (evaluation)."""
        gen = self.generated or (False,) * len(self.single)
        slowed = self.slowed or (False,) * len(self.single)
        # A kernel measured only while the machine was slowed is left out of training (its
        # network would be measured at the machine's fast speed); networks are all kept.
        idx = [i for i, s in enumerate(self.single) if s == single and (not single or not slowed[i])
               and (single or not gen[i])]
        return ([self.graphs[i] for i in idx], [self.latency_ms[i] for i in idx], [self.energy_mj[i] for i in idx],
                [self.names[i] for i in idx])


def training_set(store: SqliteStore, spec: Any, *, threads: int | None = None) -> TrainingSet:
    """Every measurement of ``spec``'s device in the dataset, at one thread count (the
    entry's, else the most common), with each workload's graph from the dataset."""
    ms = store.measurements(device=spec.name)
    if not ms:
        raise InputError(f"no measurements of device {spec.name!r} in the dataset; "
                         f"build some: hwfarm dataset build --device {spec.name}")
    counts = Counter(m.settings.threads for m in ms)
    thr = threads or (spec.threads if spec.threads in counts else counts.most_common(1)[0][0])
    ms = [m for m in ms if m.settings.threads == thr]
    if not ms:
        raise InputError(f"no measurements of {spec.name!r} at {thr} thread(s) (have: {sorted(counts)})")
    runtime = Counter(m.settings.runtime for m in ms).most_common(1)[0][0]
    ms = sorted((m for m in ms if m.settings.runtime == runtime), key=lambda m: (m.workload, m.id or 0))
    latest: dict[str, Any] = {}
    for m in ms:  # one measurement per workload: the newest
        latest[m.workload] = m
    rules = fusion_rules_for(spec, store, runtime=runtime)
    simd = Counter(m.provenance.get("simd") for m in latest.values()).most_common(1)[0][0]
    rules = dataclasses.replace(rules, layout_block=layout_block(runtime, simd))
    models_dir = _models_dir(store)
    graphs, lat, en, names, single, generated, slowed, calibration = [], [], [], [], [], [], [], []
    h = hashlib.sha256()
    for wh, m in sorted(latest.items()):
        rec = store.get_workload(wh)
        if rec is None:
            continue
        g = rec.graph
        graphs.append(g)
        lat.append(m.stats.median_ms)
        en.append(m.energy_mj)
        names.append(rec.source_path or rec.name)
        generated.append(bool(models_dir and rec.source_path and Path(rec.source_path).is_relative_to(models_dir)))
        slowed.append(slowed_throughout(m.provenance.get("contention")))
        ks = detect_kernels(g, rules)
        single.append(len(ks) == 1 or is_minimal_model(g) or (generated[-1] and chain_length(ks, thr) > 0))
        calibration.append(bool(generated[-1] and not single[-1] and rec.source_path
                                and Path(rec.source_path).parent.name == CALIBRATION_DIR))
        h.update(f"{wh}:{m.id}:{m.stats.median_ms:.9g};".encode())
    simulated = any(bool(m.provenance.get("simulated")) for m in latest.values())
    if sum(w for s, w in zip(single, slowed, strict=True) if s) > 0.5 * max(sum(single), 1):
        slowed = [False] * len(slowed)  # slowed for good (a throttled board): that speed is the device's
    return TrainingSet(spec.name, runtime, thr, simulated, rules, tuple(graphs), tuple(lat), tuple(en), tuple(names),
                       tuple(single), h.hexdigest(), tuple(generated), tuple(slowed), tuple(calibration))


def _models_dir(store: SqliteStore) -> Path | None:
    """Where `hwfarm dataset build` writes its models for this dataset (resolved)."""
    if store.path == ":memory:":
        return None
    from predictors.dataset import models_dir_for

    return models_dir_for(store.path).resolve()


def train_space(space: str, lat: KernelLevelPredictor, ts: TrainingSet, *, distill: int = 600,
                seed: int = 0) -> tuple[SpaceModel, dict[str, Any]]:
    """A graph-level model of ``space`` for this device: from the dataset's whole-model
    measurements of the space's architectures, topped up to ``distill`` architectures
    predicted by the kernel-level model. Its fidelity is checked on 100 architectures it
    was not fitted on, against the kernel-level model."""
    measured: dict[str, float] = {}
    for g, y, single in zip(ts.graphs, ts.latency_ms, ts.single, strict=True):
        found = arch_of_graph(g)
        if found is not None and found[0] == space and not single:
            measured[found[1]] = y
    pool = [a for a in sample_archs(space, distill + 100 + len(measured), seed=seed) if a not in measured]
    n_distill = max(0, distill - len(measured))
    held_out = pool[n_distill:n_distill + 100]
    distilled = pool[:n_distill]
    graphs = [build_arch(space, a) for a in distilled + held_out]
    teacher = lat.predict(graphs) if graphs else np.zeros(0)
    archs = list(measured) + distilled
    y = list(measured.values()) + teacher[:n_distill].tolist()
    model = SpaceModel(space=space).fit(archs, y)
    fidelity = accuracy_metrics(model.predict(held_out), teacher[n_distill:])
    return model, {"n_measured": len(measured), "n_distilled": n_distill, "fidelity_vs_kernel_model": fidelity}


def train(store: SqliteStore, spec: Any, *, db: str | os.PathLike[str], threads: int | None = None,
          bundle_dir: Path | None = None, bundle_id: str | None = None, spaces: Sequence[str] = (),
          distill: int = 600, progress: Callable[[str], None] | None = None) -> BundleInfo:
    """Train ``spec``'s predictor on its kernel measurements, evaluate it on its whole-model
    measurements (never seen in training), add graph-level models of ``spaces``, and save
    the bundle beside the dataset."""
    say = progress or (lambda _msg: None)
    ts = training_set(store, spec, threads=threads)
    io = io_boundary(spec)
    g, y, e, _ = ts.subset(True)
    if not g:
        raise InputError(f"device {spec.name!r}: none of its {len(ts.graphs)} measured models forms a single kernel; "
                         f"build a kernel dataset first: hwfarm dataset build --device {spec.name}")
    say(f"training on {len(g)} kernel measurements of {spec.name} ({ts.runtime}, {ts.threads} thread(s))"
        + (f"; {ts.n_slowed_kernels} left out: every run of them was slowed by contention" if ts.n_slowed_kernels else ""))
    cg, cy, ce = ts.calibration_nets()
    if cg:
        say(f"{len(cg)} calibration networks")
    try:
        lat = KernelLevelPredictor(rules=ts.rules, target="latency_ms", threads=ts.threads, io_boundary=io).fit(
            g, y, calibration=list(zip(cg, cy, strict=True)))
    except ValueError as err:
        raise InputError(f"device {spec.name!r}: {err}") from None
    energy = None
    if all(v is not None and v > 0 for v in e):
        say("training the energy model")
        cal_e = [(gr, float(v)) for gr, v in zip(cg, ce, strict=True) if v is not None]
        energy = KernelLevelPredictor(rules=ts.rules, target="energy_mj", threads=ts.threads, io_boundary=io).fit(
            g, [float(v) for v in e if v is not None], calibration=cal_e if len(cal_e) == len(cg) else None)
    nets, ny, ne, _ = ts.subset(False)
    metrics: dict[str, Any] = {"kernels": {t: n for t, n in lat.n_samples_.items()}, "n_train": len(g),
                               "n_slowed_left_out": ts.n_slowed_kernels, "n_calibration": len(cg)}
    if lat.calibration_:
        metrics["calibration"] = lat.calibration_
    if nets:
        say(f"evaluating on {len(nets)} whole models")
        metrics["networks"] = accuracy_metrics(lat.predict(nets), ny)
        if energy is not None and all(v is not None for v in ne):
            metrics["networks_energy"] = accuracy_metrics(energy.predict(nets), [float(v) for v in ne if v])
    space_models: dict[str, SpaceModel] = {}
    for space in spaces:
        say(f"training the graph-level model of {space}")
        space_models[space], metrics[f"space:{space}"] = train_space(space, lat, ts, distill=distill)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    bid = bundle_id or f"{spec.name}-{created.replace(':', '').replace('-', '')}-{ts.dataset_hash[:8]}"
    meta = {"id": bid, "device": spec.name, "device_url": spec.url, "runtime": ts.runtime, "threads": ts.threads,
            "simulated": ts.simulated, "dataset_hash": ts.dataset_hash, "dataset": str(db), "created": created,
            "kind": "kernel", "fusion": ts.rules.to_dict(), "metrics": metrics}
    return save_bundle(bundle_dir or bundles_dir(db), meta, lat, energy, space_models)


def evaluate(predictor: DevicePredictor, store: SqliteStore, spec: Any) -> dict[str, Any]:
    """Accuracy of a predictor on the dataset's whole-model measurements of its device."""
    ts = training_set(store, spec, threads=int(predictor.info.meta.get("threads") or 1))
    nets, ny, _, names = ts.subset(False)
    if not nets:
        raise InputError(f"no whole-model measurements of {spec.name!r} to evaluate on; profile some models first")
    preds = predictor.predict_many(nets)
    rows = [{"model": n, "measured_ms": t, "predicted_ms": p.latency_ms,
             "interval_ms": list(p.latency_interval_ms), "error": p.latency_ms / t - 1.0,
             "fallback_kernels": len(p.fallback_kernels)} for n, t, p in zip(names, ny, preds, strict=True)]
    return {"device": spec.name, "bundle": predictor.bundle_id,
            "metrics": accuracy_metrics([p.latency_ms for p in preds], ny), "models": rows}
