"""Independent reference for QuantGraph's Sensitivity Sweep (plugins/onnx/src/sensitivity.rs).

    .cache/bench-venv/bin/python models/sensitivity_reference.py

Builds, with the onnx Python API only (nothing from the Rust code), variants of
models/resnet8_int8_qdq.onnx in which groups of quantizers are removed, runs them with
onnxruntime (CPUExecutionProvider, default session options, batch 64) on the first 500
images of CIFAR-10 test_batch.bin (float32 NCHW, raw 0-255) and writes
tests/fixtures/sensitivity_reference.json.

Groups, per layer: every op that is not QuantizeLinear/DequantizeLinear and reads the output
of a DequantizeLinear owns that quantizer (its activation inputs, its weight, its bias); a
DequantizeLinear that makes a graph output belongs to the op that made the value its
QuantizeLinear read. Removing a group:

* activation input: the op reads the tensor the QuantizeLinear read instead of the
  DequantizeLinear output; where that QuantizeLinear's zero point is the type's minimum
  (int8 -128 / uint8 0) the Q/DQ pair did the clipping of a Relu the quantizer folded away,
  so the op reads a new Relu of that tensor (one Relu per tensor, shared);
* weight / bias: the op reads the FP32 model's initializer of the same name without the
  `_quantized` suffix, added under a new name `<name>__fp32` (the bias DequantizeLinear's
  output already carries the FP32 name, e.g. `onnx::Conv_87`);
* graph output: its DequantizeLinear becomes an Identity of the float value.

Nodes left without consumers (the removed Q/DQ pairs) are pruned, with the initializers only
they read, as QuantGraph prunes them (the figures are of these models); "dead_nodes_kept"
records how far the logits move when they are left in instead (they block some of ONNX
Runtime's fusions: up to ~1e-3 in a logit). Variants: for /stage3/conv1/Conv and /conv0/Conv,
"only" (every other group removed) and "all_but" (only this group removed); plus every group
removed ("all_removed") and the unmodified QDQ model ("int8").

Per model: correct top-1 count, agreement of top-1 with the FP32 model, top1_sha (sha256 of
the 500 top-1 class indices as one uint8 each, in image order) and output_sqnr_db = 20
log10(max(||x||, eps) / max(||x - y||, eps)) in float64 over all 500 x 10 logits (x: FP32,
eps: float64 machine epsilon). Deterministic: rerunning writes the same file.
The data folder is ../shared/data/cifar10 next to the repository unless QUANTGRAPH_CIFAR10 is set.
"""
import copy
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
FP32, QDQ = ROOT / "models" / "resnet8_fp32.onnx", ROOT / "models" / "resnet8_int8_qdq.onnx"
OUT = ROOT / "tests" / "fixtures" / "sensitivity_reference.json"
CIFAR = Path(os.environ.get("QUANTGRAPH_CIFAR10") or ROOT.parent / "shared" / "data" / "cifar10")
N, BATCH, RECORD = 500, 64, 1 + 3 * 32 * 32  # CIFAR-10 binary layout: label byte, then R, G, B planes
LAYERS = ["/stage3/conv1/Conv", "/conv0/Conv"]
EPS = np.finfo(np.float64).eps
TYPE_MIN = {onnx.TensorProto.INT8: -128, onnx.TensorProto.UINT8: 0, onnx.TensorProto.INT16: -32768,
            onnx.TensorProto.UINT16: 0}


def load_images():
    raw = np.fromfile(CIFAR / "test_batch.bin", dtype=np.uint8, count=N * RECORD)
    assert raw.size == N * RECORD, f"{CIFAR / 'test_batch.bin'} holds fewer than {N} images"
    raw = raw.reshape(N, RECORD)
    return raw[:, 1:].reshape(N, 3, 32, 32).astype(np.float32), raw[:, 0].astype(np.int64)


class Group:
    def __init__(self, name, op_type):
        self.name, self.op_type = name, op_type
        self.rewires = []     # (node name, input index, float tensor name)
        self.inits = {}       # new float initializers by name
        self.relus = {}       # Relu output name -> its input
        self.identities = {}  # name of an output DequantizeLinear -> float tensor its Identity reads
        self.quantizers = []  # what it quantizes (for the printout)


