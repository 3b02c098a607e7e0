"""A MobileNetV2-0.35 (224x224, 1000 classes) with deterministic, untrained weights, and its INT8 QDQ.

    py=$(scripts/bench/setup.sh) && "$py" models/mobilenetv2.py

numpy, onnx and onnxruntime only (no PyTorch, no dataset). Writes

* models/mobilenetv2_fp32.onnx: opset 13, input `input` float32 [N, 3, 224, 224] (ImageNet
  mean/std normalized RGB), output `logits` float32 [N, 1000]. Conv 3x3/2 to 16, the 17
  inverted-residual blocks of the paper's table at width 0.35 (channels rounded to multiples
  of 8 as Keras does: 8, 8, 16, 24, 32, 56, 112), 1x1 conv to 448, GlobalAveragePool,
  Flatten, Gemm. Blocks: 1x1 expansion Conv + Clip(0, 6) (absent where t = 1), depthwise 3x3
  Conv + Clip(0, 6), linear 1x1 projection Conv, Add where stride 1 and in == out channels.
  BatchNorm is "folded": every Conv has a bias.
* models/mobilenetv2_int8_qdq.onnx: quantize_static QDQ, per-channel int8 weights, int8
  activations (s8s8), MinMax calibration on 64 procedurally generated images.

The weights are random (seed 2024) but scaled as a trained, BatchNorm-folded network would be:
each Conv starts from He-normal weights, then a forward pass in float64 over 32 generated
images measures each output channel's mean and standard deviation and folds a "BatchNorm"
with random gamma (log-normal) and beta into the Conv's weights and bias, so every Clip(0, 6)
sees a pre-activation with a sensible, channel-varying spread (some zeros, a few saturated).
Residual branches are scaled down to 0.3 of the skip path (as trained residual networks tend to
be; with full-size branches the random network amplifies the quantization noise so much that
FP32 and INT8 agree on about a third of the top-1 classes, with 0.3 about 60 %).
The Gemm's weights are random and its bias centres the logits on the mean pooled feature, so
that different images get different top-1 classes. The predictions mean nothing; the model is
a realistically shaped and scaled network for per-layer FP32-vs-INT8 comparisons.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FP32, INT8 = HERE / "mobilenetv2_fp32.onnx", HERE / "mobilenetv2_int8_qdq.onnx"
SEED = 2024
ALPHA = 0.35
# t (expansion), c (output channels), n (repeats), s (stride of the first repeat)
TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# The last 1x1 conv is scaled with the width like the others (448 = 1280 x 0.35; Keras keeps
# 1280), so that the committed FP32 file stays under 4 MiB.
LAST, CLASSES, SIZE = 448, 1000, 224
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
RESIDUAL_GAIN = 0.3  # a residual branch's projection output, against the skip path's
INIT_SEED, CALIB_SEED, EVAL_SEED = 1, 2, 3  # image seeds: weight scaling, calibration, checks


def make_divisible(v: float, divisor: int = 8) -> int:
    """Keras/TF-slim rounding of a channel count to a multiple of divisor, never more than 10 % down."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def synth_images(n: int, seed: int, size: int = SIZE) -> np.ndarray:
    """n procedurally generated RGB images in [0, 1], float32 NHWC: a linear colour gradient,
    Gaussian colour blobs, an oriented sinusoidal texture and pixel noise, all random."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        ang = rng.uniform(0, 2 * np.pi)
        t = (np.cos(ang) * xx + np.sin(ang) * yy)[..., None]
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        img = c0 + (c1 - c0) * (t - t.min()) / (t.max() - t.min())
        for _ in range(rng.integers(2, 8)):
            cy, cx = rng.uniform(0, 1, 2)
            r = rng.uniform(0.04, 0.3)
            w = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - w) + rng.uniform(0, 1, 3) * w
        f, a = rng.uniform(2, 40), rng.uniform(0, 2 * np.pi)
        tex = np.sin(2 * np.pi * f * (np.cos(a) * xx + np.sin(a) * yy) + rng.uniform(0, 2 * np.pi))
        img = img + rng.uniform(0, 0.25) * tex[..., None] * rng.uniform(0.3, 1, 3)
        img = img + rng.normal(0, rng.uniform(0.005, 0.08), img.shape)
        out[i] = np.clip(img, 0, 1)
    return out


def normalize(x_nhwc: np.ndarray) -> np.ndarray:
    """[0, 1] NHWC -> ImageNet-normalized float32 NCHW, as the model takes it."""
    return np.ascontiguousarray(((x_nhwc - MEAN) / STD).transpose(0, 3, 1, 2), dtype=np.float32)


# ---- numpy float64 forward, used to scale the weights (NHWC activations, ONNX weight layouts) ----

def out_size(h: int, s: int) -> int:
    return (h + 2 - 3) // s + 1


def conv3x3(x, w, s):
    """Dense 3x3 conv, pad 1, stride s. x [N, H, W, C], w [O, C, 3, 3]."""
    n, h, wd, c = x.shape
    ho, wo = out_size(h, s), out_size(wd, s)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.stack([xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
                     for i in range(3) for j in range(3)], axis=-1)  # [N, Ho, Wo, C, 9]
    return cols.reshape(n, ho, wo, c * 9) @ w.reshape(w.shape[0], c * 9).T


def dwconv3x3(x, w, s):
    """Depthwise 3x3 conv, pad 1, stride s. x [N, H, W, C], w [C, 1, 3, 3]."""
    n, h, wd, c = x.shape
    ho, wo = out_size(h, s), out_size(wd, s)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = np.zeros((n, ho, wo, c), x.dtype)
    for i in range(3):
        for j in range(3):
            y += xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :] * w[:, 0, i, j]
    return y


def conv1x1(x, w):
    return x @ w[:, :, 0, 0].T


class Builder:
    """Collects ONNX nodes and initializers while running the numpy forward that scales them."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []
        self.stats = []  # (Clip name, fraction == 0, fraction == 6)

    def add_init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def conv(self, x, tin, prefix, cout, kind, stride=1, act=True, gain=1.0):
        """One BN-folded Conv (kind 'full3x3', 'dw' or '1x1') on numpy x and ONNX tensor tin;
        weights He-normal, then rescaled per output channel to a random gamma/beta spread."""
        cin = x.shape[-1]
        if kind == "dw":
            shape, group, fan_in = (cin, 1, 3, 3), cin, 9
        elif kind == "full3x3":
            shape, group, fan_in = (cout, cin, 3, 3), 1, cin * 9
        else:
            shape, group, fan_in = (cout, cin, 1, 1), 1, cin
        w = self.rng.normal(0, np.sqrt(2 / fan_in), shape)
        y = dwconv3x3(x, w, stride) if kind == "dw" else conv3x3(x, w, stride) if kind == "full3x3" else conv1x1(x, w)
        mu, sd = y.mean(axis=(0, 1, 2)), y.std(axis=(0, 1, 2)) + 1e-6
        co = y.shape[-1]
        if act:  # pre-Clip: mostly inside (0, 6), about a fifth below 0, a few channels saturating
            gamma = np.exp(self.rng.normal(np.log(1.2), 0.35, co))
            beta = self.rng.normal(1.0, 0.5, co)
        else:  # linear projection
            gamma = gain * np.exp(self.rng.normal(np.log(0.8), 0.3, co))
            beta = gain * self.rng.normal(0, 0.2, co)
        scale = gamma / sd
        w = w * scale[:, None, None, None]
        b = beta - mu * scale
        y = (y - mu) * scale + beta
        wn, bn = self.add_init(f"{prefix}.weight", w), self.add_init(f"{prefix}.bias", b)
        conv_out = f"/{prefix.replace('.', '/')}/Conv_output_0"
        pads = [1, 1, 1, 1] if kind != "1x1" else [0, 0, 0, 0]
        ks = [1, 1] if kind == "1x1" else [3, 3]
        self.nodes.append(helper.make_node(
            "Conv", [tin, wn, bn], [conv_out], name=f"/{prefix.replace('.', '/')}/Conv",
            dilations=[1, 1], group=group, kernel_shape=ks, pads=pads, strides=[stride, stride]))
        if not act:
            return y, conv_out
        clip_out = f"/{prefix.replace('.', '/')}/Clip_output_0"
        self.nodes.append(helper.make_node("Clip", [conv_out, "clip_min", "clip_max"], [clip_out],
                                           name=f"/{prefix.replace('.', '/')}/Clip"))
        self.stats.append((clip_out, float(np.mean(y <= 0)), float(np.mean(y >= 6))))
        return np.clip(y, 0, 6), clip_out


