"""Per-layer bit widths: node attrs ``w_bits`` / ``a_bits`` (without them a node's dtype width
is used, int8 → 8), and the ``hwfarm.bit_widths`` model metadata that carries them in a file."""

from __future__ import annotations

import json
from dataclasses import replace

from farm.errors import InputError
from farm.ir.graph import DTYPE_BYTES, Graph, Node

__all__ = ["BIT_WIDTHS_KEY", "dtype_bits", "bit_widths", "with_bit_widths", "apply_bit_widths"]

# Model metadata (ONNX metadata_props, TFLite Model.metadata) with per-layer bit widths:
# JSON ``{"*": [w, a], "node name": [w, a]}``. Put on the graph's MAC nodes as attrs
# ``w_bits`` / ``a_bits`` at import, so the simulator and the predictors both see them.
BIT_WIDTHS_KEY = "hwfarm.bit_widths"


def dtype_bits(dtype: str) -> int:
    return max(1, int(round(DTYPE_BYTES.get(dtype, 4) * 8)))


def bit_widths(node: Node) -> tuple[int, int]:
    """(weight bits, activation bits) of a node: attrs ``w_bits`` / ``a_bits``, else its dtype's width."""
    default = dtype_bits(node.dtype)
    return int(node.attrs.get("w_bits", default)), int(node.attrs.get("a_bits", default))


def with_bit_widths(graph: Graph, w_bits: int | None = None, a_bits: int | None = None, *,
                    per_node: dict[str, tuple[int, int]] | None = None) -> Graph:
    """A copy of ``graph`` whose MAC nodes carry ``w_bits`` / ``a_bits`` attrs: ``per_node``
    maps node names to (w, a); other MAC nodes get the defaults when given. This is how a
    mixed-precision model is described to the bit-serial (BitFusion) profile."""
    per_node = dict(per_node or {})
    for name, (w, a) in list(per_node.items()) + [("default", (w_bits or 8, a_bits or 8))]:
        if not (1 <= int(w) <= 32 and 1 <= int(a) <= 32):
            raise InputError(f"bit widths for {name!r} must be 1..32, got w={w} a={a}")
    unknown = set(per_node) - {n.name for n in graph.nodes}
    if unknown:
        raise InputError(f"with_bit_widths: no node named {sorted(unknown)[0]!r} in graph {graph.name!r}")
    nodes = []
    for n in graph.nodes:
        bits = per_node.get(n.name)
        if bits is None and n.macs and (w_bits is not None or a_bits is not None):
            dw, da = bit_widths(n)
            bits = (w_bits or dw, a_bits or da)
        nodes.append(replace(n, attrs={**n.attrs, "w_bits": int(bits[0]), "a_bits": int(bits[1])}) if bits else n)
    return replace(graph, nodes=tuple(nodes))


def apply_bit_widths(graph: Graph, text: str, *, label: str) -> Graph:
    """``graph`` with the bit widths of a ``hwfarm.bit_widths`` metadata entry on its nodes;
    a malformed entry is an InputError naming the file."""
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
