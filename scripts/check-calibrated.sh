#!/usr/bin/env bash
# Calibrate's models against onnx.checker (full check) and ONNX Runtime's loader: exports the
# `calibrate` node of assets/graphs/fix-int8.qgraph with each activation type, per-channel
# weights and each range method (100 calibration images), and checks every file in the bench
# venv (scripts/bench/setup.sh: onnx + onnxruntime). CI does not need it: the Rust tests
# compare Calibrate's output with quantize_static's node for node.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
py="$(scripts/bench/setup.sh)"
cargo test --workspace --locked --no-run --quiet 2>/dev/null || cargo test --workspace --locked --no-run
out="$(mktemp -d)"; trap 'rm -rf "$out"' EXIT
for variant in "activations=int8" "activations=uint8" "per_channel=true" "symmetric_activations=true" \
               "method=percentile" "method=entropy" "method=mse"; do
  target/debug/quantgraph export assets/graphs/fix-int8.qgraph calibrate "$out/${variant/=/_}.onnx" \
    --set calibration.count=100 --set "calibrate.$variant" >/dev/null 2>"$out/err" || { cat "$out/err" >&2; exit 1; }
done
"$py" - "$out"/*.onnx <<'PY'
import sys
import onnx
import onnxruntime as ort
for path in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(path), full_check=True)
    ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    print(f"ok: {path.rsplit('/', 1)[-1]} passes onnx.checker (full check) and loads in ONNX Runtime")
PY
