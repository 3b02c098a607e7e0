#!/usr/bin/env bash
# Build and run QuantGraph on the bundled default graph: `./quantgraph.sh`
# (any arguments replace the default: `./quantgraph.sh nodes`, `./quantgraph.sh run FILE --json`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
if [[ $# -eq 0 ]]; then
  set -- run assets/graphs/default.qgraph --out target/default-graph-results
fi
cargo run --locked --quiet -- "$@"
