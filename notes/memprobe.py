import sys, time, numpy as np
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from farm.agent.runners import OnnxRuntimeRunner
from tnet2 import probe
buf = np.ones(int(sys.argv[1]) * 1024 // 8)
runs = [OnnxRuntimeRunner().prepare(p, threads=1) for p in sys.argv[3:]]
def mprobe():
    b = 1e9
    for _ in range(3):
        a = time.perf_counter(); buf.sum(); b = min(b, time.perf_counter() - a)
    return b
rows = []
t0 = time.time()
while time.time() - t0 < float(sys.argv[2]):
    r = [probe() * 1e6, mprobe() * 1e6]
    for run in runs:
        t = []
        for _ in range(15):
            a = time.perf_counter(); run(); t.append(time.perf_counter() - a)
        r.append(np.median(t) * 1e3)
    r.append(probe() * 1e6)
    rows.append(r)
R = np.array(rows); np.save("/tmp/exp/memprobe.npy", R)
cpu = np.maximum(R[:, 0], R[:, -1]); fast = cpu < 1.25 * cpu.min()
print("n", len(R), "fast", fast.sum())
for j in range(len(runs)):
    x = R[fast, 2 + j]; m = R[fast, 1]
    print(f"net{j}: fast median {np.median(x):.4f} p10 {np.percentile(x,10):.4f} p90 {np.percentile(x,90):.4f}  corr(mem probe) {np.corrcoef(m, x)[0,1]:+.2f}  corr(cpu) {np.corrcoef(cpu[fast], x)[0,1]:+.2f}")
print("mem probe us p10/50/90", np.percentile(R[fast, 1], [10, 50, 90]).round(1))
# split by mem probe halves
med = np.median(R[fast, 1])
for j in range(len(runs)):
    x = R[fast, 2 + j]; lo = R[fast, 1] <= med
    print(f"net{j}: mem-fast half {np.median(x[lo]):.4f}  mem-slow half {np.median(x[~lo]):.4f}")
