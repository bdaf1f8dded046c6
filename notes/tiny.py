"""Lone vs in-chain cost of tiny ops on a 16x32x32 tensor (64 KB): where does a lone tiny op's extra time go?"""
import sys, time, numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto, numpy_helper
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from farm.agent.runners import OnnxRuntimeRunner
from tnet2 import probe
S = [1, 16, 32, 32]
def model(ops, n_inputs_extra=0):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, S)
    ins = [x]; inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    nodes = []; cur = "x"
    for i, op in enumerate(ops):
        o = f"t{i}"
        if op == "relu": nodes.append(helper.make_node("Relu", [cur], [o]))
        elif op == "mul0": nodes.append(helper.make_node("Mul", [cur, "zero"], [o]))
        elif op == "addx": nodes.append(helper.make_node("Add", [cur, "x"], [o]))
        elif op == "addin":
            nm = f"y{i}"; ins.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, S)); nodes.append(helper.make_node("Add", [cur, nm], [o]))
        elif op == "pool": nodes.append(helper.make_node("AveragePool", [cur], [o], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0))
        elif op == "ident": nodes.append(helper.make_node("Identity", [cur], [o]))
        cur = o
    y = helper.make_tensor_value_info(cur, TensorProto.FLOAT, S)
    m = helper.make_model(helper.make_graph(nodes, "g", ins, [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    p = f"/tmp/exp/tiny_{'_'.join(ops)}.onnx"; onnx.save(m, p); return p
cases = {}
for op in ("relu", "mul0", "addx", "addin", "pool"):
    cases[(op, 1)] = model([op]); cases[(op, 4)] = model([op] * 4)
cases[("relu8", 1)] = None
runs = {k: OnnxRuntimeRunner().prepare(p, threads=1) for k, p in cases.items() if p}
res = {k: [] for k in runs}
for r in range(12):
    for k, run in runs.items():
        for _ in range(5): run()
        p0 = probe(); t = []
        for _ in range(40):
            a = time.perf_counter(); run(); t.append(time.perf_counter() - a)
        res[k].append((max(p0, probe()), np.median(t)))
base = min(p for v in res.values() for p, _ in v)
med = {k: np.median([x for p, x in v if p < 1.25 * base] or [x for _, x in v]) * 1e6 for k, v in res.items()}
for op in ("relu", "mul0", "addx", "addin", "pool"):
    one, four = med[(op, 1)], med[(op, 4)]
    print(f"{op:6s} lone {one:6.2f} us  chain4 {four:6.2f} us  in-chain per op {(four - one) / 3:5.2f}  lone - 2.9 overhead = {one - 2.9:5.2f}")
