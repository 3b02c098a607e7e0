"""Top-1 counts and predictions of the committed models as ONNX Runtime computes them on an
x86-64 CPU *without* VNNI (AVX2 or AVX-512 without VNNI), merged into
tests/fixtures/ort_reference.json and tests/fixtures/foreign/reference.json under
"without_vnni".

ONNX Runtime's u8s8 integer kernels on such CPUs multiply-add pairs of uint8×int8 products
into int16 (vpmaddubsw), which saturates: the u8s8 model's predictions differ from those on a
CPU with VNNI (which `models/evaluate.py` recorded; ORT documents this, and recommends
reduce_range or u8u8 for such CPUs). Both are what Python onnxruntime gives on that CPU, so the
tests pick the reference of the CPU they run on. Run on a machine without VNNI, with the
onnxruntime version of the manifest (scripts/bench/setup.sh makes such a Python):

    .cache/bench-venv/bin/python models/reference_without_vnni.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
from cifar import data_dir, read_batch  # noqa: E402
from evaluate import FIXTURES, HERE, MODELS, predict  # noqa: E402


def main():
    flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "").split()
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        sys.exit("this CPU has VNNI: run models/evaluate.py for its reference instead")
    path = FIXTURES / "ort_reference.json"
    reference = json.loads(path.read_text())
    if reference["onnxruntime"] != ort.__version__:
        sys.exit(f"the reference was made with onnxruntime {reference['onnxruntime']}, this is {ort.__version__}")
    images, y = read_batch(data_dir() / "test_batch.bin")
    x = images.astype(np.float32)
    out = {}
    for name in MODELS:
        pred = predict(HERE / name, x).argmax(1)
        out[name] = {"correct": int((pred == y).sum()), "total": len(y), "first_predictions": pred[:50].tolist()}
        print(f"{name}: {out[name]['correct']}/{len(y)} (with VNNI: {reference['models'][name]['correct']})")
    reference["without_vnni"] = {"cpu": "x86-64 without VNNI (AVX2)", "models": out}
    path.write_text(json.dumps(reference, indent=2) + "\n")

    # The models of other exporters and quantizers (models/foreign.py), on its 64 images.
    import foreign
    path = FIXTURES / "foreign" / "reference.json"
    reference = json.loads(path.read_text())
    xf, yf = x[:foreign.N_REF], y[:foreign.N_REF]
    out = {}
    for name, m in reference["models"].items():
        model = Path(__file__).parents[1] / m["path"]
        pred = foreign.session(model).run(None, foreign.feed_for(model, xf))[0].argmax(1)
        out[name] = {"correct": int((pred == yf).sum()), "predictions": pred.tolist()}
        print(f"{name}: {out[name]['correct']}/{len(yf)} (with VNNI: {m['correct']})")
    reference["without_vnni"] = {"cpu": "x86-64 without VNNI (AVX2)", "models": out}
    path.write_text(json.dumps(reference, indent=1) + "\n")  # as models/foreign.py writes it


if __name__ == "__main__":
    main()
