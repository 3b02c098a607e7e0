#!/usr/bin/env bash
# Issue 14's benchmark: a folder of photos (generated JPEGs of mixed sizes) through the
# ImageNet-size MobileNetV2-style model, per-layer FP32↔INT8 comparison with
# assets/graphs/photos.qgraph (shorter side 256, crop 224, ImageNet normalization), side by
# side with the same streamed work in Python onnxruntime + PIL
# (scripts/bench/mobilenet_reference.py): wall time, images/s and peak RSS as ratios; then
# QuantGraph's peak RSS for 10,000 images (memory must not grow with the image count).
#
#   scripts/bench/photos.sh                 # N=1000 B=8, then 10,000 images
#   N=200 BIG=2000 scripts/bench/photos.sh  # quicker
#   FULL=1 scripts/bench/photos.sh          # also the Python reference on BIG images
#
# Images are generated once into .cache/bench-photos/<count> (git-ignored).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
N="${N:-1000}"; B="${B:-8}"; BIG="${BIG:-10000}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
py="$(scripts/bench/setup.sh)"
cargo test --workspace --locked --no-run --quiet 2>/dev/null || cargo test --workspace --locked --no-run
qg="$repo/target/debug/quantgraph"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

images() { # images COUNT → folder
  local dir="$repo/.cache/bench-photos/$1"
  if [[ ! -f "$dir/labels.txt" ]]; then
    "$py" scripts/bench/make_images.py --out "$dir" --count "$1" >&2
  fi
  echo "$dir"
}
measure() { # measure NAME CMD... → "wall_s rss_kb" in $tmp/NAME
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/$name" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" || { cat "$tmp/$name.err" >&2; exit 1; }
}
qg_run() { # qg_run DIR COUNT: the command line, in the array qg_cmd
  qg_cmd=("$qg" run assets/graphs/photos.qgraph --json --set "photos.path=$1" --set "photos.count=$2"
    --set "probe_fp32.batch_size=$B" --set "probe_int8.batch_size=$B" --set compare.classification=always)
}
ref_run() { # ref_run DIR COUNT: the command line, in the array ref_cmd
  ref_cmd=("$py" scripts/bench/mobilenet_reference.py --images "$1" --count "$2" --batch "$B"
    --fp32 models/mobilenetv2_fp32.onnx --int8 models/mobilenetv2_int8_qdq.onnx)
}

small="$(images "$N")"
echo "per-layer FP32↔INT8, MobileNetV2-style 224×224, $N generated JPEGs (mixed sizes), batch $B:"
qg_run "$small" "$N"; measure qg "${qg_cmd[@]}"
ref_run "$small" "$N"; measure ref "${ref_cmd[@]}"
read -r qg_t qg_m <"$tmp/qg"; read -r ref_t ref_m <"$tmp/ref"
awk -v a="$qg_t" -v b="$qg_m" -v c="$ref_t" -v d="$ref_m" -v n="$N" 'BEGIN {
  printf "  %-34s %8s %10s %10s\n", "", "wall s", "images/s", "peak RSS"
  printf "  %-34s %8.2f %10.1f %7.0f MB\n", "QuantGraph run", a, n/a, b/1024
  printf "  %-34s %8.2f %10.1f %7.0f MB\n", "Python onnxruntime + PIL (stream)", c, n/c, d/1024
  printf "  %-34s %8.2f× %20.2f×\n", "ratio QuantGraph / Python", a/c, b/d }'
grep -E "agreement|layers" "$tmp/ref.out" | tail -2 | sed 's/^/  python: /'

big="$(images "$BIG")"
echo "$BIG images, batch $B:"
qg_run "$big" "$BIG"; measure qgbig "${qg_cmd[@]}"
awk -v n="$BIG" '{ printf "  QuantGraph: %.1f s (%.1f images/s), peak RSS %.0f MB\n", $1, n/$1, $2/1024 }' "$tmp/qgbig"
if [[ -n "${FULL:-}" ]]; then
  ref_run "$big" "$BIG"; measure refbig "${ref_cmd[@]}"
  awk -v n="$BIG" '{ printf "  Python: %.1f s (%.1f images/s), peak RSS %.0f MB\n", $1, n/$1, $2/1024 }' "$tmp/refbig"
fi
