import sys, collections, onnx, onnxruntime as ort
o = ort.SessionOptions(); o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
o.optimized_model_filepath = "/tmp/exp/opt3.onnx"; o.log_severity_level = 3
ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
om = onnx.load("/tmp/exp/opt3.onnx")
prod = {x: n for n in om.graph.node for x in n.output}
c = collections.Counter()
for n in om.graph.node:
    if n.domain == "com.microsoft.nchwc" and n.op_type in ("Conv", "AveragePool", "MaxPool"):
        src = prod.get(n.input[0]); c[(n.op_type, src.op_type if src else "graph-input")] += 1
        acts = [a for a in n.attribute if a.name == "activation"]
        if acts: c[(n.op_type, "fused-act:" + acts[0].s.decode())] += 1
        if len(n.input) > 3 and n.input[3]: c[(n.op_type, "sum-input")] += 1
print(c)
for n in om.graph.node[:40]: print(n.domain[-5:], n.op_type, n.name[:40], list(n.input)[:1], [a.name + "=" + str(onnx.helper.get_attribute_value(a))[:12] for a in n.attribute if a.name in ("activation",)])
