"""Per-kernel cost inside a network vs alone, from onnxruntime's profiler (same profiling overhead in both)."""
import sys, os, json, collections, numpy as np, onnx, onnx.utils, onnxruntime as ort
sys.path.insert(0, "/work/main")
from farm.onnx_graph import load_onnx_graph
from farm.registry import load_registry
from farm.store import SqliteStore
from predictors.kernels import detect_kernels, fusion_rules_for
def profile(path, runs):
    o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1; o.log_severity_level = 3
    o.add_session_config_entry("session.intra_op.allow_spinning", "1")
    o.enable_profiling = True; o.profile_file_prefix = "/tmp/exp/prof2"
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.rand(*i.shape).astype(np.float32) for i in s.get_inputs()}
    for _ in range(runs): s.run(None, feeds)
    pf = s.end_profiling(); ev = json.load(open(pf)); os.remove(pf)
    d = collections.defaultdict(list)
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            d[(e["name"][:-12], e["args"].get("op_name"))].append(e["dur"])
    return {k: float(np.mean(sorted(v[runs // 5:])[: int(len(v[runs // 5:]) * 0.8)])) for k, v in d.items()}
net = sys.argv[1]; runs = int(sys.argv[2]) if len(sys.argv) > 2 else 200
store = SqliteStore(sys.argv[3] if len(sys.argv) > 3 else "/tmp/hostacc3/hwfarm.db")
rules = fusion_rules_for(load_registry("/work/main/devices.yaml").get("host-cpu"), store)
g = load_onnx_graph(net); ks = detect_kernels(g, rules)
np_ = profile(net, runs)
os.makedirs("/tmp/exp/p2", exist_ok=True)
owner = {}; rows = []
init = {i.name for i in onnx.load(net).graph.initializer}
for i, k in enumerate(ks):
    ins = [n for n, _ in k.kernel.inputs if n not in init]; outs = [n for n, _ in k.kernel.outputs]
    p = f"/tmp/exp/p2/k{i}.onnx"
    try: onnx.utils.extract_model(net, p, ins, outs)
    except Exception as e: rows.append((k, None, 0, 0)); continue
    a = profile(p, runs)
    own = sum(v for (n, op), v in a.items() if not op.startswith("Reorder"))
    reo = sum(v for (n, op), v in a.items() if op.startswith("Reorder"))
    for (n, op) in a:
        if not op.startswith("Reorder"): owner[n] = i
    rows.append((k, a, own, reo))
innet = collections.defaultdict(float); other = 0.0; reo_net = 0.0
for (n, op), v in np_.items():
    if op.startswith("Reorder"): reo_net += v
    elif n in owner: innet[owner[n]] += v
    else: other += v
print(f"{'kernel':34s} {'type':7s} {'KB':>7s} {'wKB':>7s} {'alone':>7s} {'reord':>6s} {'innet':>7s} ratio")
sa = sn = 0
for i, (k, a, own, reo) in enumerate(rows):
    kb = sum(b for _, b in k.kernel.inputs + k.kernel.outputs) / 1024; wkb = k.kernel.bytes / 1024 - kb
    sa += own; sn += innet[i]
    print(f"{k.name[:34]:34s} {k.type:7s} {kb:7.0f} {wkb:7.0f} {own:7.1f} {reo:6.1f} {innet[i]:7.1f} {innet[i]/own if own else 0:.2f}")
print(f"sum alone own {sa:.1f} us, in-net {sn:.1f} us ({sn/sa:.3f}), unmatched in-net {other:.1f}, in-net reorders {reo_net:.1f}, total nodes {sum(np_.values()):.1f}")
