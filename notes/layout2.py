"""A closer replica of onnxruntime's NCHWc pass (as observed in its optimized graphs on this host)."""
BLOCK = 16
def _cin(k):
    h = k.nodes[0]
    return h.inputs[0].shape[1] if h.inputs and len(h.inputs[0].shape) == 4 else None
def analyse(ks, block=BLOCK):
    prod, readers = {}, {}
    for i, k in enumerate(ks):
        for n, _ in k.kernel.outputs: prod[n] = i
        for n, _ in k.kernel.inputs: readers.setdefault(n, []).append(i)
    bl = [False] * len(ks)
    for i, k in enumerate(ks):
        t = k.type; c = _cin(k); srcs = [prod.get(n) for n, _ in k.kernel.inputs]
        if t == "conv":
            g = int(k.nodes[0].attrs.get("group", 1)); bl[i] = g == 1 and (c is None or c >= 1)
            if c is not None and c < 4: bl[i] = False  # ORT keeps the RGB stem conv plain here? (observed: one ai.onnx Conv in FBNet)
        elif t == "dwconv":
            bl[i] = True
        elif t in ("pool", "gpool"):
            bl[i] = c is not None and c % block == 0 and bool(srcs) and all(s is not None and bl[s] for s in srcs)
        elif t == "eltwise" and len(k.kernel.inputs) == 2 and k.kernel.ops[0] in ("Add", "Sum"):
            # fused into the conv that produces one input (its only reader), when the other input is blocked
            ok = False
            for a, b in ((0, 1), (1, 0)):
                sa, sb = srcs[a], srcs[b]
                if sa is not None and sb is not None and ks[sa].type in ("conv", "dwconv") and bl[sa] and bl[sb] \
                        and len(readers.get(ks[i].kernel.inputs[a][0], [])) == 1:
                    ok = True
            bl[i] = ok
        elif t in ("act",):
            bl[i] = bool(srcs) and all(s is not None and bl[s] for s in srcs)  # runs on whatever layout it gets
        else:
            bl[i] = False
    alone_kb = change_kb = 0.0; n_in = n_out = 0; seen = set()
    for i, k in enumerate(ks):
        if not bl[i] or k.type == "act": continue
        ins = sum(b for _, b in k.kernel.inputs) / 1024; outs = sum(b for _, b in k.kernel.outputs) / 1024
        alone_kb += ins + outs
        for n, b in k.kernel.inputs:
            s = prod.get(n)
            if (s is None or not bl[s]) and n not in seen: seen.add(n); change_kb += b / 1024; n_in += 1
        for n, b in k.kernel.outputs:
            if not readers.get(n) or any(not bl[j] for j in readers[n]): change_kb += b / 1024; n_out += 1
    return {"alone_kb": alone_kb, "change_kb": change_kb, "n_in": n_in, "n_out": n_out, "blocked": sum(bl)}