def build(x_init: np.ndarray) -> tuple[onnx.ModelProto, np.ndarray, list]:
    """The ONNX model, the numpy float64 logits on x_init (NCHW) and the Clip statistics."""
    bld = Builder(SEED)
    bld.add_init("clip_min", np.float32(0))
    bld.add_init("clip_max", np.float32(6))
    x = x_init.transpose(0, 2, 3, 1).astype(np.float64)
    x, t = bld.conv(x, "input", "conv0", make_divisible(32 * ALPHA), "full3x3", stride=2)
    blk = 0
    for exp, c, n, s in TABLE:
        cout = make_divisible(c * ALPHA)
        for r in range(n):
            stride, cin = (s if r == 0 else 1), x.shape[-1]
            x_in, t_in = x, t
            p = f"block{blk}"
            if exp != 1:
                x, t = bld.conv(x, t, f"{p}.expand", cin * exp, "1x1")
            x, t = bld.conv(x, t, f"{p}.dw", None, "dw", stride=stride)
            residual = stride == 1 and cin == cout
            x, t = bld.conv(x, t, f"{p}.project", cout, "1x1", act=False, gain=RESIDUAL_GAIN if residual else 1.0)
            if residual:
                x = x + x_in
                add_out = f"/{p}/Add_output_0"
                bld.nodes.append(helper.make_node("Add", [t_in, t], [add_out], name=f"/{p}/Add"))
                t = add_out
            blk += 1
    x, t = bld.conv(x, t, "conv_last", LAST, "1x1")
    feat = x.mean(axis=(1, 2))  # [N, LAST]
    bld.nodes.append(helper.make_node("GlobalAveragePool", [t], ["/pool/GlobalAveragePool_output_0"],
                                      name="/pool/GlobalAveragePool"))
    bld.nodes.append(helper.make_node("Flatten", ["/pool/GlobalAveragePool_output_0"], ["/Flatten_output_0"],
                                      name="/Flatten", axis=1))
    # Gemm: random directions; the bias centres the logits on the mean feature of the scaling
    # images, the scale makes the logits' spread over images about 3.
    w = bld.rng.normal(0, 1, (CLASSES, LAST))
    mu = feat.mean(axis=0)
    w *= 3.0 / ((feat - mu) @ w.T).std()
    b = -w @ mu + bld.rng.normal(0, 0.05, CLASSES)
    logits = feat @ w.T + b
    bld.nodes.append(helper.make_node("Gemm", ["/Flatten_output_0", bld.add_init("fc.weight", w),
                                               bld.add_init("fc.bias", b)], ["logits"],
                                      name="/fc/Gemm", alpha=1.0, beta=1.0, transB=1))
    graph = helper.make_graph(
        bld.nodes, "mobilenetv2_0.35_224",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], bld.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="quantgraph models/mobilenetv2.py")
    model.ir_version = 8
    model.doc_string = ("MobileNetV2 width 0.35, 224x224, 1000 classes; random deterministic weights "
                        "(not trained); input ImageNet mean/std normalized RGB NCHW")
    onnx.checker.check_model(model, full_check=True)
    return model, logits, bld.stats


