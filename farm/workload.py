"""Workloads: a model file's bytes, content hash and graph IR.

The hash (sha256 of the bytes) identifies a workload everywhere: in the store, in job keys,
in the device-side model cache. Two copies of the same file are one workload.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from farm.errors import ModelError
from farm.formats.files import read_model_bytes
from farm.ir.bits import BIT_WIDTHS_KEY, apply_bit_widths
from farm.ir.graph import Graph

__all__ = ["Workload", "load_workload", "workload_from_bytes", "FORMATS"]

# File suffix → format name.
FORMATS = {".onnx": "onnx", ".tflite": "tflite"}


@dataclass(frozen=True)
class Workload:
    """A model to run. ``hash`` is the sha256 hex digest of ``data``."""

    hash: str
    format: str
    name: str
    path: str | None
    graph: Graph
    data: bytes = field(repr=False, compare=False)

    @property
    def short_hash(self) -> str:
        return self.hash[:12]


def _format_of(path: Path, data: bytes) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt:
        return fmt
    if len(data) >= 8 and data[4:8] == b"TFL3":
        return "tflite"
    raise ModelError(f"{path}: unknown model format (expected {', '.join(sorted(FORMATS))})")


def load_workload(path: str | os.PathLike[str]) -> Workload:
    """Read a model file and build its graph. Bad files raise :class:`ModelError` naming the path."""
    p = Path(path)
    data = read_model_bytes(p)
    if not data:
        raise ModelError(f"{p}: model file is empty")
    return workload_from_bytes(data, fmt=_format_of(p, data), name=p.stem, path=str(p.resolve()), label=str(p))


def workload_from_bytes(data: bytes, *, fmt: str, name: str, path: str | None = None,
                        label: str | None = None) -> Workload:
    """A workload from a model's bytes (e.g. as the store keeps them, by content hash).
    ``path``: where the file is (for ONNX, external weight files are looked up beside it);
    ``label`` names the model in errors (default: the path, else the name)."""
    label = label or path or name
    base_dir = Path(path).parent if path else None
    if fmt == "onnx":
        from farm.formats.onnx import graph_from_onnx, parse_onnx

        model = parse_onnx(data, source=label, base_dir=base_dir)
        graph = graph_from_onnx(model, source=label)
        bits = {m.key: m.value for m in model.metadata_props}.get(BIT_WIDTHS_KEY)
    elif fmt == "tflite":
        from farm.formats.tflite import graph_from_tflite
        from farm.formats.tflite_export import tflite_metadata

        graph = graph_from_tflite(data, source=label, name=name)
        bits = tflite_metadata(data).get(BIT_WIDTHS_KEY)
    else:
        raise ModelError(f"{label}: unknown model format {fmt!r} (expected {', '.join(sorted(FORMATS.values()))})")
    if bits is not None:
        graph = apply_bit_widths(graph, bits, label=label)
    return Workload(hashlib.sha256(data).hexdigest(), fmt, name, path, graph, data)
