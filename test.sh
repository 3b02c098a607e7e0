#!/usr/bin/env bash
# QuantGraph's whole test suite: `./test.sh` (extra arguments go to `cargo test`).
# Installs what the tests need first: the ONNX Runtime library (scripts/ensure-ort.sh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
scripts/ensure-system.sh
# Lint gate: formatting, clippy (warnings are errors), no unused dependencies (cargo-machete,
# installed once into .cache/tools), then the tests.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
machete="$(command -v cargo-machete || echo "$repo/.cache/tools/bin/cargo-machete")"
if [[ ! -x "$machete" ]]; then
  echo "installing cargo-machete 0.9.2 into .cache/tools (once)"
  cargo install cargo-machete --version 0.9.2 --locked --root "$repo/.cache/tools"
fi
"$machete" --skip-target-dir
cargo test --workspace --locked "$@"
