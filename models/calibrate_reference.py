"""Ranges ONNX Runtime's own calibrators choose for the project's FP32 ResNet8, for the
Calibrate node's tests (tests/calibrate.rs).

    python models/calibrate_reference.py

MinMax, Percentile (ORT defaults: 2,048 bins of |x|, 99.999, symmetric) and Entropy
(2,048 bins, 128 quantized bins: ORT's default of 128 bins leaves a single candidate, the
whole range) on the first IMAGES training images of data_batch_1.bin. Writes
tests/fixtures/calibrate/ranges.json: tensor -> [low, high] per method. Also writes, with
quantize_static (QDQ, s8s8, the same images), resnet8_symmetric_qdq.onnx (ActivationSymmetric)
and resnet8_softmax_qdq.onnx (from resnet8_softmax_fp32.onnx, ResNet8 with a Softmax after
its logits), and op_mix_qdq.onnx from op_mix_fp32.onnx (a small model with Clip, MaxPool,
Concat, Mul, AveragePool and MatMul, made here with random weights), for the cases the
project's models do not cover. No pixel data is written.
"""
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import create_calibrator

from cifar import data_dir, read_batch
from quantize import Reader  # the calibration batches models/quantize.py feeds ORT

HERE = Path(__file__).parent
OUT = HERE.parent / "tests" / "fixtures" / "calibrate" / "ranges.json"
IMAGES = 200


def ranges(method, images, extra):
    with tempfile.TemporaryDirectory() as tmp:
        cal = create_calibrator(HERE / "resnet8_fp32.onnx", [], Path(tmp) / "augmented.onnx",
                                calibrate_method=method, extra_options=extra)
        cal.collect_data(Reader(images))
        data = cal.compute_data()
        return {name: [float(v.range_value[0]), float(v.range_value[1])] for name, v in data.data.items()}


def with_softmax(src: Path, dst: Path):
    """The FP32 ResNet8 with a Softmax after its logits (output "probs")."""
    m = onnx.load(str(src))
    g = m.graph
    logits = g.output[0].name
    g.node.append(onnx.helper.make_node("Softmax", [logits], ["probs"], name="softmax", axis=1))
    out = onnx.helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["N", 10])
    del g.output[:]
    g.output.append(out)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


def op_mix(dst: Path):
    """A small CIFAR-shaped model (random weights, seed 7) with the ops the project's models
    lack: Clip(0, 6) after a Conv (folded by ORT's quantizer), Clip(1, 6) (a lower bound above
    0), MaxPool, Concat of two branches, Mul by a constant, AveragePool, an Add of a residual
    followed by Relu, a MatMul + Add head (output "logits"), and an initializer no node reads.
    """
    rng = np.random.default_rng(7)
    inits = []

    def const(name, value):
        inits.append(onnx.numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def conv(name, x, cin, cout, k, std):
        w = const(f"{name}.weight", rng.normal(0, std, (cout, cin, k, k)))
        b = const(f"{name}.bias", rng.normal(0, 0.5, cout))
        return onnx.helper.make_node("Conv", [x, w, b], [f"{name}_out"], name=name, pads=[k // 2] * 4)

    mk = onnx.helper.make_node
    nodes = [
        conv("conv0", "input", 3, 8, 3, 0.0045),
        mk("Clip", ["conv0_out", const("zero", 0.0), const("six", 6.0)], ["relu6_0"], name="clip0"),
        mk("MaxPool", ["relu6_0"], ["pool0"], name="maxpool0", kernel_shape=[2, 2], strides=[2, 2]),
        conv("branch_a", "pool0", 8, 8, 1, 0.5),
        mk("Relu", ["branch_a_out"], ["a_relu"], name="relu_a"),
        conv("branch_b", "pool0", 8, 8, 3, 0.15),
        mk("Clip", ["branch_b_out", const("one", 1.0), "six"], ["b_clip"], name="clip_b"),
        mk("Concat", ["a_relu", "b_clip"], ["cat"], name="concat", axis=1),
        mk("Mul", ["cat", const("half", 0.5)], ["scaled"], name="mul_half"),
        mk("AveragePool", ["scaled"], ["pool1"], name="avgpool1", kernel_shape=[2, 2], strides=[2, 2]),
        conv("conv1", "pool1", 16, 16, 1, 0.3),
        mk("Add", ["conv1_out", "pool1"], ["res"], name="residual"),
        mk("Relu", ["res"], ["res_relu"], name="relu_res"),
        mk("GlobalAveragePool", ["res_relu"], ["gap"], name="gap"),
        mk("Flatten", ["gap"], ["flat"], name="flatten"),
        mk("MatMul", ["flat", const("fc.weight", rng.normal(0, 0.5, (16, 10)))], ["fc_mm"], name="fc"),
        mk("Add", ["fc_mm", const("fc.bias", rng.normal(0, 0.1, 10))], ["logits"], name="fc_bias"),
    ]
    const("unused.weight", rng.normal(0, 1, (4, 4)))  # an exporter's leftover, read by no node
    graph = onnx.helper.make_graph(
        nodes, "op_mix",
        [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 10])],
        inits)
    m = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(dst))


def quantized_references(images):
    """quantize_static QDQ s8s8 references for the cases the project's models do not cover:
    symmetric activations (ORT keeps the Relus and gives their inputs the Relu's range), and
    a Softmax output (ORT fixes its range to [0, 1])."""
    soft = OUT.parent / "resnet8_softmax_fp32.onnx"
    with_softmax(HERE / "resnet8_fp32.onnx", soft)
    mix = OUT.parent / "op_mix_fp32.onnx"
    op_mix(mix)
    cases = [
        (HERE / "resnet8_fp32.onnx", OUT.parent / "resnet8_symmetric_qdq.onnx", {"ActivationSymmetric": True}),
        (soft, OUT.parent / "resnet8_softmax_qdq.onnx", {}),
        (mix, OUT.parent / "op_mix_qdq.onnx", {}),
    ]
    for src, dst, extra in cases:
        quantize_static(str(src), str(dst), Reader(images), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=False,
                        extra_options=extra)
        print(f"wrote {dst}")


def main():
    images, _ = read_batch(data_dir() / "data_batch_1.bin")
    images = images[:IMAGES]
    quantized_references(images)
    out = {
        "images": IMAGES,
        "onnxruntime": onnxruntime.__version__,
        "minmax": ranges(CalibrationMethod.MinMax, images, {}),
        "percentile": ranges(CalibrationMethod.Percentile, images, {}),
        "entropy": ranges(CalibrationMethod.Entropy, images, {"num_bins": 2048, "num_quantized_bins": 128}),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({len(out['minmax'])} tensors)")


if __name__ == "__main__":
    main()
