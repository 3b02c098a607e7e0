"""Export the trained ResNet8 to ONNX (opset 13), BatchNorm folded, input scale folded.

    python models/export.py --ckpt models/build/resnet8.pt --out models/resnet8_fp32.onnx

Checks the ONNX model against PyTorch on real test images and prints the max abs difference.
"""
import argparse
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from cifar import data_dir, load_test
from resnet8 import ResNet8, fold_input_scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=Path(__file__).parent / "build" / "resnet8.pt")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "resnet8_fp32.onnx")
    args = ap.parse_args()

    torch.manual_seed(0)
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    model = ResNet8()
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    xte, _ = load_test(data_dir())
    x = torch.from_numpy(xte[:500]).float()
    with torch.no_grad():
        before = model(x).numpy()
    fold_input_scale(model)
    with torch.no_grad():
        folded = model(x).numpy()
    print(f"input-scale folding: max abs diff {np.abs(before - folded).max():.3e}")

    torch.onnx.export(
        model, x[:1], str(args.out), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=13,
        do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL, dynamo=False,
    )
    m = onnx.load(str(args.out))
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    assert "BatchNormalization" not in ops, f"BatchNorm was not folded: {ops}"
    m.producer_name = "quantgraph/models/export.py"
    # Name every node after its first output, so tables read well.
    for n in m.graph.node:
        if not n.name:
            n.name = n.output[0]
    onnx.save(m, str(args.out))
    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"input": xte[:500].astype(np.float32)})[0]
    print(f"ops: {ops}")
    print(f"ONNX vs PyTorch on 500 test images: max abs diff {np.abs(onnx_out - before).max():.3e}")


if __name__ == "__main__":
    main()
