import sys, json, dataclasses, numpy as np
sys.path.insert(0, "/work/main")
from farm.registry import load_registry
from farm.store import SqliteStore
from farm.onnx_graph import load_onnx_graph
from predictors.api import training_set, accuracy_metrics
from predictors.kernel_model import KernelLevelPredictor
block = int(sys.argv[1]); db = next((a for a in sys.argv[2:] if a.endswith(".db")), "/tmp/hostacc3/hwfarm.db")
spec = load_registry("/work/main/devices.yaml").get("host-cpu")
ts = training_set(SqliteStore(db), spec)
rules = dataclasses.replace(ts.rules, layout_block=block)
g, y, _, names = ts.subset(True)
recs = [json.loads(l) for l in open("/tmp/cal/profile.json")]
cal = [(load_onnx_graph(r["model"]), r["latency_ms"]) for r in recs if "/cal/" in r["model"] and r["model"].split("/")[-1][0] == "s"]
test = [(r["model"], r["latency_ms"]) for r in recs if "/hostacc3/" in r["model"]]
p = KernelLevelPredictor(rules=rules, threads=ts.threads).fit(g, y, calibration=cal)
print("calibration", p.calibration_)
print("boundary", {t: round(c1 * 1e6, 1) for t, (c0, c1) in p.boundary_types_.items()})
G = [load_onnx_graph(m) for m, _ in test]; Y = np.array([v for _, v in test]); P = p.predict(G)
print("test", {k: round(v, 3) for k, v in accuracy_metrics(P, Y).items()})
Pc = p.predict([c for c, _ in cal]); print("cal", {k: round(v, 3) for k, v in accuracy_metrics(Pc, [v for _, v in cal]).items()})
if "-v" in sys.argv:
    for (m, _), a, b in zip(test, P, Y): print(f"   {m.split('/')[-1][:40]:40s} {b:8.4f} {a/b-1:+.1%}")
