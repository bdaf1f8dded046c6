import sys, json, sqlite3, numpy as np
sys.path.insert(0, "/work/main"); sys.path.insert(0, "/tmp/exp")
from layout2 import analyse
from farm.registry import load_registry
from farm.store import SqliteStore
from farm.onnx_graph import load_onnx_graph
from predictors.api import training_set, accuracy_metrics
from predictors.kernel_model import KernelLevelPredictor
from predictors.kernels import detect_kernels
spec = load_registry("/work/main/devices.yaml").get("host-cpu")
ts = training_set(SqliteStore("/tmp/hostacc3/hwfarm.db"), spec)
g, y, _, _ = ts.subset(True)
p = KernelLevelPredictor(rules=ts.rules, threads=1, boundary=False).fit(g, y)  # no chains: own = lone time - overhead
nets, ny, _, names = ts.subset(False)
P = p.predict(nets)
A = [analyse(detect_kernels(gr, ts.rules)) for gr in nets]
D = np.array([a["alone_kb"] - a["change_kb"] for a in A])
# second measurement (repeat.db) and the 00:46 one (cal profile)
rep = {w: m for w, m in sqlite3.connect("/tmp/hostacc3/repeat.db").execute("select workload, median_ms from measurements")}
c46 = {}
for l in open("/tmp/cal/profile.json"):
    r = json.loads(l)
    if "/hostacc3/" in r["model"]: c46[r["workload"]] = r["latency_ms"]
import hashlib
st = SqliteStore("/tmp/hostacc3/hwfarm.db")
hs = []
for gr, n in zip(nets, names):
    hs.append(next(w for w, nm in sqlite3.connect("/tmp/hostacc3/hwfarm.db").execute("select hash, source_path from workloads") if nm == n))
y2 = np.array([rep.get(h, np.nan) for h in hs]); y3 = np.array([c46.get(h, np.nan) for h in hs]); y1 = np.array(ny)
for r in (0, 15, 20, 25, 29, 35):
    q = P - r * 1e-6 * D
    print(f"r={r:2d}: " + "  ".join(f"{lab} {accuracy_metrics(q, yy)['acc10']:.2f}/{accuracy_metrics(q, yy)['median_ape']:.3f}" for lab, yy in (("00:11", y1), ("00:46", y3), ("02:15", y2))))
if "-v" in sys.argv:
    q = P - 29e-6 * D
    for n, a, b1, b3, b2 in zip(names, q, y1, y3, y2): print(f"  {n.split('/')[-1][:40]:40s} {a/b1-1:+.1%} {a/b3-1:+.1%} {a/b2-1:+.1%}")
