"""Graph IR → .tflite (float32 and full-integer int8): the zoo's nets run in LiteRT with the IR's
MACs and output shape; BN and ReLU/ReLU6 are folded as the converter does; bit widths in the
metadata reach the imported graph."""

from __future__ import annotations

import numpy as np
import pytest

from farm.errors import InputError
from farm.formats.tflite import graph_from_tflite
from farm.workload import load_workload
from farm.zoo.nets import build_net

pytest.importorskip("ai_edge_litert")

from farm.formats.tflite_export import graph_to_tflite  # noqa: E402


def _graphs():
    from predictors.space_model import build_arch, sample_archs

    return ([build_net(n) for n in ("resnet8", "ds_cnn", "mobilenet_v1_vww", "fc_autoencoder")]
            + [build_net("mobilenet_v2", alpha=0.35, resolution=96), build_net("squeezenet1_1", resolution=64)]
            + [build_arch(s, a) for s in ("nb201", "fbnet") for a in sample_archs(s, 1, seed=5)])


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_zoo_nets_run_in_litert_with_the_same_work(dtype):
    from ai_edge_litert.interpreter import Interpreter

    for g in _graphs():
        data = graph_to_tflite(g, dtype=dtype)
        assert data == graph_to_tflite(g, dtype=dtype)  # pure
        tg = graph_from_tflite(data)
        assert tg.macs == g.macs, g.name
        assert all(n.dtype == dtype for n in tg.nodes if n.macs)
        it = Interpreter(model_content=data, num_threads=1)
        it.allocate_tensors()
        for d in it.get_input_details():
            it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        it.invoke()
        out = it.get_output_details()[0]["shape"]
        assert int(np.prod(out)) == int(np.prod(g.outputs[0].shape)), g.name


def test_bn_and_activations_fold_into_the_layer():
    g = build_net("resnet8")
    ops = [n.op for n in graph_from_tflite(graph_to_tflite(g)).nodes]
    assert "BatchNormalization" not in ops and "RELU" not in ops  # every ReLU follows a conv or an add
    assert ops.count("CONV_2D") == sum(1 for n in g.nodes if n.op == "Conv")


def test_bit_widths_round_trip_through_the_metadata(tmp_path):
    g = build_net("resnet8")
    names = [n.name for n in graph_from_tflite(graph_to_tflite(g, dtype="int8")).nodes if n.macs]
    p = tmp_path / "r8.tflite"
    p.write_bytes(graph_to_tflite(g, dtype="int8", bit_widths={"*": [4, 4], names[0]: [8, 2]}))
    nodes = {n.name: n for n in load_workload(p).graph.nodes}
    assert (nodes[names[0]].attrs["w_bits"], nodes[names[0]].attrs["a_bits"]) == (8, 2)
    assert all((nodes[n].attrs["w_bits"], nodes[n].attrs["a_bits"]) == (4, 4) for n in names[1:])
    with pytest.raises(InputError, match="unknown node"):
        graph_to_tflite(g, dtype="int8", bit_widths={"conv1": [4, 4]})
    with pytest.raises(InputError, match="float32 or int8"):
        graph_to_tflite(g, dtype="float16")
