"""The workload graph IR: what a model computes, independent of its file format.

A :class:`Graph` is a topologically ordered tuple of :class:`Node` records. Every node
carries its op type, attributes, input/output tensor shapes and dtypes, and three cost
counts used by the simulator and the predictors:

- ``macs``: multiply-accumulates (a Conv of K weights per output element = K MACs each),
- ``params``: number of weight elements the node reads from initializers,
- ``bytes_moved``: bytes of all input and output tensors, weights included.

The IR is built from ONNX (:func:`farm.formats.onnx.graph_from_onnx`), from TFLite
(:func:`farm.formats.tflite.graph_from_tflite`) and, for search spaces, directly in Python
(``farm/zoo``) without any file. Records are frozen; JSON round-trips through
:meth:`Graph.to_dict` / :meth:`Graph.from_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TensorInfo", "Node", "Graph", "DTYPE_BYTES"]

# Bytes per element for the dtype names used in the IR (numpy spelling).
DTYPE_BYTES: dict[str, float] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "uint16": 2,
    "uint32": 4, "uint64": 8, "bool": 1, "int4": 0.5, "uint4": 0.5, "string": 0,
}


@dataclass(frozen=True)
class TensorInfo:
    """A named tensor with a static shape (``()`` for scalars) and a numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return int(self.numel * DTYPE_BYTES.get(self.dtype, 4))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorInfo:
        return cls(name=d["name"], shape=tuple(int(x) for x in d["shape"]), dtype=d["dtype"])


@dataclass(frozen=True)
class Node:
    """One operator. ``inputs`` lists activations and weights alike; ``weights`` names the
    subset that are constant initializers (so ``params`` = their element count);
    ``consts`` the values of those that are single numbers (name, value), which a runtime's
    constant sharing compares (``Mul(x, 0)`` twice on one tensor is one node in onnxruntime)."""

    name: str
    op: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    weights: tuple[str, ...] = ()
    macs: int = 0
    params: int = 0
    bytes_moved: int = 0
    consts: tuple[tuple[str, float], ...] = ()

    @property
    def dtype(self) -> str:
        """The dtype of the node's first output (the precision it computes in)."""
        return self.outputs[0].dtype if self.outputs else "float32"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op": self.op,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "attrs": self.attrs,
            "weights": list(self.weights),
            "macs": self.macs,
            "params": self.params,
            "bytes_moved": self.bytes_moved,
            **({"consts": [list(c) for c in self.consts]} if self.consts else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        return cls(
            name=d["name"],
            op=d["op"],
            inputs=tuple(TensorInfo.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorInfo.from_dict(t) for t in d["outputs"]),
            attrs=dict(d.get("attrs", {})),
            weights=tuple(d.get("weights", ())),
            macs=int(d.get("macs", 0)),
            params=int(d.get("params", 0)),
            bytes_moved=int(d.get("bytes_moved", 0)),
            consts=tuple((str(k), float(v)) for k, v in d.get("consts", ())),
        )


@dataclass(frozen=True)
class Graph:
    """A whole model: nodes in topological order plus the graph's own inputs/outputs."""

    name: str
    nodes: tuple[Node, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    source_format: str = "ir"  # "onnx", "tflite" or "ir" (built in Python)

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def params(self) -> int:
        return sum(n.params for n in self.nodes)

    @property
    def bytes_moved(self) -> int:
        return sum(n.bytes_moved for n in self.nodes)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    def consumer_counts(self) -> dict[str, int]:
        """How many times each tensor is read: by nodes, and once more if it is a graph output."""
        out: dict[str, int] = {}
        for t in (*(t for n in self.nodes for t in n.inputs), *self.outputs):
            out[t.name] = out.get(t.name, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source_format": self.source_format,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "nodes": [n.to_dict() for n in self.nodes],
            "macs": self.macs,
            "params": self.params,
            "bytes_moved": self.bytes_moved,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Graph:
        return cls(
            name=d["name"],
            nodes=tuple(Node.from_dict(n) for n in d["nodes"]),
            inputs=tuple(TensorInfo.from_dict(t) for t in d["inputs"]),
            outputs=tuple(TensorInfo.from_dict(t) for t in d["outputs"]),
            source_format=d.get("source_format", "ir"),
        )
