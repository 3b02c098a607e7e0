"""Reference benchmark for the Sensitivity Sweep: the same sweep as a plain Python onnxruntime loop.

    py=$(scripts/bench/setup.sh)
    "$py" scripts/bench/sensitivity_loop.py --images 500 --batch 64

Groups the quantizers of models/resnet8_int8_qdq.onnx per layer, as QuantGraph's Sensitivity
Sweep does: each op that is not QuantizeLinear/DequantizeLinear and reads a DequantizeLinear
output owns those quantizers (activation inputs, weight, bias); a DequantizeLinear that makes a
graph output belongs to the op that made the value its QuantizeLinear read. A group is removed
by rewiring its op to the float value: the tensor the QuantizeLinear read (through a new Relu
where that Q's zero point is the type's minimum: the Q/DQ pair did a folded Relu's clipping),
or the FP32 model's initializer of the same name without `_quantized` (added as
`<name>__fp32`); an output DequantizeLinear becomes an Identity of the float value. Nodes left
without consumers (the removed Q/DQ pairs) are pruned with the initializers only they read, as
QuantGraph prunes them.

On the first N images of CIFAR-10 test_batch.bin (float32 NCHW, raw 0-255), in batches of B,
with one onnxruntime session per model (CPUExecutionProvider, default options): the FP32 model
(the reference logits), the full INT8 model, and per group "only this group quantized" (every
other group removed) and "all but this group" (this group removed), each scored by top-1
accuracy, top-1 agreement with FP32 and output SQNR against FP32 (float64 over all logits).
Prints a row per layer, then `python sensitivity loop: N images, G groups, V variants, T s`,
where V counts the INT8 models run (full + 2 per group) and T is the wall time of the whole
sweep: loading and grouping the models, building every variant, the FP32 reference run and all
variant runs (not reading the images).
"""
import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent.parent
RECORD = 1 + 3 * 32 * 32  # CIFAR-10 binary layout: label byte, then R, G, B planes
EPS = np.finfo(np.float64).eps
TYPE_MIN = {onnx.TensorProto.INT8: -128, onnx.TensorProto.UINT8: 0, onnx.TensorProto.INT16: -32768,
            onnx.TensorProto.UINT16: 0}


def load_images(cifar: Path, n: int):
    """First n images of test_batch.bin as float32 [n, 3, 32, 32], raw 0-255, and their labels."""
    raw = np.fromfile(cifar / "test_batch.bin", dtype=np.uint8, count=n * RECORD)
    if raw.size != n * RECORD:
        sys.exit(f"{cifar / 'test_batch.bin'} holds fewer than {n} images")
    raw = raw.reshape(n, RECORD)
    return raw[:, 1:].reshape(n, 3, 32, 32).astype(np.float32), raw[:, 0].astype(np.int64)


class Group:
    def __init__(self, name, op_type):
        self.name, self.op_type = name, op_type
        self.rewires = []     # (node name, input index, float tensor)
        self.inits = {}       # float initializers it adds, by name
        self.relus = {}       # Relu output -> Relu input
        self.identities = {}  # output DequantizeLinear name -> float tensor its Identity reads


