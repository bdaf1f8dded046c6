"""Workloads: a model file's bytes, content hash and graph IR.

The hash (sha256 of the bytes) identifies a workload everywhere: in the store, in job keys,
in the device-side model cache. Two copies of the same file are one workload.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError
from .graph import Graph

__all__ = ["Workload", "load_workload", "FORMATS"]

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


def read_model_bytes(p: Path) -> bytes:
    """A model file's bytes; a missing or unreadable file is a ModelError naming it."""
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{p}: model file not found") from None
    except IsADirectoryError:
        raise ModelError(f"{p}: is a directory, not a model file") from None
    except OSError as err:
        raise ModelError(f"{p}: cannot read model: {err.strerror or err}") from None
    return data


def load_workload(path: str | os.PathLike[str]) -> Workload:
    """Read a model file and build its graph. Bad files raise :class:`ModelError` naming the path."""
    p = Path(path)
    data = read_model_bytes(p)
    if not data:
        raise ModelError(f"{p}: model file is empty")
    fmt = _format_of(p, data)
    if fmt == "onnx":
        from .onnx_graph import graph_from_onnx, parse_onnx

        graph = graph_from_onnx(parse_onnx(data, source=str(p), base_dir=p.parent), source=str(p))
    else:
        from .tflite_graph import graph_from_tflite

        graph = graph_from_tflite(data, source=str(p), name=p.stem)
    return Workload(hashlib.sha256(data).hexdigest(), fmt, p.stem, str(p.resolve()), graph, data)
