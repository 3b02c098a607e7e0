#!/usr/bin/env bash
# Build QuantGraph and open the editor on the bundled default graph: `./quantgraph.sh`.
# Arguments replace the default: `./quantgraph.sh run assets/graphs/default.qgraph --json`,
# `./quantgraph.sh nodes`, `./quantgraph.sh edit my.qgraph`.
# Without a display (no $DISPLAY / $WAYLAND_DISPLAY) the editor runs under Xvfb with Mesa's
# software Vulkan and saves a screenshot to target/editor-screenshot.png.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
scripts/ensure-system.sh
if [[ $# -eq 0 ]]; then
  set -- edit assets/graphs/default.qgraph
fi
cargo build --locked --quiet
bin="$repo/target/debug/quantgraph"
if [[ "$1" == "edit" && -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
  echo "quantgraph.sh: no display; running the editor under Xvfb, screenshot → target/editor-screenshot.png" >&2
  export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$bin" "$@" --screenshot target/editor-screenshot.png
fi
exec "$bin" "$@"