def group_model(qdq: onnx.ModelProto, fp32: onnx.ModelProto) -> dict:
    g = qdq.graph
    inits = {t.name: t for t in g.initializer}
    fp32_inits = {t.name: t for t in fp32.graph.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def clips_at_zero(q):
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        return zp is not None and int(numpy_helper.to_array(zp).reshape(-1)[0]) == TYPE_MIN.get(zp.data_type)

    def float_of_activation(q, grp):
        x = q.input[0]
        if clips_at_zero(q):
            grp.relus[x + "__relu"] = x
            return x + "__relu"
        return x

    groups = {}
    for n in g.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(n.input):
            dq = producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            grp = groups.setdefault(n.name, Group(n.name, n.op_type))
            src = dq.input[0]
            q = producer.get(src)
            if q is not None and q.op_type == "QuantizeLinear":
                f = float_of_activation(q, grp)
                grp.quantizers.append(q.input[0])
            else:
                assert src in inits, f"{n.name} input {i}: DequantizeLinear of neither a Q nor an initializer"
                base = src[:-len("_quantized")] if src.endswith("_quantized") else src
                t = fp32_inits[base]
                assert list(t.dims) == list(inits[src].dims), (base, t.dims, inits[src].dims)
                w = copy.deepcopy(t)
                w.name = f = base + "__fp32"
                grp.inits[f] = w
                grp.quantizers.append(base)
            grp.rewires.append((n.name, i, f))
    outputs = {o.name for o in g.output}
    for dq in g.node:
        if dq.op_type != "DequantizeLinear" or dq.output[0] not in outputs:
            continue
        q = producer[dq.input[0]]
        assert q.op_type == "QuantizeLinear"
        maker = producer[q.input[0]]
        grp = groups.setdefault(maker.name, Group(maker.name, maker.op_type))
        grp.identities[dq.name] = float_of_activation(q, grp)
        grp.quantizers.append(q.input[0])
    return groups


def without(qdq: onnx.ModelProto, removed, prune=False) -> onnx.ModelProto:
    """A copy of the QDQ model with the given groups removed."""
    m = copy.deepcopy(qdq)
    g = m.graph
    rewire = {(node, i): f for grp in removed for node, i, f in grp.rewires}
    relus = {out: x for grp in removed for out, x in grp.relus.items()}
    identities = {dq: f for grp in removed for dq, f in grp.identities.items()}
    new_inits = {name: t for grp in removed for name, t in grp.inits.items()}
    graph_inputs = {i.name for i in g.input}
    nodes = [helper.make_node("Relu", [x], [out], name=out + "_node") for out, x in sorted(relus.items())
             if x in graph_inputs]
    for n in map(copy.deepcopy, g.node):
        if n.name in identities:
            n = helper.make_node("Identity", [identities[n.name]], list(n.output), name=n.name)
        else:
            for i in range(len(n.input)):
                if (n.name, i) in rewire:
                    n.input[i] = rewire[(n.name, i)]
        nodes.append(n)
        # a Relu right after the node that makes its input, so the graph stays sorted
        nodes += [helper.make_node("Relu", [x], [out], name=out + "_node") for out, x in sorted(relus.items())
                  if x in n.output]
    g.initializer.extend(new_inits[k] for k in sorted(new_inits))
    if prune:
        keep = {o.name for o in g.output}
        alive = []
        for n in reversed(nodes):
            if any(o in keep for o in n.output):
                alive.append(n)
                keep.update(n.input)
        nodes = alive[::-1]
        used = [t for t in g.initializer if t.name in keep]
        del g.initializer[:]
        g.initializer.extend(used)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(["logits"], {name: x[i:i + BATCH]})[0] for i in range(0, len(x), BATCH)])


def scores(logits, labels, ref_logits, ref_top1):
    top1 = logits.argmax(axis=1)
    x, y = ref_logits.astype(np.float64), logits.astype(np.float64)
    sqnr = 20 * math.log10(max(math.sqrt(float((x * x).sum())), EPS) / max(math.sqrt(float(((x - y) ** 2).sum())), EPS))
    return {"correct": int((top1 == labels).sum()), "agree_with_fp32": int((top1 == ref_top1).sum()),
            "output_sqnr_db": round(sqnr, 6),
            "top1_sha": hashlib.sha256(top1.astype(np.uint8).tobytes()).hexdigest()}


