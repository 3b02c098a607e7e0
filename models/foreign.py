"""Fixtures for "models from other exporters": the ResNet8 in forms QuantGraph did not make.

    .cache/bench-venv/bin/python models/foreign.py

Needs numpy, onnx and onnxruntime (incl. onnxruntime.quantization); no PyTorch. Writes
tests/fixtures/foreign/:

* resnet8_qop.onnx             our FP32 model, quantize_static QOperator (QLinearConv, QLinearAdd, ...)
* resnet8_perchannel_qdq.onnx  our FP32 model, quantize_static QDQ with per-channel weights
* foreign_fp32.onnx            our FP32 model rebuilt by graph surgery to look like a tf2onnx export:
                               Conv + unfolded BatchNormalization, shortcut branches listed first and
                               Add inputs swapped, TF-style names, NHWC input "input_1" with a
                               Transpose, Transpose pairs around a Relu and an Add+Relu, Reshape +
                               MatMul + Add instead of Flatten + Gemm, no value_info
* foreign_int8_qdq.onnx        foreign_fp32 quantized (QDQ, per-tensor s8s8), no value_info
* foreign_int8in_qdq.onnx      foreign_int8_qdq with an int8 NHWC input "input_q" (pixel - 128)
                               and DequantizeLinear(1.0, -128) in front
* reference.json               Python onnxruntime on the first 64 test images: correct counts,
                               predictions, and the per-layer correspondence (ground truth from the
                               construction) with SQNR / cosine per pair of models
* MANIFEST.json                sha256, size and what each file is

Calibration as models/quantize.py: MinMax, the first 1000 images of data_batch_1.bin (NHWC for
the foreign model). Nothing derived from the pixels is written except model files, counts,
predictions and dB / cosine figures. Deterministic (fixed seed; the quantizer is deterministic).
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cifar import data_dir, read_batch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "tests" / "fixtures" / "foreign"
BUILD = HERE / "build" / "foreign"
FP32 = HERE / "resnet8_fp32.onnx"
SEED = 20240611
CALIB = 1000
N_REF = 64
EPS = 1e-3  # Keras' BatchNormalization default


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


class Reader(CalibrationDataReader):
    def __init__(self, images: np.ndarray, name: str, batch: int = 50):
        self.batches = [images[i:i + batch].astype(np.float32) for i in range(0, len(images), batch)]
        self.name, self.i = name, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}


# ---------------------------------------------------------------------------------------------
# Our FP32 model: the layers, each with its post-activation tensor (the comparison points).

def our_layers():
    """(key, our post-activation tensor) in graph order; keys are shared with the foreign model."""
    return [
        ("conv0", "/Relu_output_0"),
        ("stage1.conv1", "/stage1/Relu_output_0"),
        ("stage1.conv2", "/stage1/conv2/Conv_output_0"),
        ("stage1.add", "/stage1/Relu_1_output_0"),
        ("stage2.conv1", "/stage2/Relu_output_0"),
        ("stage2.conv2", "/stage2/conv2/Conv_output_0"),
        ("stage2.shortcut", "/stage2/shortcut/Conv_output_0"),
        ("stage2.add", "/stage2/Relu_1_output_0"),
        ("stage3.conv1", "/stage3/Relu_output_0"),
        ("stage3.conv2", "/stage3/conv2/Conv_output_0"),
        ("stage3.shortcut", "/stage3/shortcut/Conv_output_0"),
        ("stage3.add", "/stage3/Relu_1_output_0"),
        ("pool", "/GlobalAveragePool_output_0"),
        ("logits", "logits"),
    ]


# ---------------------------------------------------------------------------------------------
# foreign_fp32.onnx: graph surgery.

def build_foreign(fp32: onnx.ModelProto, rng: np.random.Generator):
    """Returns (model, {layer key: (tensor name, layout)}) where layout is "same" or "nhwc"."""
    g = fp32.graph
    W = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    convs = {n.name: n for n in g.node if n.op_type == "Conv"}
    gemm = next(n for n in g.node if n.op_type == "Gemm")

    nodes, inits, layers = [], [], {}
    counter = [0]

    def tf_suffix():  # tf2onnx appends __<n> to the nodes it inserts
        counter[0] += 1
        return f"__{counter[0] + 40}"

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def conv_bn(our_conv: str, k: int, x: str) -> str:
        """Conv (no bias) + BatchNormalization computing exactly our (BN-folded) conv."""
        n = convs[our_conv]
        w = W[n.input[1]].astype(np.float64)
        b = W[n.input[2]].astype(np.float64)
        c = w.shape[0]
        gamma = rng.uniform(0.5, 2.0, c)
        var = rng.uniform(0.25, 4.0, c)
        mean = rng.normal(0.0, 0.5, c)
        s = gamma / np.sqrt(var + EPS)
        # BN(z) = s * (z - mean) + beta with z = conv(x, w / s): equals conv(x, w) + b for beta = b + s * mean
        beta = b + s * mean
        conv_name = "model/conv2d" + (f"_{k}" if k else "")
        bn_name = "model/batch_normalization" + (f"_{k}" if k else "")
        wn = init(f"{conv_name}/Conv2D/ReadVariableOp:0", (w / s[:, None, None, None]).astype(np.float32))
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        nodes.append(helper.make_node("Conv", [x, wn], [f"{conv_name}/Conv2D:0"], name=f"{conv_name}/Conv2D", **attrs))
        bn_in = [
            f"{conv_name}/Conv2D:0",
            init(f"{bn_name}/ReadVariableOp:0", gamma.astype(np.float32)),
            init(f"{bn_name}/ReadVariableOp_1:0", beta.astype(np.float32)),
            init(f"{bn_name}/FusedBatchNormV3/ReadVariableOp:0", mean.astype(np.float32)),
            init(f"{bn_name}/FusedBatchNormV3/ReadVariableOp_1:0", var.astype(np.float32)),
        ]
        out = f"{bn_name}/FusedBatchNormV3:0"
        nodes.append(helper.make_node("BatchNormalization", bn_in, [out], name=f"{bn_name}/FusedBatchNormV3",
                                      epsilon=EPS, momentum=0.99))
        return out

    def relu(k: int, x: str) -> str:
        name = "model/activation" + (f"_{k}" if k else "") + "/Relu"
        nodes.append(helper.make_node("Relu", [x], [name + ":0"], name=name))
        return name + ":0"

    def transpose(base: str, x: str, perm) -> str:
        name = base + tf_suffix()
        nodes.append(helper.make_node("Transpose", [x], [name + ":0"], name=name, perm=perm))
        return name + ":0"

    def add(k: int, a: str, b: str) -> str:
        name = "model/add" + (f"_{k}" if k else "") + "/add"
        nodes.append(helper.make_node("Add", [a, b], [name + ":0"], name=name))
        return name + ":0"

    TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
    x = transpose("model/conv2d/Conv2D", "input_1", TO_NCHW)
    x = relu(0, conv_bn("/conv0/Conv", 0, x))
    layers["conv0"] = (x, "same")

    # stage 1: identity shortcut; Add's inputs swapped (main path first); the Relu after the Add
    # runs in NHWC between two Transposes
    h = relu(1, conv_bn("/stage1/conv1/Conv", 1, x))
    layers["stage1.conv1"] = (h, "same")
    h = conv_bn("/stage1/conv2/Conv", 2, h)
    layers["stage1.conv2"] = (h, "same")
    s = add(0, h, x)
    s = relu(2, transpose("model/activation_2/Relu", s, TO_NHWC))
    layers["stage1.add"] = (s, "nhwc")
    x = transpose("model/activation_2/Relu", s, TO_NCHW)

    # stage 2: shortcut branch first; Add's inputs swapped; Add + Relu in NHWC (both Add inputs
    # transposed to NHWC, the Relu output back to NCHW)
    sc = conv_bn("/stage2/shortcut/Conv", 3, x)
    layers["stage2.shortcut"] = (sc, "same")
    h = relu(3, conv_bn("/stage2/conv1/Conv", 4, x))
    layers["stage2.conv1"] = (h, "same")
    h = conv_bn("/stage2/conv2/Conv", 5, h)
    layers["stage2.conv2"] = (h, "same")
    s = add(1, transpose("model/add_1/add", h, TO_NHWC), transpose("model/add_1/add", sc, TO_NHWC))
    s = relu(4, s)
    layers["stage2.add"] = (s, "nhwc")
    x = transpose("model/activation_4/Relu", s, TO_NCHW)

    # stage 3: shortcut branch first; Add's inputs swapped; all NCHW
    sc = conv_bn("/stage3/shortcut/Conv", 6, x)
    layers["stage3.shortcut"] = (sc, "same")
    h = relu(5, conv_bn("/stage3/conv1/Conv", 7, x))
    layers["stage3.conv1"] = (h, "same")
    h = conv_bn("/stage3/conv2/Conv", 8, h)
    layers["stage3.conv2"] = (h, "same")
    x = relu(6, add(2, h, sc))
    layers["stage3.add"] = (x, "same")

    pool = "model/global_average_pooling2d/Mean:0"
    nodes.append(helper.make_node("GlobalAveragePool", [x], [pool], name="model/global_average_pooling2d/Mean"))
    layers["pool"] = (pool, "same")
    fc_w, fc_b = W[gemm.input[1]], W[gemm.input[2]]  # transB=1: fc_w is [10, 64]
    shape = init("model/flatten/Const:0", np.array([-1, fc_w.shape[1]], dtype=np.int64))
    nodes.append(helper.make_node("Reshape", [pool, shape], ["model/flatten/Reshape:0"], name="model/flatten/Reshape"))
    wm = init("model/dense/MatMul/ReadVariableOp:0", fc_w.T.astype(np.float32))
    nodes.append(helper.make_node("MatMul", ["model/flatten/Reshape:0", wm], ["model/dense/MatMul:0"], name="model/dense/MatMul"))
    bm = init("model/dense/BiasAdd/ReadVariableOp:0", fc_b.astype(np.float32))
    nodes.append(helper.make_node("Add", ["model/dense/MatMul:0", bm], ["dense"], name="model/dense/BiasAdd"))
    layers["logits"] = ("dense", "same")

    graph = helper.make_graph(
        nodes, "model",
        [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__0", 32, 32, 3])],
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["unk__1", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="tf2onnx", producer_version="1.16.1 15c810")
    model.ir_version = 7
    model.doc_string = "QuantGraph fixture (models/foreign.py): our ResNet8 rebuilt to look like a tf2onnx export"
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model, layers


# ---------------------------------------------------------------------------------------------
# The int8-input variant.

def int8_input(qdq: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(qdq)
    g = m.graph
    old = g.input[0]
    assert old.name == "input_1"
    dims = [d for d in old.type.tensor_type.shape.dim]
    new = helper.make_tensor_value_info("input_q", TensorProto.INT8,
                                        [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims])
    g.input.remove(old)
    g.input.insert(0, new)
    g.initializer.extend([numpy_helper.from_array(np.array(1.0, np.float32), "input_q_scale"),
                          numpy_helper.from_array(np.array(-128, np.int8), "input_q_zero_point")])
    g.node.insert(0, helper.make_node("DequantizeLinear", ["input_q", "input_q_scale", "input_q_zero_point"],
                                      ["input_1"], name="input_q_DequantizeLinear"))
    props = {e.key: e.value for e in m.metadata_props}
    props.update({"input_scale": "1.0", "input_zero_point": "-128"})
    helper.set_model_props(m, props)
    onnx.checker.check_model(m, full_check=True)
    return m


# ---------------------------------------------------------------------------------------------
# Running models and finding comparison points.

def session(model, outputs=None):
    """An ORT session over `model` (path or ModelProto) with `outputs` ([(name, elem type)]) added."""
    m = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    if outputs:
        m2 = onnx.ModelProto()
        m2.CopyFrom(m)
        have = {o.name for o in m2.graph.output}
        for name, et in outputs:
            if name not in have:
                m2.graph.output.append(helper.make_tensor_value_info(name, et, None))
                have.add(name)
        m = m2
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if outputs:
        # Capturing intermediates: Q/DQ pairs are not fused into integer kernels, so a tensor's
        # values do not depend on which others are captured (as QuantGraph's probe does).
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def feed_for(path: Path, x_nchw: np.ndarray):
    m = onnx.load(str(path))
    name = m.graph.input[0].name
    if name == "input":
        return {name: x_nchw}
    nhwc = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
    if name == "input_1":
        return {name: nhwc}
    assert name == "input_q"
    return {name: (nhwc - 128).astype(np.int8)}


def float_point(model: onnx.ModelProto, source: onnx.ModelProto, tensor: str):
    """Where a quantized model exposes (a dequantizable view of) the float tensor `tensor` of its
    float source model: ("float", name) for a DequantizeLinear output or a float tensor, or
    ("int8", name, scale, zero point) for a QOperator int8 tensor."""
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    if any(o.name == tensor for o in g.output):
        return ("float", tensor)
    q = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    if len(q) == 1:
        dq = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] == q[0].output[0]]
        if dq:  # QDQ: the DequantizeLinear after the layer's Q
            return ("float", dq[0].output[0])
    # QOperator: the int8 tensor "<tensor>_quantized" made by a QLinear op; output scale / zp
    qname = tensor + "_quantized"
    prod = [n for n in g.node if qname in n.output]
    if not prod:
        # the QOperator quantizer drops a Relu after a Conv / Add and keeps the upstream output's
        # name (the Relu lives on in the output zero point / range)
        relu = [n for n in source.graph.node if n.op_type == "Relu" and n.output[0] == tensor]
        if relu:
            return float_point(model, source, relu[0].input[0])
    if len(prod) == 1:
        n = prod[0]
        if n.op_type in ("QLinearConv", "QLinearAdd", "QGemm", "QLinearMatMul"):
            s, z = n.input[6], n.input[7]
        elif n.op_type == "QLinearGlobalAveragePool":
            s, z = n.input[3], n.input[4]
        else:
            raise RuntimeError(f"no output scale rule for {n.op_type}")
        return ("int8", qname, float(inits[s]), int(inits[z]))
    raise RuntimeError(f"{tensor}: no counterpart found")


def sqnr_cos(a: np.ndarray, b: np.ndarray):
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    noise = float(np.sum((a - b) ** 2))
    sig = float(np.sum(a * a))
    sqnr = 10.0 * np.log10(sig / noise) if noise > 0 else None  # None: bit-identical
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return (float(sqnr) if sqnr is not None else None), cos


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------

def main():
    OUT.mkdir(parents=True, exist_ok=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    train, _ = read_batch(data_dir() / "data_batch_1.bin")
    calib = train[:CALIB].astype(np.float32)
    calib_nhwc = np.ascontiguousarray(calib.transpose(0, 2, 3, 1))

    # 1, 2: our FP32 model quantized in the two other ways ORT offers, preprocessed like quantize.py
    pre = BUILD / "resnet8_fp32_pre.onnx"
    quant_pre_process(str(FP32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(OUT / "resnet8_qop.onnx"), Reader(calib, "input"), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False)
    quantize_static(str(pre), str(OUT / "resnet8_perchannel_qdq.onnx"), Reader(calib, "input"), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)

    # 3: the foreign FP32 model
    ours = onnx.load(str(FP32))
    foreign, foreign_layers = build_foreign(ours, rng)
    onnx.save(foreign, str(OUT / "foreign_fp32.onnx"))

    # 4: quantized as-is (no quant_pre_process: its ORT pass would fold the BatchNormalizations
    # into the Convs and restore value_info); any value_info the quantizer adds is stripped
    quantize_static(str(OUT / "foreign_fp32.onnx"), str(BUILD / "foreign_int8_qdq.onnx"), Reader(calib_nhwc, "input_1"),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=False)
    fq = onnx.load(str(BUILD / "foreign_int8_qdq.onnx"))
    del fq.graph.value_info[:]
    onnx.checker.check_model(fq, full_check=True)
    onnx.save(fq, str(OUT / "foreign_int8_qdq.onnx"))

    # 5: int8 NHWC input
    onnx.save(int8_input(fq), str(OUT / "foreign_int8in_qdq.onnx"))

    verify_and_reference(foreign_layers)


def describe(m: onnx.ModelProto) -> dict:
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return dict(sorted(ops.items()))


def verify_and_reference(foreign_layers):
    x_all, y_all = read_batch(data_dir() / "test_batch.bin")
    x = x_all[:N_REF].astype(np.float32)
    y = y_all[:N_REF]
    files = {
        "resnet8_fp32.onnx": FP32,
        "resnet8_int8_qdq.onnx": HERE / "resnet8_int8_qdq.onnx",
        "resnet8_qop.onnx": OUT / "resnet8_qop.onnx",
        "resnet8_perchannel_qdq.onnx": OUT / "resnet8_perchannel_qdq.onnx",
        "foreign_fp32.onnx": OUT / "foreign_fp32.onnx",
        "foreign_int8_qdq.onnx": OUT / "foreign_int8_qdq.onnx",
        "foreign_int8in_qdq.onnx": OUT / "foreign_int8in_qdq.onnx",
    }
    # where each file's layers are: the float source model's post-activation tensor names
    ours_pts = {k: (t, "same") for k, t in our_layers()}
    source_pts = {
        "resnet8_fp32.onnx": ours_pts, "resnet8_int8_qdq.onnx": ours_pts, "resnet8_qop.onnx": ours_pts, "resnet8_perchannel_qdq.onnx": ours_pts,
        "foreign_fp32.onnx": foreign_layers, "foreign_int8_qdq.onnx": foreign_layers,
        "foreign_int8in_qdq.onnx": foreign_layers,
    }

    ours, foreign = onnx.load(str(FP32)), onnx.load(str(OUT / "foreign_fp32.onnx"))
    sources = {k: (ours if k.startswith("resnet8") else foreign) for k in files}
    ref = {"onnxruntime": ort.__version__, "onnx": onnx.__version__,
           "images": N_REF,
           "dataset": f"first {N_REF} images of test_batch.bin; float32 NCHW raw 0-255 for models/resnet8_fp32.onnx, "
                      "resnet8_qop.onnx, resnet8_perchannel_qdq.onnx; the same transposed to NHWC for foreign_fp32.onnx "
                      "and foreign_int8_qdq.onnx; (pixel - 128) as int8 NHWC for foreign_int8in_qdq.onnx",
           "run": "Python onnxruntime, CPUExecutionProvider, default graph optimizations; predictions from the unmodified "
                  "model, per-layer tensors from a copy with those tensors added as graph outputs",
           "models": {}, "correspondence": []}

    logits, points = {}, {}
    for key, p in files.items():
        m = onnx.load(str(p))
        onnx.checker.check_model(m, full_check=True)
        sess = session(m)
        feed = feed_for(p, x)
        out = sess.run(None, feed)[0]
        logits[key] = out
        pred = out.argmax(1)
        inp = m.graph.input[0]
        ref["models"][key] = {
            "path": rel(p),
            "input": {"name": inp.name, "elem_type": TensorProto.DataType.Name(inp.type.tensor_type.elem_type).lower(),
                      "shape": [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]},
            "output": m.graph.output[0].name,
            "value_info": len(m.graph.value_info),
            "ops": describe(m),
            "correct": int((pred == y).sum()),
            "predictions": pred.tolist(),
        }
        if m.metadata_props:
            ref["models"][key]["metadata_props"] = {e.key: e.value for e in m.metadata_props}
        # the layers' tensors, dequantized where int8
        spec = {}
        for layer, (t, layout) in source_pts[key].items():
            fp = float_point(m, sources[key], t) if key not in ("resnet8_fp32.onnx", "foreign_fp32.onnx") else ("float", t)
            spec[layer] = (fp, layout)
        sess2 = session(m, [(fp[1], TensorProto.INT8 if fp[0] == "int8" else TensorProto.FLOAT) for fp, _ in spec.values()])
        names = [o.name for o in sess2.get_outputs()]
        vals = dict(zip(names, sess2.run(None, feed)))
        points[key] = {}
        for layer, (fp, layout) in spec.items():
            v = vals[fp[1]]
            if fp[0] == "int8":
                assert v.dtype == np.int8, (key, fp)
                v = (v.astype(np.float32) - fp[3]) * np.float32(fp[2])
            points[key][layer] = (fp, layout, v)
        print(f"{key}: {ref['models'][key]['correct']}/{N_REF} correct, ops {ref['models'][key]['ops']}")

    # foreign_fp32 must compute our function
    a, b = logits["resnet8_fp32.onnx"], logits["foreign_fp32.onnx"]
    rel_err = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
    same_top1 = bool((a.argmax(1) == b.argmax(1)).all())
    print(f"foreign_fp32 vs ours: max |diff| / max |logit| = {rel_err:.2e}, top-1 identical on {N_REF}: {same_top1}")
    assert rel_err < 1e-3 and same_top1
    q, qi = logits["foreign_int8_qdq.onnx"], logits["foreign_int8in_qdq.onnx"]
    print(f"foreign_int8in_qdq vs foreign_int8_qdq: max |diff| = {float(np.max(np.abs(q - qi))):.2e}")
    assert (q.argmax(1) == qi.argmax(1)).all()
    ref["checks"] = {"foreign_fp32_vs_ours_max_rel_logit_diff": rel_err, "foreign_fp32_vs_ours_same_top1": same_top1,
                     "foreign_int8in_vs_foreign_int8_max_abs_logit_diff": float(np.max(np.abs(q - qi)))}

    pairs = [("resnet8_fp32.onnx", "foreign_fp32.onnx"),
             ("resnet8_fp32.onnx", "foreign_int8_qdq.onnx"),
             ("foreign_fp32.onnx", "foreign_int8_qdq.onnx"),
             ("resnet8_fp32.onnx", "resnet8_perchannel_qdq.onnx"),
             ("resnet8_fp32.onnx", "resnet8_qop.onnx"),
             ("resnet8_fp32.onnx", "foreign_int8in_qdq.onnx"),
             ("resnet8_fp32.onnx", "resnet8_int8_qdq.onnx"),
             ("foreign_fp32.onnx", "foreign_int8in_qdq.onnx")]
    for ka, kb in pairs:
        entries = []
        for layer, _ in our_layers():
            fa, la, va = points[ka][layer]
            fb, lb, vb = points[kb][layer]
            if la == lb:
                layout = "same"
            else:
                assert la == "same" and lb == "nhwc"
                layout = "nhwc"
                va = va.transpose(0, 2, 3, 1)
            assert va.shape == vb.shape, (ka, kb, layer, va.shape, vb.shape)
            sqnr, cos = sqnr_cos(va, vb)
            e = {"layer": layer, "a": fa[1], "b": fb[1], "layout": layout, "sqnr_db": sqnr, "cosine": cos}
            if fb[0] == "int8":
                e["b_dtype"] = "int8"
                e["b_scale"], e["b_zero_point"] = fb[2], fb[3]
            entries.append(e)
        ref["correspondence"].append({"a_model": ka, "b_model": kb, "entries": entries})
        print(f"{ka} vs {kb}:")
        for e in entries:
            s = "identical" if e["sqnr_db"] is None else f"{e['sqnr_db']:7.2f} dB"
            print(f"   {e['layer']:<16} {s:>12}  cos {e['cosine']:.6f}  {e['a']} ~ {e['b']} ({e['layout']})")

    (OUT / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    write_manifest()


WHAT = {
    "resnet8_qop.onnx": "models/resnet8_fp32.onnx quantized with onnxruntime quantize_static, QuantFormat.QOperator "
                        "(QLinearConv, QLinearAdd, QLinearGlobalAveragePool, QGemm), per-tensor, int8 weights and "
                        "activations, MinMax on the first 1000 images of data_batch_1.bin after quant_pre_process",
    "resnet8_perchannel_qdq.onnx": "models/resnet8_fp32.onnx quantized with quantize_static QDQ, per_channel=True "
                                   "(per-output-channel int8 weights, per-tensor int8 activations), same calibration",
    "foreign_fp32.onnx": "models/resnet8_fp32.onnx rebuilt by graph surgery to look like a tf2onnx export: Conv without "
                         "bias + BatchNormalization (random gamma/beta/mean/var, weights rescaled so the function is "
                         "unchanged), shortcut branches listed first and Add inputs swapped, TF-style names, NHWC input "
                         "input_1 [N,32,32,3] + Transpose, Transpose pairs around the stage-1 Relu and the stage-2 Add+Relu, "
                         "Reshape + MatMul + Add for Flatten + Gemm, no value_info, opset 13",
    "foreign_int8_qdq.onnx": "foreign_fp32.onnx quantized with quantize_static QDQ, per-tensor s8s8, same calibration images "
                             "fed as NHWC, no quant_pre_process (BatchNormalization stays unfolded), value_info stripped",
    "foreign_int8in_qdq.onnx": "foreign_int8_qdq.onnx with an int8 NHWC graph input input_q = pixel - 128 and "
                               "DequantizeLinear(scale 1.0, zero point -128) in front; metadata_props input_scale=1.0, "
                               "input_zero_point=-128",
    "reference.json": "Python onnxruntime on the first 64 test_batch.bin images: correct counts, predictions, and the "
                      "per-layer correspondence between models (ground truth) with SQNR and cosine",
}


def write_manifest():
    files = {}
    for name, what in WHAT.items():
        p = OUT / name
        files[name] = {"sha256": sha256(p), "size_bytes": p.stat().st_size, "what": what,
                       "script": "models/foreign.py"}
    manifest = {"onnxruntime": ort.__version__, "onnx": onnx.__version__,
                "rebuild": ".cache/bench-venv/bin/python models/foreign.py", "files": files}
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for name, e in files.items():
        print(f"{name}: {e['size_bytes']} bytes")


if __name__ == "__main__":
    main()
