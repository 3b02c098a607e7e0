#!/usr/bin/env bash
# QuantGraph's whole test suite: `./test.sh` (extra arguments go to `cargo test`).
# Installs what the tests need first: the ONNX Runtime library (scripts/ensure-ort.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
scripts/ensure-system.sh
# Lint gate: formatting and clippy (warnings are errors), then the tests.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
