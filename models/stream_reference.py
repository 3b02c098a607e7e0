"""Float64 reference for QuantGraph's streamed per-layer FP32-vs-INT8 metrics.

    py=$(scripts/bench/setup.sh); "$py" models/stream_reference.py

Runs models/resnet8_fp32.onnx (A) and models/resnet8_int8_qdq.onnx (B) with onnxruntime
(CPUExecutionProvider, default session options) on the first 100 images of CIFAR-10
test_batch.bin (float32 NCHW, raw 0-255) as one batch of 100, on copies of both models where
every float node output is also a graph output. It pairs tensors: A's T with B's
T_DequantizeLinear_Output; A's Relu output R with B's T_DequantizeLinear_Output where T is
that Relu's input (a Relu the quantizer folded away); A's model output with B's. For each
pair, in float64 over all 100 samples, it computes sqnr_db = 20 log10(max(|x|, eps) /
max(|x - y|, eps)) (eps = float64 machine epsilon), mse, mae, max_abs, cosine, the same SQNR
per sample, and, where B has the tensor its Q/DQ pair quantizes, qdq_err_db (that SQNR
between B's tensor before and after the Q/DQ pair) and, where A's tensor is a Relu's output
and B's quantized tensor is not (the quantizer removed the Relu: the Q/DQ pair's range does
its clipping), qdq_err_relu_db: the SQNR between max(B's tensor before the pair, 0) and its
Q/DQ output. It also records the top-1 of the unmodified models and the labels. Writes tests/fixtures/stream_reference.json.
The data folder is ../shared/data/cifar10 next to the repository unless QUANTGRAPH_CIFAR10 is set.
"""
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
A, B = ROOT / "models" / "resnet8_fp32.onnx", ROOT / "models" / "resnet8_int8_qdq.onnx"
OUT = ROOT / "tests" / "fixtures" / "stream_reference.json"
CIFAR = Path(os.environ.get("QUANTGRAPH_CIFAR10") or ROOT.parent / "shared" / "data" / "cifar10")
N, RECORD = 100, 1 + 3 * 32 * 32  # CIFAR-10 binary layout: label byte, then R, G, B planes
EPS = np.finfo(np.float64).eps
DQ = "_DequantizeLinear_Output"


def load_images():
    raw = np.fromfile(CIFAR / "test_batch.bin", dtype=np.uint8, count=N * RECORD).reshape(N, RECORD)
    return raw[:, 1:].reshape(N, 3, 32, 32).astype(np.float32), raw[:, 0].astype(int).tolist()


def run(model: onnx.ModelProto, x: np.ndarray) -> dict:
    """All graph outputs of `model` on input x, by name."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"input": x})))


def probed(path: Path, tmp: str) -> onnx.ModelProto:
    """Copy of the model with every float node output (all but QuantizeLinear's) as a graph output."""
    m = onnx.load(str(path))
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        if node.op_type == "QuantizeLinear":
            continue
        for name in node.output:
            if name and name not in have:
                m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
                have.add(name)
    onnx.save(m, os.path.join(tmp, path.name))  # the temp copy, as run
    return m


def sqnr(x, y):
    return float(20 * np.log10(max(np.linalg.norm(x), EPS) / max(np.linalg.norm(x - y), EPS)))


def metrics(x, y):
    d = x - y
    return {"sqnr_db": sqnr(x, y), "mse": float(np.mean(d * d)), "mae": float(np.mean(np.abs(d))),
            "max_abs": float(np.max(np.abs(d))),
            "cosine": float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))}


def main():
    x, labels = load_images()
    a_model, b_model = onnx.load(str(A)), onnx.load(str(B))
    top1_a = run(a_model, x)[a_model.graph.output[0].name].argmax(1).tolist()
    top1_b = run(b_model, x)[b_model.graph.output[0].name].argmax(1).tolist()
    with tempfile.TemporaryDirectory(prefix="stream_reference-") as tmp:
        a_pm, b_pm = probed(A, tmp), probed(B, tmp)
        acts_a, acts_b = run(a_pm, x), run(b_pm, x)
    acts_a["input"] = acts_b["input"] = x
    probed_top1_b = acts_b[b_model.graph.output[0].name].argmax(1).tolist()

    # B's tensor quantized by each Q/DQ pair: DQ output -> its Q node's input.
    producer = {o: n for n in b_pm.graph.node for o in n.output}
    a_producer = {o: n for n in a_model.graph.node for o in n.output}
    def pre_quant(dq_out):
        dq = producer.get(dq_out)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    pairs = []  # (a, b) in A's graph order
    for t in ["input"] + [o for n in a_model.graph.node for o in n.output]:
        if t + DQ in acts_b:
            pairs.append((t, t + DQ))
    for n in a_model.graph.node:  # Relu folded into the producer's Q/DQ pair in B
        if n.op_type == "Relu" and n.input[0] + DQ in acts_b:
            pairs.append((n.output[0], n.input[0] + DQ))
    pairs.append((a_model.graph.output[0].name, b_model.graph.output[0].name))

    out = []
    for a, b in dict.fromkeys(pairs):
        xa, yb = acts_a[a].astype(np.float64), acts_b[b].astype(np.float64)
        entry = {"a": a, "b": b, **metrics(xa.ravel(), yb.ravel())}
        pre = pre_quant(b)
        if pre is not None and pre in acts_b:
            entry["qdq_err_db"] = sqnr(acts_b[pre].astype(np.float64).ravel(), yb.ravel())
            a_relu = getattr(a_producer.get(a), "op_type", None) == "Relu"
            b_relu = getattr(producer.get(pre), "op_type", None) in ("Relu", "Clip")
            if a_relu and not b_relu:
                entry["qdq_err_relu_db"] = sqnr(np.maximum(acts_b[pre].astype(np.float64), 0).ravel(), yb.ravel())
        entry["per_sample_sqnr_db"] = [sqnr(xa[i].ravel(), yb[i].ravel()) for i in range(N)]
        out.append(entry)

    OUT.write_text(json.dumps({
        "images": "first 100 of test_batch.bin, raw 0-255 NCHW", "onnxruntime": ort.__version__,
        "a": A.name, "b": B.name, "top1_a": top1_a, "top1_b": top1_b, "labels": labels, "pairs": out,
    }, indent=1) + "\n")
    same = sum(p == q for p, q in zip(top1_b, probed_top1_b))
    print(f"{OUT.relative_to(ROOT)}: {len(out)} pairs; top1 of B unmodified vs probed agree on {same}/{N}")
    for e in out:
        print(f"  {e['a']:<36} {e['b']:<52} {e['sqnr_db']:8.3f} dB  qdq {e.get('qdq_err_db', float('nan')):8.3f}"
              f"  relu-corrected {e.get('qdq_err_relu_db', float('nan')):8.3f}")


if __name__ == "__main__":
    main()
