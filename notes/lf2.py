import sys; sys.path.insert(0, "/tmp/exp"); sys.path.insert(0, "/work/main")
from layout2 import analyse
from farm.onnx_graph import load_onnx_graph
from farm.registry import load_registry
from farm.store import SqliteStore
from predictors.kernels import detect_kernels, fusion_rules_for
rules = fusion_rules_for(load_registry("/work/main/devices.yaml").get("host-cpu"), SqliteStore("/tmp/hostacc3/hwfarm.db"))
for n in sys.argv[1:]:
    ks = detect_kernels(load_onnx_graph(n), rules); a = analyse(ks)
    print(n.split("/")[-1][:40], {k: round(v) for k, v in a.items()}, f"lone {a['alone_kb']*29e-6:.4f} in-net {a['change_kb']*29e-6:.4f} ms")
