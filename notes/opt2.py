import sys, collections, onnx, onnxruntime as ort
o = ort.SessionOptions(); o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
o.optimized_model_filepath = "/tmp/exp/opt2.onnx"; o.intra_op_num_threads = 1; o.log_severity_level = 3
ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
om = onnx.load("/tmp/exp/opt2.onnx")
prod = {}
for n in om.graph.node:
    for x in n.output: prod[x] = n
c = collections.Counter((n.domain or "ai.onnx", n.op_type) for n in om.graph.node); print(c)
# what feeds ReorderInput / what reads ReorderOutput
fi = collections.Counter(); fo = collections.Counter()
readers = collections.defaultdict(list)
for n in om.graph.node:
    for x in n.input: readers[x].append(n)
for n in om.graph.node:
    if n.op_type == "ReorderInput": fi[prod[n.input[0]].op_type if n.input[0] in prod else "graph-input"] += 1
    if n.op_type == "ReorderOutput":
        for r in readers[n.output[0]]: fo[r.op_type] += 1
print("ReorderInput fed by", fi); print("ReorderOutput read by", fo)