def main():
    x, labels = load_images()
    fp32, qdq = onnx.load(str(FP32)), onnx.load(str(QDQ))
    names = {n.name for n in qdq.graph.node}
    for layer in LAYERS:
        assert layer in names, f"no node '{layer}' in {QDQ.name}"
    groups = group_model(qdq, fp32)
    all_groups = list(groups.values())

    ref = run(fp32, x)
    ref_top1 = ref.argmax(axis=1)
    fp32_s = scores(ref, labels, ref, ref_top1)
    int8_s = scores(run(qdq, x), labels, ref, ref_top1)

    variants, pruned_diff, pruned_same_top1 = [], 0.0, True
    for layer in LAYERS:
        for variant, removed in [("only", [g for g in all_groups if g.name != layer]), ("all_but", [groups[layer]])]:
            pruned = run(without(qdq, removed, prune=True), x)
            kept = run(without(qdq, removed), x)
            pruned_diff = max(pruned_diff, float(np.abs(pruned - kept).max()))
            pruned_same_top1 &= bool(np.array_equal(pruned.argmax(axis=1), kept.argmax(axis=1)))
            variants.append({"layer": layer, "variant": variant, **scores(pruned, labels, ref, ref_top1)})
    everything = run(without(qdq, all_groups, prune=True), x)
    everything_kept = run(without(qdq, all_groups), x)
    all_s = scores(everything, labels, ref, ref_top1)
    all_removed = {"correct": all_s["correct"], "agree_with_fp32": all_s["agree_with_fp32"],
                   "top1_sha": all_s["top1_sha"],
                   "max_abs_logit_diff_vs_fp32": float(np.abs(everything - ref).max())}
    pruning = {"what": "the same variants with the nodes left without consumers (removed Q/DQ pairs) kept",
               "variants_max_abs_logit_diff": pruned_diff, "variants_same_top1": pruned_same_top1,
               "all_removed_max_abs_logit_diff_vs_fp32": float(np.abs(everything_kept - ref).max())}

    result = {
        "images": N,
        "dataset": f"first {N} images of test_batch.bin, raw 0-255 NCHW float32, batch {BATCH}",
        "onnxruntime": ort.__version__,
        "top1_sha": "sha256 of the top-1 class indices, one uint8 per image, in image order",
        "output_sqnr_db": "20 log10(max(||fp32||, eps) / max(||fp32 - variant||, eps)), float64, all logits",
        "groups": len(all_groups),
        "group_names": [g.name for g in all_groups],
        "fp32": {"correct": fp32_s["correct"], "top1_sha": fp32_s["top1_sha"]},
        "int8": int8_s,
        "variants": variants,
        "all_removed": all_removed,
        "dead_nodes_kept": pruning,
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")

    print(f"{len(all_groups)} groups (per layer) in {QDQ.name}:")
    for g in all_groups:
        extra = f", {len(g.relus)} Relu" if g.relus else ""
        extra += ", output DQ -> Identity" if g.identities else ""
        print(f"  {g.name:<24} {g.op_type:<18} {', '.join(g.quantizers)}{extra}")
    print(f"\nfirst {N} images of test_batch.bin, batch {BATCH}, onnxruntime {ort.__version__}")
    print(f"{'model':<36} {'correct':>7} {'agree':>6} {'SQNR dB':>8}")
    print(f"{'FP32':<36} {fp32_s['correct']:>7} {N:>6} {'':>8}")
    print(f"{'INT8 QDQ':<36} {int8_s['correct']:>7} {int8_s['agree_with_fp32']:>6} {int8_s['output_sqnr_db']:>8.2f}")
    for v in variants:
        label = f"{'only' if v['variant'] == 'only' else 'all but'} {v['layer']}"
        print(f"{label:<36} {v['correct']:>7} {v['agree_with_fp32']:>6} {v['output_sqnr_db']:>8.2f}")
    print(f"{'all groups removed':<36} {all_removed['correct']:>7} {all_removed['agree_with_fp32']:>6} "
          f"{'':>8}  max |logit - FP32| = {all_removed['max_abs_logit_diff_vs_fp32']:.3g}")
    print(f"with the dead Q/DQ nodes kept: variants' logits differ by up to {pruned_diff:.3g} "
          f"(same top-1: {pruned_same_top1}); all removed vs FP32 {pruning['all_removed_max_abs_logit_diff_vs_fp32']:.3g}")
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
