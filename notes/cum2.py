"""Cumulative in-network cost (network prefixes, measured) vs the predictor's cumulative kernel costs (block-16 boundary)."""
import sys, os, time, dataclasses, numpy as np, onnx, onnx.utils
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from farm.agent.runners import OnnxRuntimeRunner
from farm.onnx_graph import load_onnx_graph
from farm.registry import load_registry
from farm.store import SqliteStore
from predictors.api import training_set
from predictors.kernel_model import KernelLevelPredictor
from tnet2 import probe
net = sys.argv[1]; step = int(sys.argv[2]); rounds = int(sys.argv[3])
spec = load_registry("/work/main/devices.yaml").get("host-cpu")
ts = training_set(SqliteStore("/tmp/hostacc3/hwfarm.db"), spec)
rules = dataclasses.replace(ts.rules, layout_block=16)
g, y, _, _ = ts.subset(True)
p = KernelLevelPredictor(rules=rules, threads=1).fit(g, y)
G = load_onnx_graph(net)
ks_, q, _ = p.kernel_quantiles([G]); ks = ks_[0]; q = q[0][:, 1]
m = onnx.load(net); inp = m.graph.input[0].name
d = "/tmp/exp/cum2"; os.makedirs(d, exist_ok=True)
models = {}
for i, k in enumerate(ks):
    if i % step == step - 1 or i == len(ks) - 1:
        outs = [n for n, _ in k.kernel.outputs]
        pth = f"{d}/p{i}.onnx"; onnx.utils.extract_model(net, pth, [inp], outs); models[i] = pth
runs = {k: OnnxRuntimeRunner().prepare(pp, threads=1) for k, pp in models.items()}
res = {k: [] for k in runs}
for rnd in range(rounds):
    for k, run in runs.items():
        for _ in range(3): run()
        p0 = probe(); t = []
        for _ in range(15):
            a = time.perf_counter(); run(); t.append(time.perf_counter() - a)
        p1 = probe(); res[k].append((max(p0, p1), float(np.median(t))))
base = min(pp for v in res.values() for pp, _ in v)
med = {k: float(np.median([x for pp, x in v if pp < 1.25 * base] or [x for _, x in v])) * 1e3 for k, v in res.items()}
# predicted prefix: the prefix's own kernels re-predicted (its boundary differs at the cut) - use sum of q + exit reorder approx
cum = 0.0; prev_m = 0.0; prev_p = 0.0
print(f"{'upto':26s} {'type':7s} {'pred cum':>9s} {'meas':>9s}  seg pred  seg meas")
for i, k in enumerate(ks):
    cum += q[i]
    if i in med:
        mm = med[i] - p.base_ms
        print(f"{k.name[:26]:26s} {k.type:7s} {cum:9.4f} {mm:9.4f}  {cum - prev_p:8.4f} {mm - prev_m:8.4f} {(mm - prev_m) / max(cum - prev_p, 1e-9):5.2f}")
        prev_m, prev_p = mm, cum
