"""Reference benchmark for issue 8: ONNX Runtime's own per-layer FP32-vs-INT8 comparison.

    py=$(scripts/bench/setup.sh)
    "$py" scripts/bench/qdq_loss_debug.py --images 1000 --batch 250

Runs the pipeline of onnxruntime.quantization.qdq_loss_debug on the first N images of
CIFAR-10 test_batch.bin (float32 NCHW, raw 0-255, as the project's models take them):
augment both models so every intermediate tensor is a graph output, run each augmented
model over the images in batches of B (collect_activations), pair the FP32 and QDQ
activations (create_activation_matching) and compute their SQNR in dB
(compute_activation_error). It prints per layer xmodel_err (FP32 activation vs the QDQ
model's dequantized one) and qdq_err (QDQ model, before vs after its Q/DQ pair; where the
quantizer folded a Relu into the Q/DQ pair, "before" is the pre-Relu Conv/Add output, so
this is a few dB), then `qdq_loss_debug: N images, L layers, T s`, where T is the wall time
of that whole pipeline (augmenting, both runs, matching, errors; not reading the images).
This is the figure QuantGraph's per-layer comparison is measured against.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from onnxruntime.quantization.qdq_loss_debug import (
    collect_activations, compute_activation_error, create_activation_matching, modify_model_output_intermediate_tensors)

ROOT = Path(__file__).resolve().parent.parent.parent
RECORD = 1 + 3 * 32 * 32  # CIFAR-10 binary layout: label byte, then R, G, B planes


def load_images(cifar: Path, n: int) -> np.ndarray:
    """First n images of test_batch.bin as float32 [n, 3, 32, 32], raw 0-255 (as models/cifar.py reads them)."""
    raw = np.fromfile(cifar / "test_batch.bin", dtype=np.uint8, count=n * RECORD)
    if raw.size != n * RECORD:
        sys.exit(f"{cifar / 'test_batch.bin'} holds fewer than {n} images")
    return raw.reshape(n, RECORD)[:, 1:].reshape(n, 3, 32, 32).astype(np.float32)


class Batches(CalibrationDataReader):
    def __init__(self, x: np.ndarray, batch: int):
        self.batches = iter([{"input": x[i:i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.batches, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--fp32", type=Path, default=ROOT / "models" / "resnet8_fp32.onnx")
    ap.add_argument("--qdq", type=Path, default=ROOT / "models" / "resnet8_int8_qdq.onnx")
    ap.add_argument("--cifar", type=Path,
                    default=Path(os.environ.get("QUANTGRAPH_CIFAR10") or ROOT.parent / "shared" / "data" / "cifar10"))
    args = ap.parse_args()
    x = load_images(args.cifar, args.images)

    with tempfile.TemporaryDirectory(prefix="qdq_loss_debug-") as tmp:
        t0 = time.perf_counter()
        f_aug, q_aug = Path(tmp) / "fp32_aug.onnx", Path(tmp) / "qdq_aug.onnx"
        modify_model_output_intermediate_tensors(str(args.fp32), str(f_aug))
        modify_model_output_intermediate_tensors(str(args.qdq), str(q_aug))
        float_acts = collect_activations(str(f_aug), Batches(x, args.batch))
        qdq_acts = collect_activations(str(q_aug), Batches(x, args.batch))
        errors = compute_activation_error(create_activation_matching(qdq_acts, float_acts))
        secs = time.perf_counter() - t0

    width = max(len(name) for name in errors)
    print(f"{'tensor':<{width}}  {'xmodel_err dB':>13}  {'qdq_err dB':>10}")
    for name, err in sorted(errors.items()):  # ORT's order follows a set, so it varies by run
        print(f"{name:<{width}}  {err.get('xmodel_err', float('nan')):>13.2f}  {err['qdq_err']:>10.2f}")
    print(f"qdq_loss_debug: {args.images} images, {len(errors)} layers, {secs:.2f} s")


if __name__ == "__main__":
    main()
