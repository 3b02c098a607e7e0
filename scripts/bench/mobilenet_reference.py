"""Reference benchmark: a streamed per-layer FP32-vs-INT8 comparison over an image folder, in Python onnxruntime.

    py=$(scripts/bench/setup.sh)
    "$py" scripts/bench/make_images.py --out /tmp/imgs --count 1000
    "$py" scripts/bench/mobilenet_reference.py --images /tmp/imgs --count 1000 --batch 32 \\
        --fp32 models/mobilenetv2_fp32.onnx --int8 models/mobilenetv2_int8_qdq.onnx

The same work as QuantGraph's streamed comparison of two models on an image folder:

* Images: the first N of the folder as the Dataset Loader lists them (class subfolders sorted
  by name, then the .png/.jpg/.jpeg files in each, sorted by name), decoded with Pillow,
  `.convert("RGB")`, resized so the shorter side is 256 (torchvision `Resize(256)`: the longer
  side becomes int(256 * long / short); PIL bilinear), center-cropped to 224x224 (top =
  int(round((h - 224) / 2)), left likewise), scaled by 1/255, ImageNet mean/std, NCHW float32.
  Decoded batch by batch: never more than one batch of images in memory.
* Pairs: as onnxruntime.quantization.qdq_loss_debug.create_activation_matching pairs them. For
  each tensor T of the INT8 (QDQ) model named X + "_DequantizeLinear_Output" (or
  + "_DequantizeLinear_Output_1"), the FP32 tensor X is compared with T; for a tensor named
  X + "_QuantizeLinear_Input" (the quantizer renames a graph output that way and gives its
  DequantizeLinear the name X), the FP32 X is compared with the INT8 X. A pair is kept when X
  is a node output or the graph input of the FP32 model (not an initializer: the weights' and
  biases' DequantizeLinear outputs are not activations). Where the quantizer folded a
  Relu/Clip into the producer's Q/DQ pair, the producer writes the Relu/Clip's output name, so
  the pair is the FP32 Clip output with the INT8 dequantized value, as it should be.
* Both models get those tensors as extra graph outputs; each batch runs through both sessions
  (CPUExecutionProvider, default session options plus session.disable_quant_qdq = 1, as QuantGraph's probes); per pair, in float64 accumulators, it adds
  up sum A^2, sum (B - A)^2, sum |B - A|, max |B - A|, sum A*B, sum B^2 and the element count
  (float32 BLAS dot products over 64k-element chunks), then drops the batch.
* At the end, per pair in FP32 graph order: SQNR = 10 log10(sum A^2 / sum (B - A)^2) dB,
  MSE, MAE, max |B - A| and cosine = sum A*B / sqrt(sum A^2 sum B^2); top-1 agreement of the
  models' first outputs (from the same augmented runs); images/s; and a last line
  {"images": N, "layers": L, "seconds": T}, T the wall time of the whole comparison (augmenting,
  session creation, decoding, both runs, accumulating; not the Python imports).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
RESIZE, CROP = 256, 224
EXTS = {".png", ".jpg", ".jpeg"}
# onnxruntime.quantization.quant_utils: QUANT_INPUT_SUFFIX, DEQUANT_OUTPUT_SUFFIX; qdq_loss_debug: _POST_QDQ_POSTFIX1
Q_IN, DQ_OUT, DQ_OUT1 = "_QuantizeLinear_Input", "_DequantizeLinear_Output", "_DequantizeLinear_Output_1"


def list_images(folder: Path, n: int) -> list[Path]:
    files = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        files += sorted(p for p in d.iterdir() if p.suffix.lower() in EXTS and p.is_file())
        if len(files) >= n:
            return files[:n]
    sys.exit(f"{folder} holds {len(files)} images in class subfolders, fewer than --count {n}")


def preprocess(path: Path) -> np.ndarray:
    """One image as float32 [3, 224, 224]: RGB, shorter side 256 (bilinear), center crop 224, ImageNet mean/std."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w <= h:
            size = (RESIZE, int(RESIZE * h / w))
        else:
            size = (int(RESIZE * w / h), RESIZE)
        if size != (w, h):
            im = im.resize(size, Image.BILINEAR)
        w, h = im.size
        top, left = int(round((h - CROP) / 2.0)), int(round((w - CROP) / 2.0))
        x = np.asarray(im.crop((left, top, left + CROP, top + CROP)), dtype=np.float32)
    x = (x / np.float32(255) - MEAN) / STD
    return x.transpose(2, 0, 1)


def match(fp32: onnx.ModelProto, int8: onnx.ModelProto) -> list[tuple[str, str]]:
    """(FP32 tensor, INT8 tensor) pairs, in the FP32 graph's order (graph inputs first)."""
    inits = {i.name for i in fp32.graph.initializer}
    order = [i.name for i in fp32.graph.input if i.name not in inits] + [o for n in fp32.graph.node for o in n.output if o]
    fp32_acts = set(order)
    int8_names = [i.name for i in int8.graph.input] + [o for n in int8.graph.node for o in n.output if o]
    by_pre = {}
    for name in int8_names:
        if name.endswith(Q_IN):
            pre, post = name[: -len(Q_IN)], name[: -len(Q_IN)]
        elif name.endswith(DQ_OUT):
            pre, post = name[: -len(DQ_OUT)], name
        elif name.endswith(DQ_OUT1):
            pre, post = name[: -len(DQ_OUT1)], name
        else:
            continue
        if pre in fp32_acts:
            by_pre[pre] = post  # as create_activation_matching: the last one wins
    return [(a, by_pre[a]) for a in order if a in by_pre]


