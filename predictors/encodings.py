"""Architecture encodings for tables of whole-model latencies (pure, vectorized).

A *space* says how to read a table's architecture column and turns it into a float matrix,
one row per architecture. Nothing here knows any device.

Every encoding starts with a few *cost* columns (:func:`n_cost_features` of them: MACs,
parameters, activation traffic, op counts — analytic, from the space's macro network) and
continues with one-hot columns. A transfer model may give the two groups different priors.

- ``nb201``: column ``arch_str`` (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``). Cost: MMACs,
  activation traffic (M elements), and the count of each op over all edges and over *live*
  edges (an edge is live when it is not ``none``, its source node is fed by the cell input
  and its destination feeds the cell output — runtimes that fold dead branches only pay for
  those), 3 + 4 + 4 columns. One-hot: 6 edges × 5 ops (30), then the same masked to live
  edges (30).
- ``fbnet``: column ``op_idx`` (``7-8-1-…``: 22 layer op indices 0–8). Cost: MMACs, the
  depthwise convolutions' share of them (memory-bound on most devices, so it gets its own
  coefficient), parameters (M), activation traffic (M elements), non-skip layer count
  (5 columns), from the macro network of the CIFAR-100 FBNet space (HW-NAS-Bench; see
  ../shared/data/fbnet-latency/README.md). One-hot: 22 layers × 9 ops (198).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np

from farm.errors import InputError
from farm.zoo.nb201 import EDGES, OPS, arch_str_from_ops, ops_from_arch_str

__all__ = ["SPACES", "ARCH_COLUMN", "encode", "feature_names", "n_cost_features", "nb201_op_indices", "fbnet_op_indices",
           "FBNET_LAYERS", "FBNET_OPS"]

SPACES = ("nb201", "fbnet")
ARCH_COLUMN = {"nb201": "arch_str", "fbnet": "op_idx"}
FBNET_LAYERS = 22
FBNET_OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
_NB201_N_EDGES = len(EDGES)
_NB201_N_OPS = len(OPS)


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise InputError(f"unknown space {space!r}: expected one of {', '.join(SPACES)}")


@functools.cache
def _nb201_table() -> tuple[dict[str, int], np.ndarray]:
    """Every canonical cell string → its row in a (15625, 6) table of op indices."""
    rows = list(itertools.product(range(_NB201_N_OPS), repeat=_NB201_N_EDGES))
    lut = {arch_str_from_ops([OPS[o] for o in r]): i for i, r in enumerate(rows)}
    return lut, np.array(rows, dtype=np.int64)


def nb201_op_indices(archs: Sequence[str]) -> np.ndarray:
    """``arch_str`` values → int array (n, 6) of op indices into :data:`farm.zoo.nb201.OPS`.
    Canonical strings (as the tables spell them) are looked up; others are parsed."""
    lut, table = _nb201_table()
    try:
        return table[np.fromiter((lut[a] for a in archs), dtype=np.int64, count=len(archs))]
    except (KeyError, TypeError):
        pass
    out = np.empty((len(archs), _NB201_N_EDGES), dtype=np.int64)
    for i, arch in enumerate(archs):
        row = lut.get(arch) if isinstance(arch, str) else None
        if row is not None:
            out[i] = table[row]
            continue
        try:
            out[i] = [OPS.index(op) for op in ops_from_arch_str(str(arch))]
        except ValueError as err:
            raise InputError(f"row {i}: {err}") from None
    return out


def fbnet_op_indices(archs: Sequence[str]) -> np.ndarray:
    """``op_idx`` values (``"7-8-1-…"``) → int array (n, 22) of op indices 0–8."""
    out = np.empty((len(archs), FBNET_LAYERS), dtype=np.int64)
    for i, arch in enumerate(archs):
        parts = str(arch).strip().split("-")
        if len(parts) != FBNET_LAYERS or not all(p.isdigit() and int(p) < len(FBNET_OPS) for p in parts):
            raise InputError(f"row {i}: FBNet op_idx {arch!r}: expected {FBNET_LAYERS} op indices 0-"
                             f"{len(FBNET_OPS) - 1} joined by '-'")
        out[i] = [int(p) for p in parts]
    return out


def _one_hot(idx: np.ndarray, n_ops: int) -> np.ndarray:
    n, slots = idx.shape
    out = np.zeros((n, slots * n_ops))
    out[np.arange(n)[:, None], np.arange(slots)[None, :] * n_ops + idx] = 1.0
    return out


def _nb201_live(idx: np.ndarray) -> np.ndarray:
    """(n, 6) bool: edge is not ``none``, its source is fed by the input, its target feeds the output."""
    n = len(idx)
    active = idx != OPS.index("none")
    fed = np.zeros((n, 4), dtype=bool)
    fed[:, 0] = True
    for e, (dst, src) in enumerate(EDGES):
        fed[:, dst] |= fed[:, src] & active[:, e]
    feeds = np.zeros((n, 4), dtype=bool)
    feeds[:, 3] = True
    for e in reversed(range(_NB201_N_EDGES)):
        dst, src = EDGES[e]
        feeds[:, src] |= feeds[:, dst] & active[:, e]
    src_idx = np.array([s for _, s in EDGES])
    dst_idx = np.array([d for d, _ in EDGES])
    return active & fed[:, src_idx] & feeds[:, dst_idx]


# NB201 macro network: 3 stages × 5 cells at (channels, resolution) (16, 32), (32, 16), (64, 8).
_NB201_STAGES = ((16, 32), (32, 16), (64, 8))
_NB201_CELLS_PER_STAGE = 5
# Per edge, summed over the 15 cells: MACs of each op (ReLU-conv-BN; 3x3 average pool).
_NB201_OP_MACS = np.array([0.0, 0.0,
                           sum(r * r * c * c for c, r in _NB201_STAGES),
                           sum(r * r * c * c * 9 for c, r in _NB201_STAGES),
                           sum(r * r * c * 9 for c, r in _NB201_STAGES)]) * _NB201_CELLS_PER_STAGE
# Activation elements an op reads and writes (skip: a copy; none: nothing).
_NB201_OP_TRAFFIC = np.array([0.0, 2.0, 2.0, 2.0, 2.0]) * sum(r * r * c for c, r in _NB201_STAGES) \
    * _NB201_CELLS_PER_STAGE
_NB201_COUNTED = (1, 2, 3, 4)  # skip, conv1x1, conv3x3, pool


def _nb201_features(archs: Sequence[str]) -> np.ndarray:
    idx = nb201_op_indices(archs)
    onehot = _one_hot(idx, _NB201_N_OPS)
    live = _nb201_live(idx)
    live_onehot = onehot * np.repeat(live, _NB201_N_OPS, axis=1)
    macs_m = _NB201_OP_MACS[idx].sum(1) / 1e6
    live_macs_m = (_NB201_OP_MACS[idx] * live).sum(1) / 1e6
    traffic_m = _NB201_OP_TRAFFIC[idx].sum(1) / 1e6
    counts = [(idx == o).sum(1) for o in _NB201_COUNTED]
    live_counts = [((idx == o) & live).sum(1) for o in _NB201_COUNTED]
    cost = np.stack([macs_m, live_macs_m, traffic_m, *counts, *live_counts], axis=1).astype(float)
    return np.hstack([cost, onehot, live_onehot])


# FBNet macro network (CIFAR-100 setting): stem 3x3 conv 3->16 at 32x32, then 7 stages.
_FBNET_STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
_FBNET_STAGE_COUT = (16, 24, 32, 64, 112, 184, 352)
_FBNET_STAGE_STRIDE = (1, 1, 2, 2, 1, 2, 1)
_FBNET_OP_SPEC = ((3, 1, 1), (3, 1, 2), (3, 3, 1), (3, 6, 1), (5, 1, 1), (5, 1, 2), (5, 3, 1), (5, 6, 1),
                  None)  # (kernel, expansion, groups) per op; None = skip


def _fbnet_layer_costs() -> np.ndarray:
    """(22, 9, 5): MMACs, depthwise MMACs, M params, M activation elements, non-skip layers."""
    out = np.zeros((FBNET_LAYERS, len(FBNET_OPS), 5))
    layer, cin, res = 0, 16, 32
    for n, cout, stride in zip(_FBNET_STAGE_LAYERS, _FBNET_STAGE_COUT, _FBNET_STAGE_STRIDE, strict=True):
        for i in range(n):
            s = stride if i == 0 else 1
            r_out = res // s
            for o, spec in enumerate(_FBNET_OP_SPEC):
                if spec is None:
                    if cin != cout or s != 1:  # 1x1 conv + BN + ReLU
                        out[layer, o] = [r_out * r_out * cin * cout / 1e6, 0, cin * cout / 1e6,
                                         (res * res * cin + r_out * r_out * cout) / 1e6, 0]
                    continue
                k, e, g = spec
                mid = cin * e
                dw_macs = r_out * r_out * mid * k * k
                macs = res * res * cin * mid / g + dw_macs + r_out * r_out * mid * cout / g
                params = cin * mid / g + mid * k * k + mid * cout / g
                traffic = res * res * (cin + mid) + r_out * r_out * (2 * mid + cout)
                out[layer, o] = [macs / 1e6, dw_macs / 1e6, params / 1e6, traffic / 1e6, 1]
            layer, cin, res = layer + 1, cout, r_out
    return out


_FBNET_COSTS = _fbnet_layer_costs()


def _fbnet_features(archs: Sequence[str]) -> np.ndarray:
    idx = fbnet_op_indices(archs)
    cost = _FBNET_COSTS[np.arange(FBNET_LAYERS)[None, :], idx].sum(1)
    return np.hstack([cost, _one_hot(idx, len(FBNET_OPS))])


def n_cost_features(space: str) -> int:
    """How many leading columns of :func:`encode` are cost features (the rest are one-hot)."""
    _check_space(space)
    return 11 if space == "nb201" else 5


def encode(space: str, archs: Sequence[str]) -> np.ndarray:
    """Feature matrix (n, p) float64 for the architecture column of ``space``."""
    _check_space(space)
    if space == "nb201":
        return _nb201_features(archs)
    return _fbnet_features(archs)


def feature_names(space: str) -> list[str]:
    """Names of :func:`encode`'s columns, in order."""
    _check_space(space)
    if space == "nb201":
        onehot = [f"e{e}:{op}" for e in range(_NB201_N_EDGES) for op in OPS]
        counted = [OPS[o] for o in _NB201_COUNTED]
        cost = ["mmacs", "live_mmacs", "traffic_melems", *(f"n_{op}" for op in counted),
                *(f"n_live_{op}" for op in counted)]
        return cost + onehot + [f"live:{n}" for n in onehot]
    return ["mmacs", "dw_mmacs", "mparams", "traffic_melems", "n_blocks"] + \
        [f"l{layer}:{op}" for layer in range(FBNET_LAYERS) for op in FBNET_OPS]
