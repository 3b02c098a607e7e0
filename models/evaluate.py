"""Measure the models with Python onnxruntime and write the manifest and test fixtures.

    python models/evaluate.py

* models/manifest.json: sha256, how each model was made, top-1 on test_batch.bin.
* tests/fixtures/ort_reference.json: correct-prediction counts on test_batch.bin (raw 0-255,
  NCHW) per model, as Python onnxruntime gives them; the Rust tests must match exactly.
* tests/fixtures/qdq_loss_debug.json: per-layer qdq_err / xmodel_err from
  onnxruntime.quantization.qdq_loss_debug on the first 1,000 test images (its pipeline holds
  every activation of both models: about 2 GB here).
"""
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations, compute_activation_error, create_activation_matching, modify_model_output_intermediate_tensors)

from cifar import data_dir, load_test

HERE = Path(__file__).parent
ROOT = HERE.parent
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ["resnet8_fp32.onnx", "resnet8_int8_qdq.onnx", "resnet8_u8s8_qdq.onnx"]
DEBUG_SAMPLES = 1000


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = [sess.run(None, {"input": x[i:i + 250]})[0] for i in range(0, len(x), 250)]
    return np.concatenate(outs)


class Reader:
    def __init__(self, x):
        self.batches = [x[i:i + 64] for i in range(0, len(x), 64)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"input": self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0

    def __iter__(self):
        return iter(self.batches_as_inputs())

    def batches_as_inputs(self):
        return [{"input": b} for b in self.batches]


def loss_debug(fp32: Path, qdq: Path, x: np.ndarray) -> dict:
    build = HERE / "build"
    build.mkdir(exist_ok=True)
    f_aug, q_aug = build / "fp32_aug.onnx", build / f"{qdq.stem}_aug.onnx"
    modify_model_output_intermediate_tensors(str(fp32), str(f_aug))
    modify_model_output_intermediate_tensors(str(qdq), str(q_aug))
    fa = collect_activations(str(f_aug), Reader(x))
    qa = collect_activations(str(q_aug), Reader(x))
    match = create_activation_matching(qa, fa)
    err = compute_activation_error(match)
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in err.items()}


def main():
    xte, yte = load_test(data_dir())
    x = xte.astype(np.float32)
    # Other scripts add sections to these files (models/mobilenetv2.py, models/reference_without_vnni.py)
    # and the training log is not committed: keep what this script does not make.
    def existing(path):
        return json.loads(path.read_text()) if path.exists() else {}
    old_manifest, old_reference = existing(HERE / "manifest.json"), existing(FIXTURES / "ort_reference.json")
    old_fp32 = old_manifest.get("models", {}).get("resnet8_fp32.onnx", {})
    train_info = {k: old_fp32[k] for k in ("epochs", "final_pytorch_test_top1") if k in old_fp32}
    log = HERE / "build" / "train.log"
    if log.exists():
        epochs = [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
        if epochs:
            train_info = {"epochs": len(epochs), "final_pytorch_test_top1": epochs[-1]["test_top1"]}
    made = {
        "resnet8_fp32.onnx": {
            "script": "models/train.py --epochs 40 --lr 0.2 --seed 1234; models/export.py",
            "training": "PyTorch (CPU), SGD nesterov momentum 0.9, weight decay 5e-4, OneCycle max lr 0.2, batch 128, "
                        "label smoothing 0.1, random crop (4 px zero padding) + horizontal flip, seed 1234, "
                        "on data_batch_1..5.bin", **train_info,
            "export": "torch.onnx.export opset 13, BatchNorm folded, 1/255 input scale folded into the first conv",
        },
        "resnet8_int8_qdq.onnx": {
            "script": "models/quantize.py",
            "quantization": "onnxruntime.quantization.quantize_static, QDQ, per-tensor, MinMax, int8 weights, int8 activations (s8s8)",
            "calibration": "first 1000 images of data_batch_1.bin (training split, 100 per class)",
        },
        "resnet8_u8s8_qdq.onnx": {
            "script": "models/quantize.py",
            "quantization": "onnxruntime.quantization.quantize_static, QDQ, per-tensor, MinMax, int8 weights, uint8 activations (u8s8)",
            "calibration": "first 1000 images of data_batch_1.bin (training split, 100 per class)",
        },
    }
    manifest = {"onnxruntime": ort.__version__, "dataset": "test_batch.bin (10,000 images, JPEG-derived CIFAR-10; see shared/data/cifar10/README.md)",
                "input": {"name": "input", "dtype": "float32", "shape": ["N", 3, 32, 32],
                          "preprocessing": "raw pixel values 0-255, RGB planes (NCHW), no mean/std"},
                "output": {"name": "logits", "shape": ["N", 10], "meaning": "logits (no softmax)"},
                "models": {}}
    reference = {"onnxruntime": ort.__version__, "images": "test_batch.bin, all 10000, raw 0-255 NCHW", "models": {}}
    for name in MODELS:
        p = HERE / name
        t0 = time.time()
        logits = predict(p, x)
        secs = time.time() - t0
        pred = logits.argmax(1)
        correct = int((pred == yte).sum())
        manifest["models"][name] = {"sha256": sha256(p), "size_bytes": p.stat().st_size, "top1": correct / len(yte),
                                    "correct": correct, "total": len(yte), **made[name]}
        reference["models"][name] = {"correct": correct, "total": len(yte),
                                     "first_predictions": pred[:50].tolist()}
        print(f"{name}: top-1 {correct / len(yte):.4f} ({correct}/{len(yte)}), {secs:.1f} s", flush=True)
    manifest = {**old_manifest, **manifest}
    reference = {**old_reference, **reference}
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "ort_reference.json").write_text(json.dumps(reference, indent=2) + "\n")
    debug = {"onnxruntime": ort.__version__, "images": f"first {DEBUG_SAMPLES} of test_batch.bin, raw 0-255 NCHW",
             "samples": DEBUG_SAMPLES, "models": {}}
    for name in MODELS[1:]:
        debug["models"][name] = loss_debug(HERE / MODELS[0], HERE / name, x[:DEBUG_SAMPLES])
    (FIXTURES / "qdq_loss_debug.json").write_text(json.dumps(debug, indent=2, sort_keys=True) + "\n")
    print("wrote models/manifest.json, tests/fixtures/ort_reference.json, tests/fixtures/qdq_loss_debug.json")
    if manifest["models"]["resnet8_fp32.onnx"]["top1"] < 0.80:
        print("WARNING: FP32 top-1 is below the 80 % target", file=sys.stderr)


if __name__ == "__main__":
    main()
