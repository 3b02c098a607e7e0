"""CI fixture for the image-folder comparison of the MobileNetV2 benchmark models (tests/fixtures/photos/).

    py=$(scripts/bench/setup.sh) && "$py" models/photos_fixture.py

Needs numpy, onnx, onnxruntime and Pillow only; no dataset: the six images are generated here
from a fixed numpy seed (a two-colour linear gradient, soft Gaussian colour blobs and a
low-amplitude, low-frequency sinusoid; no pixel noise, so the PNGs stay small). Writes:

* images/n00000000/n00000000_<i>.png (i = 0, 1, 2) and images/n00000001/n00000001_<i>.png
  (i = 3, 4, 5), RGB, W x H: 299x257, 245x298, 281x236 | 257x299, 287x233, 251x263. Landscape
  and portrait, every side odd or not a multiple of the crop; after the shorter-side-256 resize
  the center crop's offset is x.5 for four of them (Python round: ties to even, so 36.5 -> 36,
  43.5 -> 44, 45.5 -> 46) and truncation matters for the longer side (256 * 299 / 257 = 297.8).
* classes.txt: "n00000001 second" then "n00000000 first", so the class index comes from this
  list (n00000001 is 0), not from the sorted folder names.
* reference.json: the exact pipeline of scripts/bench/mobilenet_reference.py (its functions
  list_images, preprocess, match and augmented are imported, not copied): the images as the
  Dataset Loader lists them (class folders sorted, then files sorted), Pillow RGB, shorter side
  256 (bilinear), center crop 224, ImageNet mean/std, NCHW float32, batch 4 (the last batch has
  2 images), models/mobilenetv2_fp32.onnx against models/mobilenetv2_int8_qdq.onnx with the
  matched tensors as extra graph outputs (CPUExecutionProvider, default session options).
  Keys: script, onnxruntime / pillow versions, images, batch, files (relative to images/, in
  loader order), labels (index in classes.txt), predictions_fp32 / predictions_int8 (top-1 of
  the augmented runs), predictions_int8_plain (top-1 of the un-augmented INT8 model: onnxruntime's
  fused integer kernels), agreement (predictions_fp32 == predictions_int8), input0_head (the
  first 16 values of image 0's [3, 224, 224] input tensor), input0_sum (its float64 sum) and
  input0_sha256 (sha256 of all its float32 values, little-endian), and
  layers: per matched pair in FP32 graph order, a (FP32 tensor), b (INT8 tensor), sqnr_db,
  mse, mae, max_abs, cosine and count (elements over all images).
  The sums here are float64 end to end (each batch's tensors converted to float64 before any
  product or sum), not mobilenet_reference.py's float32 chunked dot products.

Deterministic for a given numpy / Pillow / onnxruntime build (and CPU).
"""
import importlib.util
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import PIL
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "photos"
IMAGES = OUT / "images"
FP32, INT8 = ROOT / "models" / "mobilenetv2_fp32.onnx", ROOT / "models" / "mobilenetv2_int8_qdq.onnx"
SEED, BATCH = 20250313, 4  # seed picked so that input0_head holds 16 distinct values
CLASSES = [("n00000001", "second"), ("n00000000", "first")]  # classes.txt order = class index
# (class folder, width, height) of image i
SPECS = [("n00000000", 299, 257), ("n00000000", 245, 298), ("n00000000", 281, 236),
         ("n00000001", 257, 299), ("n00000001", 287, 233), ("n00000001", 251, 263)]


def load_reference():
    path = ROOT / "scripts" / "bench" / "mobilenet_reference.py"
    spec = importlib.util.spec_from_file_location("mobilenet_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_image(i: int, w: int, h: int) -> np.ndarray:
    """Smooth image i as uint8 [h, w, 3]: gradient + soft blobs + a faint low-frequency sinusoid."""
    rng = np.random.default_rng([SEED, i])
    side = max(w, h)
    yy = (np.arange(h, dtype=np.float64) / side)[:, None]
    xx = (np.arange(w, dtype=np.float64) / side)[None, :]
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = np.cos(ang) * xx + np.sin(ang) * yy
    t = (t - t.min()) / (t.max() - t.min())
    img = c0 + (c1 - c0) * t[..., None]
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0, 1, 2) * (h / side, w / side)
        r2 = 2 * rng.uniform(0.08, 0.25) ** 2
        g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r2)
        img += (rng.uniform(0, 1, 3) - img) * (0.8 * g)[..., None]
    freq, a, p = rng.uniform(1, 3), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (np.cos(a) * xx + np.sin(a) * yy) + p)
    img += 0.04 * wave[..., None] * rng.uniform(0.5, 1, 3)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


class Acc64:
    """Running float64 sums for one pair: sum A^2, sum (B - A)^2, sum |B - A|, max |B - A|,
    sum A*B, sum B^2 and the element count."""

    def __init__(self):
        self.a2 = self.e2 = self.eabs = self.emax = self.ab = self.b2 = 0.0
        self.n = 0

    def add(self, a: np.ndarray, b: np.ndarray):
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if a.size != b.size:
            raise ValueError(f"shapes differ: {a.size} vs {b.size} elements")
        d = b - a  # exact: the difference of two float32 values fits a float64
        self.a2 += float(np.dot(a, a))
        self.b2 += float(np.dot(b, b))
        self.ab += float(np.dot(a, b))
        self.e2 += float(np.dot(d, d))
        d = np.abs(d)
        self.eabs += float(d.sum())
        self.emax = max(self.emax, float(d.max()))
        self.n += a.size


