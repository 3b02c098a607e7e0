#!/usr/bin/env bash
# Build QuantGraph and open the editor on the bundled default graph: `./quantgraph.sh`.
# Arguments replace the default: `./quantgraph.sh run assets/graphs/default.qgraph --json`,
# `./quantgraph.sh nodes`, `./quantgraph.sh edit my.qgraph`.
# Without a display (no $DISPLAY / $WAYLAND_DISPLAY) the editor runs under Xvfb with Mesa's
# software Vulkan and saves a screenshot to target/editor-screenshot.png.
#
# The build is the one `./test.sh` makes (same command, same features, same profile), so
# running one after the other never rebuilds the dependencies; QuantGraph's own crates are
# compiled at opt-level 3 in that profile (Cargo.toml), which is what makes it run at
# release speed. A first build prints cargo's progress.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$repo"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
scripts/ensure-system.sh
if [[ $# -eq 0 ]]; then
  set -- edit assets/graphs/default.qgraph
fi
bin="$repo/target/debug/quantgraph"
# `cargo test --no-run` builds the binary with exactly the feature set the test suite
# resolves; a plain `cargo build` resolves fewer features and would rebuild Bevy and egui.
# Cargo's "Compiling …" lines are the progress of a first build (the list of test
# executables it prints at the end is left out).
echo "quantgraph.sh: building QuantGraph (a first build takes several minutes)" >&2
cargo test --workspace --locked --no-run 2>&1 | grep --line-buffered -v '^ *Executable ' >&2
if [[ "$1" == "edit" && -z "${DISPLAY:-}" && -z "${WAYLAND_DISPLAY:-}" ]]; then
  echo "quantgraph.sh: no display; running the editor under Xvfb, screenshot → target/editor-screenshot.png" >&2
  export WGPU_BACKEND="${WGPU_BACKEND:-vulkan}"
  exec xvfb-run -a -s "-screen 0 1600x1000x24" "$bin" "$@" --screenshot target/editor-screenshot.png
fi
exec "$bin" "$@"
