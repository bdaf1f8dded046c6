"""int8 post-training quantization for CPU targets: onnxruntime's static quantizer, QDQ format.

:func:`quantize_int8` is onnxruntime's recipe for CNNs on CPUs, nothing home-made:

1. ``quant_pre_process`` (symbolic shape inference, onnxruntime's basic graph optimizations:
   BatchNormalization folded into the convolution before it, so one scale covers both) —
   skipped, with the model as it is, when it fails on an unusual graph;
2. ``quantize_static`` in the QDQ format (QuantizeLinear/DequantizeLinear pairs around each
   quantized op, which onnxruntime fuses into its integer kernels at session start), weights
   int8 per output channel (symmetric), activations uint8 (asymmetric) — the U8S8 pairing
   onnxruntime's x86 kernels run fastest (VPMADDUBSW / VNNI) — with activation ranges
   calibrated on real training images (MinMax by default).

The file records how it was made (ONNX metadata ``hwfarm.quantization``) and its MAC nodes'
bit widths (``hwfarm.bit_widths``, :mod:`farm.ir.bits`), which the farm's graph import puts on
the nodes for bit-width-aware simulated devices and the predictors' ``w_bits`` / ``a_bits``.

:func:`run_quantize` is ``hwfarm compress quantize``: check every input, quantize, accuracy
before and after on held-out images, both models measured on the device, a run directory
(:mod:`compress.report`) — the same function for the CLI and any other caller.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.evaluate import (
    accuracy_onnx,
    check_data,
    image_input,
    measure_speedup,
    predict_pair,
    resolve_model,
)
from compress.report import MODEL_FILE, CompressReport, Point, check_run_dir, run_directory, write_report
from farm.errors import InputError, ModelError
from farm.ir.bits import BIT_WIDTHS_KEY
from nas.data import DATASETS, Dataset, load_dataset

__all__ = ["QUANTIZATION_KEY", "CALIBRATION_METHODS", "Int8Model", "QuantizeConfig", "quantize_int8", "qdq_summary",
           "run_quantize", "check_device", "default_run_dir"]

QUANTIZATION_KEY = "hwfarm.quantization"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_MAC_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_CALIBRATION_BATCH = 32  # images per calibration run when the model's batch is symbolic


@dataclass(frozen=True)
class Int8Model:
    """What :func:`quantize_int8` wrote: the file and how it was made."""

    path: Path
    calibration_images: int
    method: str
    per_channel: bool
    preprocessed: bool  # quant_pre_process ran (else the model went in as it was)
    quantized_ops: int  # MAC nodes (Conv, Gemm, MatMul) that run in int8
    float_ops: int  # MAC nodes left in float


class _Images:
    """onnxruntime's CalibrationDataReader protocol (``get_next`` → feed dict or None) over images."""

    def __init__(self, name: str, x: np.ndarray, batch: int):
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            {name: np.ascontiguousarray(x[i:i + batch])} for i in range(0, len(x) - batch + 1, batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def qdq_summary(model: Any) -> tuple[dict[str, tuple[int, int]], int, int]:
    """Per MAC node of a QDQ ``onnx.ModelProto``: (weight bits, activation bits), 8 where both
    its activation and weight inputs come out of a DequantizeLinear, else 32; and the counts
    of int8 and float MAC nodes."""
    prod = _producers(model)
    bits: dict[str, tuple[int, int]] = {}
    for n in model.graph.node:
        if n.op_type not in _MAC_OPS or len(n.input) < 2:
            continue
        q = all(getattr(prod.get(x), "op_type", "") == "DequantizeLinear" for x in n.input[:2])
        bits[n.name] = (8, 8) if q else (32, 32)
    n8 = sum(1 for b in bits.values() if b == (8, 8))
    return bits, n8, len(bits) - n8


def _bit_widths_entry(model: Any) -> tuple[str | None, int, int]:
    """The ``hwfarm.bit_widths`` JSON of a QDQ model (None when it cannot name its nodes)."""
    bits, n8, nf = qdq_summary(model)
    if not n8:
        return None, n8, nf
    if nf == 0:
        return json.dumps({"*": [8, 8]}), n8, nf
    if any(not name for name in bits):  # the farm names unnamed nodes itself: cannot key them here
        return None, n8, nf
    table: dict[str, list[int]] = {"*": [8, 8]}
    table.update({k: [32, 32] for k, v in bits.items() if v != (8, 8)})
    return json.dumps(table), n8, nf


def _set_metadata(model: Any, entries: dict[str, str]) -> None:
    keep = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in entries.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    data: Dataset,
    calibration_images: int = 256,
    per_channel: bool = True,
    method: str = "minmax",
    preprocess: bool = True,
    seed: int = 0,
) -> Int8Model:
    """Write the static int8 (QDQ) version of the ONNX model at ``onnx_path`` to ``out_path``.

    ``data``: images the model takes (use the train split: the held-out images are for
    accuracy only); ``calibration_images`` of them, drawn with ``seed``, calibrate the
    activation ranges. ``method``: minmax, entropy or percentile. ``out_path`` appears whole
    or not at all. InputError / ModelError for a model or data that does not fit, or a model
    with nothing to quantize (no Conv, Gemm or MatMul)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    src, out = Path(onnx_path), Path(out_path)
    inp = image_input(src)
    check_data(inp, data, label=str(src))
    if method not in CALIBRATION_METHODS:
        raise InputError(f"calibration method {method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if calibration_images < 1:
        raise InputError(f"calibration_images must be at least 1, not {calibration_images}")
    batch = inp.batch or _CALIBRATION_BATCH
    calib = data.take(max(calibration_images, inp.batch or 1), seed=seed)
    n_calib = len(calib) - len(calib) % batch if inp.batch else len(calib)
    if n_calib == 0:
        raise InputError(f"{src}: the model's batch of {inp.batch} is larger than the {len(calib)} calibration images")
    calib_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                    "percentile": CalibrationMethod.Percentile}[method]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out.parent) as tmp:
        work = src
        preprocessed = False
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            try:
                quant_pre_process(str(src), str(pre))
                work, preprocessed = pre, True
            except Exception:  # an op symbolic shape inference does not know: quantize the model as it is
                work = src
        q = Path(tmp) / "int8.onnx"
        try:
            quantize_static(str(work), str(q), _Images(inp.name, calib.x[:n_calib], batch),  # type: ignore[arg-type]
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=calib_method,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        except (InputError, ModelError):
            raise
        except Exception as err:
            raise ModelError(f"{src}: onnxruntime's quantizer failed: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from None
        model = onnx.load(str(q))
        bits, n8, nf = _bit_widths_entry(model)
        if not n8:
            raise ModelError(f"{src}: nothing to quantize (no Conv, Gemm or MatMul ran in int8)")
        meta = {QUANTIZATION_KEY: json.dumps({
            "method": "onnxruntime static", "format": "QDQ", "weights": "int8", "activations": "uint8",
            "per_channel": per_channel, "calibration": {"data": data.name, "split": data.split, "images": n_calib,
                                                        "method": method, "seed": seed},
            "preprocessed": preprocessed})}
        if bits is not None:
            meta[BIT_WIDTHS_KEY] = bits
        _set_metadata(model, meta)
        final = Path(tmp) / "final.onnx"
        onnx.save(model, str(final))
        shutil.move(str(final), str(out))  # same filesystem (tmp is beside out): an atomic rename
    return Int8Model(out, n_calib, method, per_channel, preprocessed, n8, nf)


# ---------------------------------------------------------------------------- hwfarm compress quantize


@dataclass(frozen=True)
class QuantizeConfig:
    """The knobs of a quantize run (the CLI's options past MODEL, --device and --out)."""

    calibration_images: int = 256
    per_channel: bool = True
    method: str = "minmax"
    seed: int = 0
    rounds: int | None = None  # paired rounds of the before/after measurement (None: farm's default)
    max_latency_ms: float | None = None  # the int8 model must run within this on the device


# Runtimes that cannot take an ONNX file (they run .tflite / firmware): int8 for them is a
# full-integer .tflite, not this path.
_TFLITE_ONLY_RUNTIMES = ("benchmark_model", "eembc")


def check_device(device: str, *, registry: str | os.PathLike[str] = "devices.yaml") -> None:
    """InputError unless ``device`` is registered and runs onnxruntime's int8 (a CPU target or
    a simulated device that takes ONNX). Nothing is contacted."""
    from farm.devices.caps import device_caps
    from farm.registry.spec import load_registry

    caps = device_caps(load_registry(registry).get(device))
    if caps.int_only:
        raise InputError(f"{device} computes in {'/'.join(caps.dtypes)} only: full-integer .tflite quantization "
                         f"is not yet implemented (--bits 8 writes onnxruntime int8 for CPU targets)")
    if caps.runtime in _TFLITE_ONLY_RUNTIMES:
        raise InputError(f"{device} runs {caps.runtime} (.tflite): full-integer .tflite quantization is not yet "
                         f"implemented (--bits 8 writes onnxruntime int8 for CPU targets)")


def default_run_dir(model: str | os.PathLike[str], device: str, method: str = "int8") -> Path:
    stem = Path(model).stem if Path(model).suffix else Path(model).name
    return Path("compress-runs") / f"{stem}-{method}-{device}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_quantize(
    model: str | os.PathLike[str],
    *,
    device: str,
    out: str | os.PathLike[str] | None = None,
    data: str | None = None,
    config: QuantizeConfig = QuantizeConfig(),
    overwrite: bool = False,
    registry: str | os.PathLike[str] = "devices.yaml",
    db: str | os.PathLike[str] = "hwfarm.db",
    on_status: Callable[[str], None] | None = None,
) -> CompressReport:
    """Quantize ``model`` (an ONNX file or a model directory) to int8 for ``device`` and
    write the run directory ``out``. Every input is checked before anything is written
    (InputError / ModelError); a run that fails later, or whose int8 model misses
    ``config.max_latency_ms``, leaves nothing behind."""
    status = on_status or (lambda _msg: None)
    run = check_run_dir(out if out is not None else default_run_dir(model, device), overwrite=overwrite)
    src = resolve_model(model)
    inp = image_input(src.onnx)
    name = data or src.data
    if name is None:
        raise InputError(f"{model}: which dataset does it take? pass --data ({', '.join(DATASETS)})")
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    check_device(device, registry=registry)
    if config.max_latency_ms is not None and not config.max_latency_ms > 0:
        raise InputError(f"--max-latency-ms {config.max_latency_ms}: must be above 0")
    if config.method not in CALIBRATION_METHODS:
        raise InputError(f"calibration method {config.method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    if config.calibration_images < 1:
        raise InputError(f"calibration images must be at least 1, not {config.calibration_images}")
    if config.rounds is not None and config.rounds < 2:
        raise InputError(f"--rounds {config.rounds}: a paired comparison needs at least 2")
    test = load_dataset(name, "test", input_size=inp.size, channels=inp.channels)
    train = load_dataset(name, "train", input_size=inp.size, channels=inp.channels)
    check_data(inp, test, label=str(src.onnx))

    status(f"accuracy of {src.onnx.name} on {len(test)} held-out {name} images")
    acc_before = accuracy_onnx(src.onnx, test)
    with run_directory(run, overwrite=overwrite) as d:
        q_path = d / MODEL_FILE
        status(f"quantizing ({config.calibration_images} calibration images)")
        q = quantize_int8(src.onnx, q_path, data=train, calibration_images=config.calibration_images,
                          per_channel=config.per_channel, method=config.method, seed=config.seed)
        status("accuracy of the int8 model")
        acc_after = accuracy_onnx(q_path, test)
        status(f"measuring both models on {device}")
        lat = measure_speedup(src.onnx, q_path, device=device, registry=registry, db=db, rounds=config.rounds)
        pred = predict_pair(src.onnx, q_path, device=device, db=db)
        before_ms, after_ms = (lat.before_ms, lat.after_ms) if lat.measured else \
            ((pred[1], pred[2]) if pred is not None else (None, None))
        speedup = lat.speedup if lat.measured else (before_ms / after_ms if before_ms and after_ms else None)
        kb_before, kb_after = src.onnx.stat().st_size / 1024, q_path.stat().st_size / 1024
        report = CompressReport(
            model=str(q_path), original=str(model), device=device, data=name, method="int8",
            accuracy_before=acc_before, accuracy_after=acc_after, latency_ms_before=before_ms,
            latency_ms_after=after_ms, measured=lat.measured, speedup=speedup, size_kb_before=kb_before,
            size_kb_after=kb_after, simulated=lat.simulated, speedup_ci95=lat.ci95, pairs=lat.pairs,
            predicted_ms_before=pred[1] if pred else None, predicted_ms_after=pred[2] if pred else None,
            bundle=pred[0] if pred else None, run_dir=str(d),
            points=(Point("original", acc_before, before_ms, kb_before, lat.measured),
                    Point("int8", acc_after, after_ms, kb_after, lat.measured)),
            details={"quantization": {"format": "QDQ", "weights": "int8", "activations": "uint8",
                                      "per_channel": q.per_channel, "calibration_images": q.calibration_images,
                                      "calibration_method": q.method, "seed": config.seed,
                                      "preprocessed": q.preprocessed, "int8_mac_ops": q.quantized_ops,
                                      "float_mac_ops": q.float_ops},
                     "accuracy_recorded": src.accuracy, "held_out_images": len(test),
                     "measure_error": lat.error},
        )
        if config.max_latency_ms is not None:
            if after_ms is None:
                raise InputError(f"--max-latency-ms {config.max_latency_ms}: cannot check it, {device} gave no "
                                 f"latency ({lat.error or 'no measurement, no predictor'}); nothing written")
            if after_ms > config.max_latency_ms:
                how = "measured" if lat.measured else "predicted"
                raise InputError(f"the int8 model runs {after_ms:.4g} ms on {device} ({how}), above "
                                 f"--max-latency-ms {config.max_latency_ms:g}; nothing written")
        write_report(report, d)
    return report