def main():
    """`--without-avx512`: on a CPU without AVX-512, keep the images and the reference, and
    add this CPU's figures under "without_avx512" (ONNX Runtime's AVX2 float kernels round
    otherwise than its AVX-512 ones, and over a few samples that shows in the last digits)."""
    import sys
    ref = load_reference()
    variant = "--without-avx512" in sys.argv[1:]
    if variant:
        flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
        if "avx512f" in flags.split():
            sys.exit("this CPU has AVX-512: run without --without-avx512")
    else:
        if OUT.exists():
            shutil.rmtree(OUT)
        for name, _ in CLASSES:
            (IMAGES / name).mkdir(parents=True, exist_ok=True)
        for i, (name, w, h) in enumerate(SPECS):
            Image.fromarray(make_image(i, w, h)).save(IMAGES / name / f"{name}_{i}.png", optimize=True)
        (OUT / "classes.txt").write_text("".join(f"{c} {label}\n" for c, label in CLASSES))

    files = ref.list_images(IMAGES, len(SPECS))
    index = {c: k for k, (c, _) in enumerate(CLASSES)}
    labels = [index[p.parent.name] for p in files]

    fp32, int8 = onnx.load(str(FP32)), onnx.load(str(INT8))
    pairs = ref.match(fp32, int8)
    out_a, out_b = fp32.graph.output[0].name, int8.graph.output[0].name
    input_a, input_b = fp32.graph.input[0].name, int8.graph.input[0].name
    names_a = list(dict.fromkeys([out_a] + [a for a, _ in pairs if a != input_a]))
    names_b = list(dict.fromkeys([out_b] + [b for _, b in pairs if b != input_b]))
    providers = ["CPUExecutionProvider"]
    # As QuantGraph's probing sessions: QDQ kept as float emulation everywhere
    # (session.disable_quant_qdq), so the comparison does not depend on which Q/DQ pairs
    # ORT would fuse around the fetched tensors.
    probing = ort.SessionOptions()
    probing.add_session_config_entry("session.disable_quant_qdq", "1")
    sess_a = ort.InferenceSession(ref.augmented(fp32, names_a), probing, providers=providers)
    sess_b = ort.InferenceSession(ref.augmented(int8, names_b), probing, providers=providers)
    sess_plain = ort.InferenceSession(str(INT8), providers=providers)

    accs = [Acc64() for _ in pairs]
    pred_a, pred_b, pred_plain = [], [], []
    input0 = None
    for s in range(0, len(files), BATCH):
        x = np.stack([ref.preprocess(p) for p in files[s:s + BATCH]])
        if input0 is None:
            input0 = x[0].copy()
        ra = dict(zip(names_a, sess_a.run(names_a, {input_a: x})))
        rb = dict(zip(names_b, sess_b.run(names_b, {input_b: x})))
        ra[input_a], rb[input_b] = x, x
        plain = sess_plain.run([out_b], {input_b: x})[0]
        pred_a += [int(v) for v in ra[out_a].reshape(len(x), -1).argmax(1)]
        pred_b += [int(v) for v in rb[out_b].reshape(len(x), -1).argmax(1)]
        pred_plain += [int(v) for v in plain.reshape(len(x), -1).argmax(1)]
        for acc, (a, b) in zip(accs, pairs):
            acc.add(ra[a], rb[b])
        del ra, rb

    layers = []
    for acc, (a, b) in zip(accs, pairs):
        sqnr = 10 * np.log10(acc.a2 / acc.e2) if acc.e2 > 0 else float("inf")
        cos = acc.ab / np.sqrt(acc.a2 * acc.b2) if acc.a2 > 0 and acc.b2 > 0 else float("nan")
        layers.append({"a": a, "b": b, "sqnr_db": float(sqnr), "mse": acc.e2 / acc.n, "mae": acc.eabs / acc.n,
                       "max_abs": acc.emax, "cosine": float(cos), "count": acc.n})
    agreement = sum(int(p == q) for p, q in zip(pred_a, pred_b))
    doc = {
        "script": "models/photos_fixture.py",
        "onnxruntime": ort.__version__,
        "pillow": PIL.__version__,
        "images": len(files),
        "batch": BATCH,
        "files": [p.relative_to(IMAGES).as_posix() for p in files],
        "labels": labels,
        "predictions_fp32": pred_a,
        "predictions_int8": pred_b,
        "predictions_int8_plain": pred_plain,
        "agreement": agreement,
        "input0_head": [float(v) for v in input0.reshape(-1)[:16]],
        "input0_sum": float(input0.astype(np.float64).sum()),
        "input0_sha256": hashlib.sha256(np.ascontiguousarray(input0, dtype="<f4").tobytes()).hexdigest(),
        "layers": layers,
    }
    if variant:
        full = json.loads((OUT / "reference.json").read_text())
        assert full["input0_sha256"] == doc["input0_sha256"], "the images decode differently here"
        keys = ("predictions_fp32", "predictions_int8", "predictions_int8_plain", "agreement", "layers")
        full["without_avx512"] = {k: doc[k] for k in keys}
        doc = full
    (OUT / "reference.json").write_text(json.dumps(doc, indent=1) + "\n")

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    sq = [l["sqnr_db"] for l in layers]
    print(f"{len(files)} images, {len(layers)} layers, agreement {agreement}/{len(files)}, "
          f"SQNR {min(sq):.2f}..{max(sq):.2f} dB, int8 == int8_plain: {pred_b == pred_plain}")
    print(f"wrote {OUT.relative_to(ROOT)}: {total} bytes")


if __name__ == "__main__":
    main()
