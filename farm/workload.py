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

__all__ = ["Workload", "load_workload", "FORMATS", "BIT_WIDTHS_KEY", "apply_bit_widths"]

# Model metadata (ONNX metadata_props, TFLite Model.metadata) with per-layer bit widths:
# JSON ``{"*": [w, a], "node name": [w, a]}``. Put on the graph's MAC nodes as attrs
# ``w_bits`` / ``a_bits`` at import, so the simulator and the predictors both see them.
BIT_WIDTHS_KEY = "hwfarm.bit_widths"

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

        model = parse_onnx(data, source=str(p), base_dir=p.parent)
        graph = graph_from_onnx(model, source=str(p))
        bits = {m.key: m.value for m in model.metadata_props}.get(BIT_WIDTHS_KEY)
    else:
        from .tflite_export import tflite_metadata
        from .tflite_graph import graph_from_tflite

        graph = graph_from_tflite(data, source=str(p), name=p.stem)
        bits = tflite_metadata(data).get(BIT_WIDTHS_KEY)
    if bits is not None:
        graph = apply_bit_widths(graph, bits, label=str(p))
    return Workload(hashlib.sha256(data).hexdigest(), fmt, p.stem, str(p.resolve()), graph, data)


def apply_bit_widths(graph: Graph, text: str, *, label: str) -> Graph:
    """``graph`` with the bit widths of a ``hwfarm.bit_widths`` metadata entry on its nodes;
    a malformed entry is an InputError naming the file."""
    import json

    from .errors import InputError
    from .sim.model import with_bit_widths

    try:
        table = json.loads(text)
        default = table.pop("*", None)
        per_node = {str(k): (int(v[0]), int(v[1])) for k, v in table.items()}
        w, a = (int(default[0]), int(default[1])) if default is not None else (None, None)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise InputError(f"{label}: metadata {BIT_WIDTHS_KEY!r} must be JSON like "
                         '{"*": [4, 4], "conv1": [8, 8]}') from None
    try:
        return with_bit_widths(graph, w, a, per_node=per_node)
    except InputError as err:
        raise InputError(f"{label}: metadata {BIT_WIDTHS_KEY!r}: {err}") from None