def group_model(qdq: onnx.ModelProto, fp32: onnx.ModelProto) -> list:
    g = qdq.graph
    inits = {t.name: t for t in g.initializer}
    fp32_inits = {t.name: t for t in fp32.graph.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def activation(q, grp):
        x = q.input[0]
        zp = inits.get(q.input[2]) if len(q.input) > 2 else None
        if zp is not None and int(numpy_helper.to_array(zp).reshape(-1)[0]) == TYPE_MIN.get(zp.data_type):
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
            src = dq.input[0]
            q = producer.get(src)
            if q is not None and q.op_type == "QuantizeLinear":
                grp = groups.setdefault(n.name, Group(n.name, n.op_type))
                f = activation(q, grp)
            elif src in inits:
                base = src[:-len("_quantized")] if src.endswith("_quantized") else src
                t = fp32_inits.get(base)
                if t is None or list(t.dims) != list(inits[src].dims):
                    print(f"note: '{src}' ({n.name} input {i}) stays quantized: no FP32 initializer '{base}' "
                          "of its shape", file=sys.stderr)
                    continue
                grp = groups.setdefault(n.name, Group(n.name, n.op_type))
                w = copy.deepcopy(t)
                w.name = f = base + "__fp32"
                grp.inits[f] = w
            else:
                continue
            grp.rewires.append((n.name, i, f))
    outputs = {o.name for o in g.output}
    for dq in g.node:
        if dq.op_type != "DequantizeLinear" or dq.output[0] not in outputs:
            continue
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        maker = producer.get(q.input[0])
        key = maker.name if maker is not None else q.input[0]
        grp = groups.setdefault(key, Group(key, maker.op_type if maker is not None else ""))
        grp.identities[dq.name] = activation(q, grp)
    return list(groups.values())


def without(qdq: onnx.ModelProto, removed) -> bytes:
    """The QDQ model with the given groups removed, serialized."""
    if not removed:
        return qdq.SerializeToString()
    m = copy.deepcopy(qdq)
    g = m.graph
    rewire = {(node, i): f for grp in removed for node, i, f in grp.rewires}
    relus = {out: x for grp in removed for out, x in grp.relus.items()}
    identities = {dq: f for grp in removed for dq, f in grp.identities.items()}
    new_inits = {name: t for grp in removed for name, t in grp.inits.items()}
    made = {o for n in g.node for o in n.output}
    nodes = [helper.make_node("Relu", [x], [out], name=out + "_node") for out, x in relus.items() if x not in made]
    for n in map(copy.deepcopy, g.node):
        if n.name in identities:
            n = helper.make_node("Identity", [identities[n.name]], list(n.output), name=n.name)
        else:
            for i in range(len(n.input)):
                n.input[i] = rewire.get((n.name, i), n.input[i])
        nodes.append(n)
        nodes += [helper.make_node("Relu", [x], [out], name=out + "_node") for out, x in relus.items()
                  if x in n.output]
    g.initializer.extend(new_inits.values())
    # Nodes left without consumers (the removed Q/DQ pairs) are pruned, with the initializers
    # only they read, as QuantGraph prunes them: both sides run the same graphs.
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
    return m.SerializeToString()


def run(model_bytes: bytes, x: np.ndarray, batch: int) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name, out = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    return np.concatenate([sess.run([out], {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


class Score:
    def __init__(self, logits, labels, ref, ref_top1):
        top1 = logits.argmax(axis=1)
        self.acc = 100.0 * float((top1 == labels).mean())
        self.agree = 100.0 * float((top1 == ref_top1).mean())
        d = ref.astype(np.float64) - logits.astype(np.float64)
        x2 = float(np.square(ref, dtype=np.float64).sum())
        self.sqnr = 20 * math.log10(max(math.sqrt(x2), EPS) / max(math.sqrt(float((d * d).sum())), EPS))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--fp32", type=Path, default=ROOT / "models" / "resnet8_fp32.onnx")
    ap.add_argument("--qdq", type=Path, default=ROOT / "models" / "resnet8_int8_qdq.onnx")
    ap.add_argument("--cifar", type=Path,
                    default=Path(os.environ.get("QUANTGRAPH_CIFAR10") or ROOT.parent / "shared" / "data" / "cifar10"))
    args = ap.parse_args()
    x, labels = load_images(args.cifar, args.images)

    t0 = time.perf_counter()
    fp32, qdq = onnx.load(str(args.fp32)), onnx.load(str(args.qdq))
    groups = group_model(qdq, fp32)
    ref = run(fp32.SerializeToString(), x, args.batch)
    ref_top1 = ref.argmax(axis=1)
    fp32_acc = 100.0 * float((ref_top1 == labels).mean())
    full = Score(run(without(qdq, []), x, args.batch), labels, ref, ref_top1)
    variants = 1
    rows = []
    for g in groups:
        only = Score(run(without(qdq, [o for o in groups if o is not g]), x, args.batch), labels, ref, ref_top1)
        all_but = Score(run(without(qdq, [g]), x, args.batch), labels, ref, ref_top1)
        variants += 2
        rows.append((g, only, all_but))
    secs = time.perf_counter() - t0

    print(f"FP32 {fp32_acc:.2f} %, INT8 {full.acc:.2f} % (agree {full.agree:.2f} %, {full.sqnr:.2f} dB)")
    w = max(len(g.name) for g in groups)
    print(f"{'layer':<{w}}  {'op':<17} {'only acc':>8} {'agree':>6} {'dB':>6}   {'all-but acc':>11} {'agree':>6} "
          f"{'dB':>6} {'gain pt':>7}")
    for g, only, all_but in rows:
        print(f"{g.name:<{w}}  {g.op_type:<17} {only.acc:8.2f} {only.agree:6.2f} {only.sqnr:6.2f}   "
              f"{all_but.acc:11.2f} {all_but.agree:6.2f} {all_but.sqnr:6.2f} {all_but.acc - full.acc:7.2f}")
    print(f"python sensitivity loop: {args.images} images, {len(groups)} groups, {variants} variants, {secs:.2f} s")


if __name__ == "__main__":
    main()
