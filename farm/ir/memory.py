"""Memory of a graph under its execution order: peak SRAM (live activations) and flash (weights)."""

from __future__ import annotations

from farm.ir.graph import Graph

__all__ = ["peak_sram_kb", "flash_kb"]


def peak_sram_kb(graph: Graph) -> tuple[float, str]:
    """Peak of live activation memory over the topological order (KB) and the node where
    it peaks. A tensor is live from the node that produces it (graph inputs: from the start)
    to its last consumer (graph outputs: to the end); weights live in flash."""
    last_use: dict[str, int] = {}
    produced = {t.name for t in graph.inputs}
    for i, n in enumerate(graph.nodes):
        for t in n.inputs:
            if t.name not in n.weights:
                last_use[t.name] = i
        produced.update(t.name for t in n.outputs)
    end = len(graph.nodes)
    for t in graph.outputs:
        last_use[t.name] = end
    live = {t.name: t.nbytes for t in graph.inputs}
    peak, where = float(sum(live.values())), graph.nodes[0].name if graph.nodes else ""
    for i, n in enumerate(graph.nodes):
        for t in n.outputs:
            live[t.name] = t.nbytes
        cur = float(sum(live.values()))
        if cur > peak:
            peak, where = cur, n.name
        for name in [x for x in live if last_use.get(x, -1) <= i]:
            del live[name]
    return peak / 1024, where


def flash_kb(graph: Graph) -> float:
    """Bytes of all weights (each initializer once), in KB."""
    seen: dict[str, int] = {}
    for n in graph.nodes:
        for t in n.inputs:
            if t.name in n.weights:
                seen[t.name] = t.nbytes
    return sum(seen.values()) / 1024
