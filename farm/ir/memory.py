"""Memory of a graph under its execution order: peak SRAM (live activations) and flash (weights).

Per-layer bit widths (node attrs ``w_bits`` / ``a_bits``, :mod:`farm.ir.bits`) count: a MAC
node's weight tensors (not its 1-D biases, which stay at their dtype) take ``w_bits`` per
element in flash, and an activation tensor is stored at the widest ``a_bits`` of the nodes
that read it (sub-byte tensors packed, as mixed-precision MCU kernels store them). Without
those attrs every tensor takes its dtype's width.
"""

from __future__ import annotations

from farm.ir.graph import Graph

__all__ = ["peak_sram_kb", "flash_kb"]


def peak_sram_kb(graph: Graph) -> tuple[float, str]:
    """Peak of live activation memory over the topological order (KB) and the node where
    it peaks. A tensor is live from the node that produces it (graph inputs: from the start)
    to its last consumer (graph outputs: to the end); weights live in flash."""
    last_use: dict[str, int] = {}
    read_bits: dict[str, int] = {}  # the widest a_bits a reader asks of a tensor
    produced = {t.name for t in graph.inputs}
    for i, n in enumerate(graph.nodes):
        a_bits = n.attrs.get("a_bits")
        for t in n.inputs:
            if t.name not in n.weights:
                last_use[t.name] = i
                if a_bits is not None:
                    read_bits[t.name] = max(read_bits.get(t.name, 0), int(a_bits))
        produced.update(t.name for t in n.outputs)
    end = len(graph.nodes)
    for t in graph.outputs:
        last_use[t.name] = end

    def nbytes(t) -> float:  # type: ignore[no-untyped-def]
        bits = read_bits.get(t.name)
        return float(t.nbytes) if bits is None else t.numel * bits / 8

    live = {t.name: nbytes(t) for t in graph.inputs}
    peak, where = float(sum(live.values())), graph.nodes[0].name if graph.nodes else ""
    for i, n in enumerate(graph.nodes):
        for t in n.outputs:
            live[t.name] = nbytes(t)
        cur = float(sum(live.values()))
        if cur > peak:
            peak, where = cur, n.name
        for name in [x for x in live if last_use.get(x, -1) <= i]:
            del live[name]
    return peak / 1024, where


def flash_kb(graph: Graph) -> float:
    """Bytes of all weights (each initializer once), in KB."""
    seen: dict[str, float] = {}
    for n in graph.nodes:
        w_bits = n.attrs.get("w_bits")
        for t in n.inputs:
            if t.name in n.weights:
                if w_bits is not None and len(t.shape) > 1:
                    seen[t.name] = t.numel * int(w_bits) / 8
                else:
                    seen[t.name] = float(t.nbytes)
    return sum(seen.values()) / 1024
