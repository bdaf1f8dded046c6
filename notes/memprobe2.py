import sys, time, numpy as np
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from farm.agent.runners import OnnxRuntimeRunner
from tnet2 import probe
big = np.ones(64 * 1024 * 1024 // 8); rng = np.random.default_rng(0)
idx = rng.integers(0, len(big), 256)
buf4 = np.ones(4 * 1024 * 1024 // 8)
def gather():
    b = 1e9
    for _ in range(3):
        a = time.perf_counter(); big[idx].sum(); b = min(b, time.perf_counter() - a)
        idx[:] = rng.integers(0, len(big), 256)  # fresh lines each read: DRAM, not cache
    return b
def sum4():
    a = time.perf_counter(); buf4.sum(); return time.perf_counter() - a
runs = [OnnxRuntimeRunner().prepare(p, threads=1) for p in sys.argv[2:]]
rows = []; t0 = time.time()
while time.time() - t0 < float(sys.argv[1]):
    r = [probe() * 1e6, gather() * 1e6, sum4() * 1e6]
    for run in runs:
        for _ in range(3): run()
        t = []
        for _ in range(10):
            a = time.perf_counter(); run(); t.append(time.perf_counter() - a)
        r.append(np.median(t) * 1e3)
    rows.append(r)
R = np.array(rows); np.save("/tmp/exp/memprobe2.npy", R)
cpu = R[:, 0]; fast = cpu < 1.25 * cpu.min()
print("n", len(R), "cpu-fast", fast.sum(), "gather us p10/50/90", np.percentile(R[:, 1], [10, 50, 90]).round(2), "sum4 us", np.percentile(R[:, 2], [10, 50, 90]).round(1))
for j in range(len(runs)):
    x = R[fast, 3 + j]
    print(f"net{j}: median {np.median(x):.4f} [{np.percentile(x, 10):.3f}, {np.percentile(x, 90):.3f}] corr gather {np.corrcoef(R[fast, 1], x)[0, 1]:+.2f} corr sum4 {np.corrcoef(R[fast, 2], x)[0, 1]:+.2f}")
    for name, col in (("gather", 1), ("sum4", 2)):
        g = R[fast, col]; sel = g < np.percentile(g, 30)
        print(f"      {name} lowest 30%: median {np.median(x[sel]):.4f} [{np.percentile(x[sel], 10):.3f}, {np.percentile(x[sel], 90):.3f}]")
