"""A per-block lookup table of a kernel-level predictor: OFA's latency table, learned.

Once-for-All prices a sub-network as the sum of per-block latencies looked up in a table
measured on the device (Cai et al., ICLR 2020, §3.3). A kernel-level predictor
(:class:`predictors.kernel_model.KernelLevelPredictor`) prices a network as its per-inference
overhead plus one prediction per kernel; on a device whose predictor has no term that spans
the whole network, a block's kernels cost the same wherever the block sits, so the sum can
be taken block by block — and a block seen once is never predicted again.

:class:`KernelLUTLatencyModel` does that for a space that splits an architecture into blocks
(``space.blocks(arch)`` → hashable block specs, ``space.block_graph(block)`` → that block's
graph alone, whose kernels are the ones the block contributes to the full graph; the
MobileNetV3 space offers both). A new block is built once and priced by the predictor's own
``kernel_quantiles`` (one call per batch for all new blocks); after that an architecture costs
a dict lookup per block, no graph, no feature extraction, no model call.

It answers exactly what :class:`~nas.objectives.PredictorLatencyModel` answers from the
predictor's kernel-level model (``overhead + Σ kernels``: the same numbers added in another
order), and falls back to that path — graph by graph through ``predict_many`` — where
the sum does not split: a predictor with a term over the whole network (a boundary between
host and accelerator, weights streamed past a cache, graph-I/O transfer: accelerators and
big-weight CPUs) or a space without blocks. :attr:`KernelLUTLatencyModel.fallback` says why.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from farm.errors import InputError
from farm.ir.graph import Graph

__all__ = ["KernelLUTLatencyModel", "splits_by_kernel"]


def splits_by_kernel(model: Any) -> str | None:
    """None when a kernel-level model's prediction of a network is its overhead plus a sum of
    per-kernel terms that depend on each kernel alone; else why not."""
    if getattr(model, "boundary_types_", None):
        return "its boundary cost depends on which kernels run beside which (accelerator domain)"
    if getattr(model, "stream_levels_", None):
        return "its streamed-weight cost depends on the whole network's weights"
    io = getattr(model, "io_", None)
    if io is not None and (io.per_tensor_ms or io.per_kb_ms):
        return "its graph-I/O transfer cost depends on the whole network"
    return None


class KernelLUTLatencyModel:
    """Latency (and energy, where the bundle has an energy model) of a space's architectures
    as the predictor's overhead plus a per-block table of its kernel predictions.

    ``predictor``: a :class:`predictors.api.DevicePredictor` (its ``latency`` and ``energy``
    kernel-level models). ``space``: the space object whose blocks to use; default: the
    registered space of the name :meth:`predict_batch` is given."""

    def __init__(self, predictor: Any, *, energy: bool = True, space: Any | None = None) -> None:
        self.predictor = predictor
        self.energy = energy and getattr(predictor, "energy", None) is not None
        self.space = space
        self._models = [predictor.latency] + ([predictor.energy] if self.energy else [])
        reasons = [r for r in (splits_by_kernel(m) for m in self._models) if r]
        self._no_split = f"the predictor does not split by kernel: {reasons[0]}" if reasons else None
        self._table: dict[str, dict[Hashable, tuple[float, ...]]] = {}
        self.fallback: str | None = self._no_split  # why the last batch was priced graph by graph
        self.hits = 0
        self.misses = 0

    @property
    def has_energy(self) -> bool:
        return self.energy

    def table_size(self, space: str) -> int:
        """Distinct blocks of ``space`` priced so far."""
        return len(self._table.get(space, {}))

    def _space(self, name: str) -> Any:
        if self.space is not None:
            if getattr(self.space, "name", name) != name:
                raise InputError(f"this latency table prices space {self.space.name}, not {name}")
            return self.space
        from farm.zoo.spaces import get_space

        return get_space(name)

    def predict_batch(self, space: str, archs: Sequence[str], graphs: Sequence[Graph]
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        sp = self._space(space)
        if self._no_split is not None or not (hasattr(sp, "blocks") and hasattr(sp, "block_graph")):
            self.fallback = self._no_split or f"space {space} does not split into blocks"
            return self._per_graph(graphs)
        self.fallback = None
        table = self._table.setdefault(space, {})
        per = [sp.blocks(a) for a in archs]
        new = list(dict.fromkeys(b for bs in per for b in bs if b not in table))
        if new:
            self._price(sp, new, table)
        self.misses += len(new)
        self.hits += sum(len(bs) for bs in per) - len(new)
        bases = [m.base_ms for m in self._models]
        cols = [np.array([bases[j] + sum(table[b][j] for b in bs) for bs in per], dtype=float)
                for j in range(len(self._models))]
        return cols[0], (cols[1] if self.energy else None)

    def _price(self, sp: Any, new: list[Hashable], table: dict[Hashable, tuple[float, ...]]) -> None:
        """Each new block's Σ kernel predictions (point estimate) under every model, in one
        predictor call per model."""
        graphs = [sp.block_graph(b) for b in new]
        sums = []
        for m in self._models:
            _, q, _ = m.kernel_quantiles(graphs)
            sums.append([float(qi[:, 1].sum()) if len(qi) else 0.0 for qi in q])
        for i, b in enumerate(new):
            table[b] = tuple(s[i] for s in sums)

    def _per_graph(self, graphs: Sequence[Graph]) -> tuple[np.ndarray, np.ndarray | None]:
        preds = self.predictor.predict_many(list(graphs))
        lat = np.array([p.latency_ms for p in preds], dtype=float)
        if not self.energy:
            return lat, None
        return lat, np.array([np.nan if p.energy_mj is None else p.energy_mj for p in preds], dtype=float)
