"""The FBNet torch module (``fbnet:ARCH``) is the graph the space builds: exported to ONNX it has
the graph's layers, MACs and parameters; it runs on any input size and channel count."""

from __future__ import annotations

import io
import warnings

import pytest

from farm.errors import InputError
from farm.ir.graph import Graph
from farm.zoo.fbnet import OPS, build_fbnet, op_idx_str, parse_arch
from nas.modules import build_module

ARCH = ("k5_e6-skip-k3_e1_g2-skip-k5_e1-skip-skip-skip-k5_e6-k5_e1-k3_e1_g2-k5_e1-k5_e6-k3_e6-k3_e3-k5_e6-"
        "k3_e6-k3_e3-k5_e1-k3_e3-k5_e1-k5_e1_g2")
# every op at least twice (group convs with their shuffle; skips that are identities and convs,
# and a skip where the stride changes); then skips only
ALL = "-".join(OPS[i % len(OPS)] for i in range(22))
SKIPS = "-".join(["skip"] * 22)


def _export(module, res: int) -> Graph:
    import onnx
    import torch

    from farm.formats.onnx import graph_from_onnx

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, 3, res, res),), buf, dynamo=False, external_data=False,
                          opset_version=17, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    return graph_from_onnx(onnx.load_from_string(buf.getvalue()))


def _layers(g: Graph) -> list[tuple[str, tuple[int, ...], int, int]]:
    return sorted((n.op, n.outputs[0].shape, n.macs, n.params) for n in g.nodes)


@pytest.mark.parametrize("arch", [ALL, SKIPS])
def test_module_exports_to_the_graph_ir(arch):
    module = build_module(f"fbnet:{arch}", num_classes=100, in_channels=3, input_size=32)
    got, ref = _export(module, 32), build_fbnet(arch)
    assert (got.macs, got.params) == (ref.macs, ref.params)
    assert got.op_counts() == ref.op_counts() and _layers(got) == _layers(ref)


def test_module_takes_either_spelling_and_any_input():
    import torch

    idx = op_idx_str(parse_arch(ARCH))
    a = build_module(f"fbnet:{idx}", num_classes=10, in_channels=1, input_size=28)
    b = build_module(f"fbnet:{ARCH}", num_classes=10, in_channels=1, input_size=28)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert a(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and a.eval()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    with pytest.raises(InputError, match="layer 3: unknown op 'k9_e1'"):
        build_module("fbnet:" + ARCH.replace("k3_e1_g2", "k9_e1", 1))
    with pytest.raises(InputError, match="at least 8"):
        build_module(f"fbnet:{ARCH}", input_size=4)
    with pytest.raises(InputError, match="no options"):
        from nas.modules.fbnet import build

        build(ARCH, {"C": "8"}, num_classes=10, in_channels=1, input_size=28)
