"""NAS-Bench-201 (Dong & Yang, ICLR 2020): the cell space and its CIFAR macro network as
graph IR, built without torch.

An architecture is a cell of 4 nodes; node j sums one operation applied to each earlier
node. The string form (as in the shared CSVs) lists the 6 edges node by node::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The network follows NAS-Bench-201's ``TinyNetwork``: stem Conv3x3+BN; 5 cells at C, a
ResNet reduction block, 5 cells at 2C, a reduction block, 5 cells at 4C; BN+ReLU, global
average pool, linear classifier. Operations as in its ``OPS`` table: ``nor_conv_kxk`` is
ReLU→Conv→BN, ``avg_pool_3x3`` is AvgPool 3×3/1 (padding not counted), ``skip_connect`` is
the identity (no kernel) and ``none`` is ``x * 0`` (NB201's Zero op multiplies).
"""

from __future__ import annotations

import functools
import itertools
from typing import Iterator, Sequence

from farm.ir.builder import IRBuilder
from farm.ir.graph import Graph

__all__ = ["OPS", "EDGES", "parse_arch", "arch_str_from_ops", "ops_from_arch_str", "all_arch_strs", "build_nb201"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (to_node, from_node) in the order the string lists them.
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def parse_arch(arch: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """``|op~0|+|op~0|op~1|+|…|`` → ((("op", 0),), (("op", 0), ("op", 1)), (…×3))."""
    groups = arch.strip().split("+")
    if len(groups) != 3:
        raise ValueError(f"NB201 architecture {arch!r}: expected 3 '+'-separated node groups, got {len(groups)}")
    nodes = []
    for j, group in enumerate(groups, start=1):
        edges = [e for e in group.strip().strip("|").split("|") if e]
        if len(edges) != j:
            raise ValueError(f"NB201 architecture {arch!r}: node {j} needs {j} edges, got {len(edges)}")
        parsed = []
        for e in edges:
            op, sep, src = e.partition("~")
            if not sep or op not in OPS or not src.isdigit() or int(src) >= j:
                raise ValueError(f"NB201 architecture {arch!r}: bad edge {e!r} (op~source, op in {', '.join(OPS)})")
            parsed.append((op, int(src)))
        if sorted(s for _, s in parsed) != list(range(j)):
            raise ValueError(f"NB201 architecture {arch!r}: node {j} must take one edge from each of nodes 0..{j - 1}")
        nodes.append(tuple(sorted(parsed, key=lambda e: e[1])))
    return tuple(nodes)


@functools.cache
def _canonical() -> dict[str, tuple[str, ...]]:
    """Every cell's string as the shared tables spell it → its ops (15,625 entries, ~30 ms)."""
    return {arch_str_from_ops(ops): tuple(ops) for ops in itertools.product(OPS, repeat=6)}


def ops_from_arch_str(arch: str) -> tuple[str, ...]:
    """The 6 edge ops of an architecture string. Canonical strings are looked up (searches
    and benchmarks ask for hundreds of thousands); anything else is parsed and validated."""
    ops = _canonical().get(arch)
    if ops is not None:
        return ops
    return tuple(op for node in parse_arch(arch) for op, _ in node)


def arch_str_from_ops(ops: Sequence[str]) -> str:
    if len(ops) != 6 or any(o not in OPS for o in ops):
        raise ValueError(f"NB201 needs 6 ops from {OPS}, got {list(ops)}")
    o = list(ops)
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def all_arch_strs() -> Iterator[str]:
    for ops in itertools.product(OPS, repeat=6):
        yield arch_str_from_ops(ops)


def _relu_conv_bn(b: IRBuilder, name: str, x: str, cout: int, k: int, stride: int = 1) -> str:
    return b.bn(f"{name}.bn", b.conv(f"{name}.conv", b.relu(f"{name}.relu", x), cout, k, stride))


def _cell(b: IRBuilder, name: str, x: str, arch: tuple[tuple[tuple[str, int], ...], ...]) -> str:
    nodes = [x]
    for j, edges in enumerate(arch, start=1):
        terms = []
        for op, src in edges:
            e = f"{name}.n{j}.e{src}"
            inp = nodes[src]
            if op == "skip_connect":
                terms.append(inp)
            elif op == "none":
                terms.append(b.mul_zero(f"{e}.zero", inp))
            elif op == "avg_pool_3x3":
                terms.append(b.avgpool(f"{e}.pool", inp, 3, 1, 1))
            else:
                k = 3 if op == "nor_conv_3x3" else 1
                terms.append(_relu_conv_bn(b, e, inp, b.shape(inp)[1], k))
        acc = terms[0]
        for i, t in enumerate(terms[1:], start=1):
            acc = b.add(f"{name}.n{j}.add{i}", acc, t)
        nodes.append(acc)
    return nodes[-1]


def _reduction(b: IRBuilder, name: str, x: str, cout: int) -> str:
    a = _relu_conv_bn(b, f"{name}.a", x, cout, 3, 2)
    a = _relu_conv_bn(b, f"{name}.b", a, cout, 3, 1)
    r = b.conv(f"{name}.down.conv", b.avgpool(f"{name}.down.pool", x, 2, 2, 0), cout, 1)
    return b.add(f"{name}.add", r, a)


def build_nb201(arch: str, *, num_classes: int = 10, resolution: int = 32, channels: int = 16,
                cells_per_stage: int = 5) -> Graph:
    """The NB201 CIFAR network for one cell (CIFAR-10 defaults: 32×32, C=16, N=5)."""
    cell = parse_arch(arch)
    b = IRBuilder((1, 3, resolution, resolution))
    x = b.bn("stem.bn", b.conv("stem.conv", "input", channels, 3))
    c = channels
    for stage in range(3):
        if stage:
            c *= 2
            x = _reduction(b, f"red{stage}", x, c)
        for i in range(cells_per_stage):
            x = _cell(b, f"s{stage + 1}c{i}", x, cell)
    x = b.relu("lastact.relu", b.bn("lastact.bn", x))
    x = b.gemm("classifier", b.flatten("flatten", b.global_avgpool("gap", x)), num_classes)
    return b.build(f"nb201{arch}", x)
