import sys, json, dataclasses, numpy as np
sys.path.insert(0, "/work/main")
from farm.registry import load_registry
from farm.store import SqliteStore
from farm.onnx_graph import load_onnx_graph
from predictors.api import training_set, accuracy_metrics
from predictors.kernel_model import KernelLevelPredictor
from predictors.kernels import detect_kernels
spec = load_registry("/work/main/devices.yaml").get("host-cpu")
ts = training_set(SqliteStore("/tmp/hostacc3/hwfarm.db"), spec)
rules = dataclasses.replace(ts.rules, layout_block=16)
g, y, _, names = ts.subset(True)
recs = [json.loads(l) for l in open("/tmp/cal/profile.json")]
cal = [(load_onnx_graph(r["model"]), r["latency_ms"], r["model"]) for r in recs if "/cal/" in r["model"] and r["model"].split("/")[-1][0] == "s"]
test = [(load_onnx_graph(r["model"]), r["latency_ms"], r["model"]) for r in recs if "/hostacc3/" in r["model"]]
p = KernelLevelPredictor(rules=rules, threads=1).fit(g, y, calibration=[(a, b) for a, b, _ in cal])
def F(S):
    P = p.predict([a for a, _, _ in S]); out = []
    for (gr, _, _), q in zip(S, P):
        ks = detect_kernels(gr, rules); wkb = sum(k.kernel.weight_bytes for k in ks) / 1024
        out.append([q - p.base_ms, len(ks) * 1e-3, len(ks) * 1e-3 * (wkb > 2048), wkb * 1e-6, wkb])
    return np.array(out)
Fc, Ft = F(cal), F(test); yc = np.array([b for _, b, _ in cal]); yt = np.array([b for _, b, _ in test])
print("wKB cal", np.round(Fc[:, 4]).astype(int)); print("wKB test", np.round(Ft[:, 4]).astype(int))
for cols in ([0], [0, 1], [0, 2], [0, 3], [0, 1, 2]):
    A = Fc[:, cols] / yc[:, None]; coef = np.linalg.lstsq(A, (yc - p.base_ms) / yc, rcond=None)[0]
    qt = Ft[:, cols] @ coef + p.base_ms; qc = Fc[:, cols] @ coef + p.base_ms
    mt, mc = accuracy_metrics(qt, yt), accuracy_metrics(qc, yc)
    print(cols, coef.round(4), f"cal {mc['acc10']:.2f} test {mt['acc10']:.2f} med {mt['median_ape']:.3f}")
    if cols == [0, 2] and "-v" in sys.argv:
        for (_, b, m), q in zip(test, qt): print(f"   {m.split('/')[-1][:40]:40s} {b:8.4f} {q/b-1:+.1%}")
