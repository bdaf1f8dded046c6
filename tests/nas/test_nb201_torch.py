"""NAS-Bench-201's network in torch: its wiring, its shapes, and its parameters against the
graph IR (farm.zoo.nb201) and the benchmark's published counts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from farm.errors import InputError  # noqa: E402
from farm.zoo.nb201 import arch_str_from_ops, build_nb201  # noqa: E402
from nas.modules import build_module  # noqa: E402
from nas.modules.nb201 import Cell, build  # noqa: E402

MIXED = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
UNIFORM = {op: arch_str_from_ops([op] * 6) for op in ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                                      "avg_pool_3x3")}


def _counts(module) -> tuple[int, int]:
    """(trainable parameters, trainable + BN running statistics)."""
    p = sum(x.numel() for x in module.parameters())
    return p, p + sum(x.numel() for n, x in module.named_buffers() if "running" in n)


def _graph_params(arch: str, **kw) -> int:
    """The graph's count without the ``none`` op's constant (torch's x.mul(0.) has none)."""
    g = build_nb201(arch, **kw)
    return g.params - sum(n.params for n in g.nodes if n.op == "Mul")


@pytest.mark.parametrize("arch", [*UNIFORM.values(), MIXED,
                                  "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|"])
def test_parameters_match_the_graph_ir(arch):
    m = build(arch, {}, num_classes=10, in_channels=3, input_size=32)
    assert _counts(m)[1] == _graph_params(arch)
    small = build(arch, {"C": "8", "N": "1"}, num_classes=10, in_channels=3, input_size=32)
    assert _counts(small)[1] == _graph_params(arch, channels=8, cells_per_stage=1)


def test_parameters_match_the_published_benchmark():
    # NAS-Bench-201's API lists 1.531546 M parameters for the all-3x3 cell (its largest) and
    # 0.073306 M for the cells without convolutions (its smallest), CIFAR-10.
    assert _counts(build(UNIFORM["nor_conv_3x3"], {}, num_classes=10, in_channels=3, input_size=32))[0] == 1_531_546
    for op in ("none", "skip_connect", "avg_pool_3x3"):
        assert _counts(build(UNIFORM[op], {}, num_classes=10, in_channels=3, input_size=32))[0] == 73_306


@pytest.mark.parametrize(("options", "in_channels", "size"), [({}, 3, 32), ({"C": "8", "N": "1"}, 1, 16),
                                                              ({"C": "4", "N": "2"}, 3, 28), ({"N": "0"}, 3, 8)])
def test_logits_shape(options, in_channels, size):
    m = build(MIXED, options, num_classes=7, in_channels=in_channels, input_size=size)
    assert m(torch.randn(2, in_channels, size, size)).shape == (2, 7)


def test_the_registry_builds_it():
    m = build_module(f"nb201:{MIXED}", num_classes=10, in_channels=3, input_size=32)
    assert _counts(m)[0] == _counts(build(MIXED, {}, num_classes=10, in_channels=3, input_size=32))[0]


def test_cell_wiring_sums_each_earlier_node():
    x = torch.randn(2, 4, 6, 6)
    # node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    all_skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    torch.testing.assert_close(Cell(all_skip, 4)(x), 4 * x)
    # only the chain 0 → 1 → 2 → 3 of identities: the cell is the identity
    chain = "|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"
    torch.testing.assert_close(Cell(chain, 4)(x), x)
    # node3 = node1 only, through a pool (pads not counted: a constant stays constant)
    pool = "|skip_connect~0|+|none~0|none~1|+|none~0|avg_pool_3x3~1|none~2|"
    ones = torch.ones(1, 4, 5, 5)
    torch.testing.assert_close(Cell(pool, 4)(ones), ones)


def test_none_cells_cut_the_input_off():
    torch.manual_seed(0)
    m = build(UNIFORM["none"], {"C": "4", "N": "1"}, num_classes=10, in_channels=3, input_size=16).eval()
    with torch.no_grad():
        a, b = m(torch.randn(1, 3, 16, 16)), m(torch.randn(1, 3, 16, 16))
    torch.testing.assert_close(a, b)


def test_convolutions_are_relu_conv_bn():
    cell = Cell(UNIFORM["nor_conv_3x3"], 8)
    seq = cell.edges[0]
    assert [type(s).__name__ for s in seq] == ["ReLU", "Conv2d", "BatchNorm2d"]
    assert seq[1].bias is None and seq[1].kernel_size == (3, 3) and seq[1].padding == (1, 1)
    assert seq[2].affine and seq[2].track_running_stats


@pytest.mark.parametrize(("arch", "options", "size", "match"), [
    (MIXED, {"K": "3"}, 32, "unknown option"),
    (MIXED, {"C": "x"}, 32, "not an integer"),
    (MIXED, {"C": "0"}, 32, "between"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", {}, 32, "3 '\\+'-separated"),
    ("|conv~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", {}, 32, "bad edge"),
    (MIXED, {}, 2, "too small"),
])
def test_bad_specs_are_input_errors(arch, options, size, match):
    with pytest.raises(InputError, match=match):
        build(arch, options, num_classes=10, in_channels=3, input_size=size)