class Reader(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 16):
        self.batches = iter([{"input": images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)


def run(path: Path, x: np.ndarray, batch: int = 32) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"input": x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    x_init = normalize(synth_images(32, INIT_SEED))
    model, ref_logits, stats = build(x_init)
    onnx.save(model, str(FP32))
    n_params = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    print(f"wrote {FP32.relative_to(ROOT)}: {FP32.stat().st_size} bytes, {n_params} parameters, "
          f"{sum(n.op_type == 'Conv' for n in model.graph.node)} Conv")
    zero = [z for _, z, _ in stats]
    sat = [s for _, _, s in stats]
    print(f"  {len(stats)} Clip(0, 6): fraction at 0 {min(zero):.2f}..{max(zero):.2f} (mean {np.mean(zero):.2f}), "
          f"at 6 {min(sat):.4f}..{max(sat):.4f} (mean {np.mean(sat):.4f}) on the 32 scaling images")

    got = run(FP32, x_init)
    print(f"  onnxruntime vs numpy float64 forward: max |diff| of logits {np.abs(got - ref_logits).max():.2e}")

    pre = HERE / "build" / "mobilenetv2_fp32_pre.onnx"
    pre.parent.mkdir(exist_ok=True)
    quant_pre_process(str(FP32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(INT8), Reader(normalize(synth_images(64, CALIB_SEED))),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    qm = onnx.load(str(INT8))
    onnx.checker.check_model(qm, full_check=True)
    ops = {}
    for n in qm.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    print(f"wrote {INT8.relative_to(ROOT)}: {INT8.stat().st_size} bytes; ops {dict(sorted(ops.items()))}")

    x_eval = normalize(synth_images(256, EVAL_SEED))
    la, lb = run(FP32, x_eval), run(INT8, x_eval)
    ta, tb = la.argmax(1), lb.argmax(1)
    err = la.astype(np.float64) - lb
    sqnr = 10 * np.log10(np.sum(la.astype(np.float64) ** 2) / np.sum(err ** 2))
    agree = int((ta == tb).sum())
    print(f"  256 generated images: FP32 logits std {la.std():.2f}, per-image spread (max-min) "
          f"{np.mean(la.max(1) - la.min(1)):.2f}; distinct top-1 FP32 {len(set(ta[:64]))}/64 first, "
          f"{len(set(ta))}/256 all, INT8 {len(set(tb))}/256")
    print(f"  FP32 vs INT8 top-1 agreement {agree}/256 ({agree / 256:.2%}); logits SQNR {sqnr:.2f} dB")

    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["mobilenetv2"] = {
        "onnxruntime": ort.__version__,
        "input": {"name": "input", "dtype": "float32", "shape": ["N", 3, SIZE, SIZE],
                  "preprocessing": "RGB in [0, 1], then ImageNet mean (0.485, 0.456, 0.406) / std "
                                   "(0.229, 0.224, 0.225), NCHW"},
        "output": {"name": "logits", "shape": ["N", CLASSES], "meaning": "logits (no softmax) of an untrained network"},
        "models": {
            FP32.name: {
                "sha256": sha256(FP32), "size_bytes": FP32.stat().st_size, "script": "models/mobilenetv2.py",
                "description": "MobileNetV2 width 0.35, 224x224, 1000 classes, opset 13, BatchNorm folded "
                               "(Conv with bias), Clip(0, 6); random weights (seed 2024) scaled per channel on "
                               "32 generated images; not trained",
                "parameters": n_params,
            },
            INT8.name: {
                "sha256": sha256(INT8), "size_bytes": INT8.stat().st_size, "script": "models/mobilenetv2.py",
                "description": "mobilenetv2_fp32.onnx through quant_pre_process and quantize_static",
                "quantization": "onnxruntime.quantization.quantize_static, QDQ, per-channel, MinMax, int8 "
                                "weights, int8 activations (s8s8)",
                "calibration": "64 procedurally generated 224x224 images (models/mobilenetv2.py synth_images, seed 2)",
                "top1_agreement_with_fp32": {"agree": agree, "total": 256,
                                             "images": "256 generated images (synth_images, seed 3)"},
            },
        },
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"updated {manifest_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
