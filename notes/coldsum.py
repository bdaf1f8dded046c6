"""Is a network ≈ Σ its lone kernels measured cold (caches evicted before each run), less their layout boundaries?"""
import sys, os, time, dataclasses, numpy as np, onnx, onnx.utils
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from farm.agent.runners import OnnxRuntimeRunner
from farm.onnx_graph import load_onnx_graph
from farm.registry import load_registry
from farm.store import SqliteStore
from predictors.kernels import detect_kernels, fusion_rules_for
from tnet2 import probe
EVICT = np.ones(int(sys.argv[2]) * 1024 // 8) if len(sys.argv) > 2 else np.ones(4096 * 128)
net = sys.argv[1]; rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 6
rules = fusion_rules_for(load_registry("/work/main/devices.yaml").get("host-cpu"), SqliteStore("/tmp/hostacc3/hwfarm.db"))
ks = detect_kernels(load_onnx_graph(net), rules)
from farm.sim.model import dedupe
from farm.onnx_export import graph_to_onnx
m = graph_to_onnx(dedupe(load_onnx_graph(net))); init = {i.name for i in m.graph.initializer}; EXT = onnx.utils.Extractor(m)
d = "/tmp/exp/coldsum"; os.makedirs(d, exist_ok=True)
paths = []
for i, k in enumerate(ks):
    ins = [n for n, _ in k.kernel.inputs if n not in init]; outs = [n for n, _ in k.kernel.outputs]
    p = f"{d}/a{i}.onnx"; onnx.save(EXT.extract_model(ins, outs), p); paths.append(p)
runs = [OnnxRuntimeRunner().prepare(p, threads=1) for p in paths]
netrun = OnnxRuntimeRunner().prepare(net, threads=1)
warm = np.zeros((rounds, len(runs))); cold = np.zeros((rounds, len(runs))); nets = []
for r in range(rounds):
    t = []
    for _ in range(20):
        a = time.perf_counter(); netrun(); t.append(time.perf_counter() - a)
    nets.append(np.median(t))
    for j, run in enumerate(runs):
        for _ in range(3): run()
        t = []
        for _ in range(15):
            a = time.perf_counter(); run(); t.append(time.perf_counter() - a)
        warm[r, j] = np.median(t)
        t = []
        for _ in range(15):
            EVICT += 1.0
            run()  # one untouched... no: time right after eviction
            EVICT += 1.0
            a = time.perf_counter(); run(); t.append(time.perf_counter() - a)
        cold[r, j] = np.median(t)
W = np.median(warm, 0) * 1e3; C = np.median(cold, 0) * 1e3; N = np.median(nets) * 1e3
OVH = 0.0029
print(f"{net.split('/')[-1][:40]}: network {N:.4f} ms; Σ(warm - ovh) {np.sum(W - OVH):.4f}; Σ(cold - ovh) {np.sum(C - OVH):.4f}; n {len(ks)}; cold-warm per kernel median {np.median(C - W)*1e3:.1f} us")
for t in sorted({k.type for k in ks}):
    idx = [i for i, k in enumerate(ks) if k.type == t]
    print(f"   {t:8s} n={len(idx):3d} Σwarm {np.sum(W[idx]-OVH):.4f} Σcold {np.sum(C[idx]-OVH):.4f}  per-kernel cold excess {np.median(C[idx]-W[idx])*1e3:.1f} us")