def augmented(model: onnx.ModelProto, names: list[str]) -> bytes:
    """The model with the given tensors added as graph outputs (float32, shape left open)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in names:
        if name not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            have.add(name)
    return m.SerializeToString()


CHUNK = 1 << 16  # elements: a chunk of A, B and B - A stay in the CPU cache


class Acc:
    """Running sums for one pair. Each batch's tensors are walked in 64k-element chunks: per chunk
    float32 BLAS dot products and sums (relative error ~1e-8; one dot over millions of elements
    drifts by 1e-5..1e-4), added up in Python floats (float64)."""
    __slots__ = ("a2", "e2", "eabs", "emax", "ab", "b2", "n")

    def __init__(self):
        self.a2 = self.e2 = self.eabs = self.emax = self.ab = self.b2 = 0.0
        self.n = 0

    def add(self, a: np.ndarray, b: np.ndarray, buf: np.ndarray):
        a, b = a.reshape(-1), b.reshape(-1)
        if a.size != b.size:
            raise ValueError(f"shapes differ: {a.size} vs {b.size} elements")
        a2 = e2 = eabs = ab = b2 = 0.0
        emax = self.emax
        for i in range(0, a.size, CHUNK):
            ac, bc = a[i:i + CHUNK], b[i:i + CHUNK]
            d = np.subtract(bc, ac, out=buf[:ac.size])
            a2 += float(np.dot(ac, ac))
            b2 += float(np.dot(bc, bc))
            ab += float(np.dot(ac, bc))
            e2 += float(np.dot(d, d))
            np.abs(d, out=d)
            eabs += float(d.sum())
            emax = max(emax, float(d.max()))
        self.a2 += a2
        self.e2 += e2
        self.eabs += eabs
        self.ab += ab
        self.b2 += b2
        self.emax = emax
        self.n += a.size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True, help="folder with one subfolder of images per class")
    ap.add_argument("--count", type=int, required=True, help="first N images")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--fp32", type=Path, required=True)
    ap.add_argument("--int8", type=Path, required=True)
    args = ap.parse_args()
    if args.count < 1 or args.batch < 1:
        sys.exit("--count and --batch must be positive")
    files = list_images(args.images, args.count)

    t0 = time.perf_counter()
    fp32, int8 = onnx.load(str(args.fp32)), onnx.load(str(args.int8))
    pairs = match(fp32, int8)
    out_a, out_b = fp32.graph.output[0].name, int8.graph.output[0].name
    input_a, input_b = fp32.graph.input[0].name, int8.graph.input[0].name
    # The FP32 graph input is fed, not fetched (the INT8 side has its DequantizeLinear output).
    names_a = list(dict.fromkeys([out_a] + [a for a, _ in pairs if a != input_a]))
    names_b = list(dict.fromkeys([out_b] + [b for _, b in pairs if b != input_b]))
    # As QuantGraph's probing sessions: Q/DQ run as float emulation everywhere.
    probing = ort.SessionOptions()
    probing.add_session_config_entry("session.disable_quant_qdq", "1")
    sess_a = ort.InferenceSession(augmented(fp32, names_a), probing, providers=["CPUExecutionProvider"])
    sess_b = ort.InferenceSession(augmented(int8, names_b), probing, providers=["CPUExecutionProvider"])
    accs = [Acc() for _ in pairs]
    buf = np.empty(CHUNK, np.float32)
    agree = 0
    t_decode = t_run = t_acc = 0.0
    t_start = time.perf_counter()
    for s in range(0, len(files), args.batch):
        t = time.perf_counter()
        x = np.stack([preprocess(p) for p in files[s:s + args.batch]])
        t_decode += time.perf_counter() - t
        t = time.perf_counter()
        ra = dict(zip(names_a, sess_a.run(names_a, {input_a: x})))
        rb = dict(zip(names_b, sess_b.run(names_b, {input_b: x})))
        ra[input_a], rb[input_b] = x, x
        t_run += time.perf_counter() - t
        t = time.perf_counter()
        agree += int((ra[out_a].reshape(len(x), -1).argmax(1) == rb[out_b].reshape(len(x), -1).argmax(1)).sum())
        for acc, (a, b) in zip(accs, pairs):
            acc.add(ra[a], rb[b], buf)
        del ra, rb
        t_acc += time.perf_counter() - t
    secs = time.perf_counter() - t0
    n = len(files)

    wa = max(len(a) for a, _ in pairs)
    print(f"{'FP32 tensor':<{wa}}  {'SQNR dB':>8}  {'MSE':>10}  {'MAE':>10}  {'max |err|':>10}  {'cosine':>10}  INT8 tensor")
    for acc, (a, b) in zip(accs, pairs):
        sqnr = 10 * np.log10(acc.a2 / acc.e2) if acc.e2 > 0 else float("inf")
        cos = acc.ab / np.sqrt(acc.a2 * acc.b2) if acc.a2 > 0 and acc.b2 > 0 else float("nan")
        print(f"{a:<{wa}}  {sqnr:8.2f}  {acc.e2 / acc.n:10.4e}  {acc.eabs / acc.n:10.4e}  {acc.emax:10.4e}  {cos:10.6f}  {b}")
    print(f"top-1 agreement ({out_a} vs {out_b}): {agree}/{n} ({agree / n:.2%})")
    print(f"{n} images, {len(pairs)} layers, batch {args.batch}: {secs:.2f} s, {n / secs:.1f} images/s "
          f"(decode+preprocess {t_decode:.2f} s, both models {t_run:.2f} s, accumulate {t_acc:.2f} s, "
          f"setup {t_start - t0:.2f} s)")
    print(json.dumps({"images": n, "layers": len(pairs), "seconds": round(secs, 3)}))


if __name__ == "__main__":
    main()
