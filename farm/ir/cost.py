"""Cost counts of one node from its shapes: multiply-accumulates (the IR's ``macs``)."""

from __future__ import annotations

import math
from typing import Any

from farm.ir.graph import TensorInfo

__all__ = ["node_macs", "numel"]


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def node_macs(op: str, ins: list[TensorInfo], outs: list[TensorInfo], attrs: dict[str, Any]) -> int:
    """Multiply-accumulates of one node from its shapes.

    ``ins`` are the node's present inputs in order (empty optional names skipped; the inputs
    read here all come before any optional one). Conv-like: output elements × weights per
    output (``Cin/group · prod(kernel)``); ConvTranspose: input elements × ``Cout/group ·
    prod(kernel)``; Gemm/MatMul: ``M·N·K`` times the batch; recurrent: per step and batch
    row, the elements of W and R. Everything else: 0.
    """
    if not outs:
        return 0
    out = outs[0].shape
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        w = ins[3 if op == "QLinearConv" else 1].shape  # [Cout, Cin/group, k...]
        return numel(out) * numel(w[1:])
    if op == "ConvTranspose":
        x, w = ins[0].shape, ins[1].shape  # w: [Cin, Cout/group, k...]
        return numel(x) * numel(w[1:])
    if op == "Gemm":
        a = ins[0].shape
        k = a[0] if attrs.get("transA", 0) else a[-1]
        return numel(out) * k
    if op in ("MatMul", "MatMulInteger", "QLinearMatMul"):
        a = ins[0].shape
        return numel(out) * (a[-1] if a else 1)
    if op in ("LSTM", "GRU", "RNN"):
        x, w, r = ins[0].shape, ins[1].shape, ins[2].shape  # w: [dirs, gates*H, I], r: [dirs, gates*H, H]
        seq, batch = x[0], x[1]  # layout=1 swaps them; the product is the same
        return seq * batch * (numel(w) + numel(r))
    return 0
