"""Quantize the FP32 ResNet8 to INT8 QDQ with ONNX Runtime's static quantization.

    python models/quantize.py

Per-tensor, int8 weights, QDQ format; MinMax calibration on the first N images of
data_batch_1.bin (training images only; that prefix is class-balanced). Two variants:
int8 activations (s8s8) and uint8 activations (u8s8).
"""
import argparse
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cifar import data_dir, read_batch

HERE = Path(__file__).parent


class Reader(CalibrationDataReader):
    def __init__(self, images: np.ndarray, batch: int = 50):
        self.batches = [images[i:i + batch].astype(np.float32) for i in range(0, len(images), batch)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"input": self.batches[self.i - 1]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp32", type=Path, default=HERE / "resnet8_fp32.onnx")
    ap.add_argument("--calib", type=int, default=1000, help="images from the start of data_batch_1.bin")
    args = ap.parse_args()
    images, _ = read_batch(data_dir() / "data_batch_1.bin")
    calib = images[: args.calib]
    pre = HERE / "build" / "resnet8_fp32_pre.onnx"
    pre.parent.mkdir(exist_ok=True)
    quant_pre_process(str(args.fp32), str(pre), skip_symbolic_shape=True)
    for act, out in [(QuantType.QInt8, "resnet8_int8_qdq.onnx"), (QuantType.QUInt8, "resnet8_u8s8_qdq.onnx")]:
        quantize_static(
            str(pre), str(HERE / out), Reader(calib), quant_format=QuantFormat.QDQ,
            activation_type=act, weight_type=QuantType.QInt8, per_channel=False,
        )
        print(f"wrote {out} ({act.name} activations, {args.calib} calibration images)")


if __name__ == "__main__":
    main()
