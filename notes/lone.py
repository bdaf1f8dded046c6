import sys, collections, onnx, numpy as np, onnxruntime as ort
from onnx import helper, TensorProto, numpy_helper
def conv_model(cin, cout, hw, k, group=1, relu_first=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    w = numpy_helper.from_array(np.random.rand(cout, cin // group, k, k).astype(np.float32), "w")
    nodes = []
    src = "x"
    if relu_first: nodes.append(helper.make_node("Relu", ["x"], ["r"])); src = "r"
    nodes.append(helper.make_node("Conv", [src, "w"], ["y"], pads=[k // 2] * 4, group=group))
    g = helper.make_graph(nodes, "g", [x], [y], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
def opt(m):
    o = ort.SessionOptions(); o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.optimized_model_filepath = "/tmp/exp/lone_opt.onnx"; o.log_severity_level = 3
    ort.InferenceSession(m, o, providers=["CPUExecutionProvider"])
    return [(n.domain or "", n.op_type) for n in onnx.load("/tmp/exp/lone_opt.onnx").graph.node]
for args in [(16, 16, 32, 3), (16, 16, 32, 1), (32, 32, 16, 3), (64, 64, 8, 3), (8, 16, 32, 3), (3, 16, 112, 3), (24, 144, 56, 1), (144, 144, 56, 3, 144), (64, 64, 8, 3, 1, True)]:
    print(args, opt(conv_model(*args)))
