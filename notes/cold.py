import sys, time, numpy as np, onnx
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from farm.agent.runners import OnnxRuntimeRunner
buf = np.ones(int(sys.argv[1]) * 1024 // 8)  # eviction buffer KB
for p in sys.argv[2:]:
    run = OnnxRuntimeRunner().prepare(p, threads=1)
    m = onnx.load(p); wkb = sum(np.prod(i.dims) * 4 for i in m.graph.initializer) / 1024
    for _ in range(20): run()
    hot, cold = [], []
    for r in range(200):
        a = time.perf_counter(); run(); hot.append(time.perf_counter() - a)
        buf += 1.0
        a = time.perf_counter(); run(); cold.append(time.perf_counter() - a)
    print(f"{p.split('/')[-1]:12s} wKB {wkb:7.0f} hot {np.median(hot)*1e6:7.1f} cold {np.median(cold)*1e6:7.1f} us  +{(np.median(cold)-np.median(hot))*1e6:6.1f}")
