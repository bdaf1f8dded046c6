"""Feasibility: an in-network correction fitted on calibration nets, evaluated on the held-out nets."""
import sys, json, numpy as np
sys.path.insert(0, "/work/main")
from farm.registry import load_registry
from farm.store import SqliteStore
from farm.onnx_graph import load_onnx_graph
from predictors.api import training_set, accuracy_metrics
from predictors.kernel_model import KernelLevelPredictor
from predictors.kernels import detect_kernels
BLOCK = 16
def blocked_of(ks):
    prod = {}
    for i, k in enumerate(ks):
        for n, _ in k.kernel.outputs: prod[n] = i
    bl = []
    for i, k in enumerate(ks):
        ops = k.kernel.ops; t = k.type
        cin = None
        h = k.nodes[0]
        if h.inputs and len(h.inputs[0].shape) == 4: cin = h.inputs[0].shape[1]
        if t in ("conv", "dwconv"):
            g = int(h.attrs.get("group", 1)) if h.attrs else 1
            b = g == 1 or (cin is not None and g == cin)
        elif t in ("pool", "gpool"):
            b = cin is not None and cin % BLOCK == 0
        elif t in ("act", "bn") or (t == "eltwise" and ops[0] in ("Add", "Sum")):
            srcs = [prod.get(n) for n, _ in k.kernel.inputs]
            b = bool(srcs) and all(s is not None and bl[s] for s in srcs)
        else:
            b = False
        bl.append(b)
    return bl
def feats(ks, p, preds):
    bl = blocked_of(ks)
    prod = {}; readers = {}
    for i, k in enumerate(ks):
        for n, _ in k.kernel.outputs: prod[n] = i
        for n, _ in k.kernel.inputs: readers.setdefault(n, []).append(i)
    alone_kb = 0.0; change_kb = 0.0; seen = set()
    for i, k in enumerate(ks):
        if not bl[i]: continue
        h = k.nodes[0]; cin = h.inputs[0].shape[1] if h.inputs and len(h.inputs[0].shape) == 4 else 99
        direct = k.type == "conv" and cin < BLOCK
        ins = sum(b for _, b in k.kernel.inputs) / 1024; outs = sum(b for _, b in k.kernel.outputs) / 1024
        alone_kb += (0 if direct else ins) + outs
        for n, b in k.kernel.inputs:
            s = prod.get(n)
            if (s is None or not bl[s]) and not direct and n not in seen: seen.add(n); change_kb += b / 1024
        for n, b in k.kernel.outputs:
            if not readers.get(n) or any(not bl[j] for j in readers[n]): change_kb += b / 1024
    wkb = sum(k.kernel.weight_bytes for k in ks) / 1024
    return [preds, alone_kb, change_kb, wkb, len(ks)]
reg = load_registry("/work/main/devices.yaml"); spec = reg.get("host-cpu")
ts = training_set(SqliteStore("/tmp/hostacc3/hwfarm.db"), spec)
g, y, _, names = ts.subset(True)
p = KernelLevelPredictor(rules=ts.rules, threads=ts.threads).fit(g, y)
def rows(graphs):
    pr = p.predict(graphs); F = []
    for gr, q in zip(graphs, pr):
        ks = detect_kernels(gr, ts.rules); F.append(feats(ks, p, q - p.base_ms))
    return np.array(F), pr
# calibration + test measured in /tmp/cal
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cal, test = [], []
for r in recs:
    m = r["model"]; med = r["latency_ms"]
    sub = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("-") else "sw"
    name = m.split("/")[-1]
    if "/cal/" in m:
        if name[0] in sub: cal.append((m, med))
    else: test.append((m, med))
print(len(cal), len(test))
Gc = [load_onnx_graph(m) for m, _ in cal]; yc = np.array([v for _, v in cal])
Gt = [load_onnx_graph(m) for m, _ in test]; yt = np.array([v for _, v in test])
Fc, pc = rows(Gc); Ft, pt = rows(Gt)
print("uncorrected cal", accuracy_metrics(pc, yc)["acc10"], "test", accuracy_metrics(pt, yt))
for cols in ([0], [0, 1], [0, 2], [0, 1, 2], [0, 1, 2, 3]):
    A = Fc[:, cols]; w = 1 / yc
    coef = np.linalg.lstsq(A * w[:, None], (yc - p.base_ms) * w, rcond=None)[0]
    qt = Ft[:, cols] @ coef + p.base_ms; qc = A @ coef + p.base_ms
    mt = accuracy_metrics(qt, yt); mc = accuracy_metrics(qc, yc)
    print(cols, np.round(coef, 5), f"cal acc10 {mc['acc10']:.2f} test acc10 {mt['acc10']:.2f} med {mt['median_ape']:.3f}")
    if "-v" in sys.argv and cols == [0, 1, 2]:
        for (m, _), a, b in zip(test, qt, yt): print(f"   {m.split('/')[-1][:40]:40s} {b:8.4f} {a/b-1:+.1%}")
if "-c" in sys.argv:
    for (m, _), a, b in zip(cal, pc, yc): print(f"   {m.split('/')[-1][:40]:40s} {b:8.4f} {a/b-1:+.1%}")
    for (m, _), a, b in zip(test, pt, yt): print(f"   {m.split('/')[-1][:40]:40s} {b:8.4f} {a/b-1:+.1%}")
print("--- fixed reorder rate r (ns/KB), scale a fitted on cal or 1")
D = Fc[:, 1] - Fc[:, 2]; Dt = Ft[:, 1] - Ft[:, 2]
for r in (0, 10, 20, 26, 30, 35, 40):
    xc = Fc[:, 0] - r * 1e-6 * D; xt = Ft[:, 0] - r * 1e-6 * Dt
    w = 1 / yc; a = float(np.sum(xc * (yc - p.base_ms) * w * w) / np.sum(xc * xc * w * w))
    m1 = accuracy_metrics(xt + p.base_ms, yt); ma = accuracy_metrics(a * xt + p.base_ms, yt)
    print(f"r {r:3d}: a=1 test acc10 {m1['acc10']:.2f} med {m1['median_ape']:.3f} | a={a:.3f} test acc10 {ma['acc10']:.2f} med {ma['median_ape']:.3f}")
print("--- r fitted on cal, a = 1")
tc = yc - p.base_ms - Fc[:, 0]; wc = 1 / yc
r = float(np.sum(-D * tc * wc * wc) / np.sum(D * D * wc * wc))
qt = Ft[:, 0] - r * Dt + p.base_ms; qc = Fc[:, 0] - r * D + p.base_ms
mt = accuracy_metrics(qt, yt); mc = accuracy_metrics(qc, yc)
print(f"r = {r*1e6:.1f} ns/KB: cal acc10 {mc['acc10']:.2f}, test acc10 {mt['acc10']:.2f} med {mt['median_ape']:.3f}")
for (m, _), a, b in zip(test, qt, yt): print(f"   {m.split('/')[-1][:40]:40s} {b:8.4f} {a/b-1:+.1%}")
