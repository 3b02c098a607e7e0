"""Tiny ONNX models for unit tests (no dataset pixels involved).

    python models/make_fixtures.py

Writes tests/fixtures/tiny/: tiny_fp32.onnx (Conv-Relu-Conv-Relu-GAP-Flatten-Gemm on
[N,3,32,32] raw 0-255 input), tiny_qdq.onnx (its QDQ twin, calibrated on seeded random
images), broken.onnx (tiny_fp32 cut in half) and not_onnx.onnx (text).
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny"


def build() -> onnx.ModelProto:
    rng = np.random.default_rng(7)
    w1 = (rng.standard_normal((4, 3, 3, 3)) * 0.01).astype(np.float32)
    b1 = (rng.standard_normal(4) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    b2 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w3 = (rng.standard_normal((10, 8)) * 0.5).astype(np.float32)
    b3 = (rng.standard_normal(10) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"), (b3, "b3")]]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2", "b2"], ["conv2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="quantgraph/models/make_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class Reader(CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(11)
        self.batches = [rng.integers(0, 256, (16, 3, 32, 32)).astype(np.float32) for _ in range(4)]

    def get_next(self):
        return {"input": self.batches.pop()} if self.batches else None


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    model = build()
    onnx.save(model, str(OUT / "tiny_fp32.onnx"))
    quantize_static(str(OUT / "tiny_fp32.onnx"), str(OUT / "tiny_qdq.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=False)
    data = (OUT / "tiny_fp32.onnx").read_bytes()
    (OUT / "broken.onnx").write_bytes(data[: len(data) // 2])
    (OUT / "not_onnx.onnx").write_text("this is not an ONNX model\n")
    q = onnx.load(str(OUT / "tiny_qdq.onnx"))
    print("tiny_qdq ops:", [n.op_type for n in q.graph.node])


if __name__ == "__main__":
    main()
