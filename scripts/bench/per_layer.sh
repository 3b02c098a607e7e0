#!/usr/bin/env bash
# Issue 8's benchmark: QuantGraph's per-layer FP32↔INT8 table against ONNX Runtime's own
# qdq_loss_debug pipeline, side by side in one run (same images, same batch size), as
# ratios of whole-process wall time and peak RSS (/usr/bin/time), median of REPEAT runs;
# then QuantGraph's peak RSS for all 10,000 test images, and the edit loop: full
# evaluation, an edit of a last-stage and of a first-stage activation scale (run --then,
# same process), against plain ONNX Runtime inference of the INT8 model.
#
#   scripts/bench/per_layer.sh                # N=1000 B=16 REPEAT=3 (B: the default graph's batch)
#   N=1000 B=250 REPEAT=5 scripts/bench/per_layer.sh
#   FULL=1 scripts/bench/per_layer.sh         # also qdq_loss_debug on 10,000 images (≈20 GB RSS!)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
N="${N:-1000}"; B="${B:-16}"; REPEAT="${REPEAT:-3}"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
py="$(scripts/bench/setup.sh)"
cargo test --workspace --locked --no-run --quiet 2>/dev/null || cargo test --workspace --locked --no-run
qg="$repo/target/debug/quantgraph"
graph=assets/graphs/default.qgraph
# The first N test images, as the Python side reads them (per_class=0: no class balancing).
sets=(--set "cifar10_test.per_class=0" --set "cifar10_test.count=$N"
      --set "probe_fp32.batch_size=$B" --set "probe_int8.batch_size=$B")
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# measure NAME CMD...: append "wall_s rss_kb" of one run to $tmp/NAME
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  cat "$tmp/t" >>"$tmp/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "per-layer table, $N images, batch $B, median of $REPEAT (interleaved runs):"
for _ in $(seq "$REPEAT"); do
  measure qg "$qg" run "$graph" --json "${sets[@]}"
  measure ort "$py" scripts/bench/qdq_loss_debug.py --images "$N" --batch "$B"
done
qg_t=$(cut -d' ' -f1 "$tmp/qg" | median); qg_m=$(cut -d' ' -f2 "$tmp/qg" | median)
ort_t=$(cut -d' ' -f1 "$tmp/ort" | median); ort_m=$(cut -d' ' -f2 "$tmp/ort" | median)
awk -v a="$qg_t" -v b="$qg_m" -v c="$ort_t" -v d="$ort_m" 'BEGIN {
  printf "  %-28s %8s %10s\n", "", "wall s", "peak RSS"
  printf "  %-28s %8.2f %7.0f MB\n", "QuantGraph run", a, b/1024
  printf "  %-28s %8.2f %7.0f MB\n", "ORT qdq_loss_debug (Python)", c, d/1024
  printf "  %-28s %8.2f× %9.2f×   (targets: ≤ 0.33× time, ≤ 0.2× RSS)\n", "ratio QuantGraph / ORT", a/c, b/d }'

echo "all 10,000 test images, batch $B:"
measure qg10k "$qg" run "$graph" --json --set cifar10_test.per_class=0 --set cifar10_test.count=0 \
  --set "probe_fp32.batch_size=$B" --set "probe_int8.batch_size=$B"
awk '{ printf "  QuantGraph: %.1f s, peak RSS %.0f MB (target < 600 MB)\n", $1, $2 / 1024 }' "$tmp/qg10k"
if [[ -n "${FULL:-}" ]]; then
  measure ort10k "$py" scripts/bench/qdq_loss_debug.py --images 10000 --batch "$B"
  awk '{ printf "  ORT qdq_loss_debug: %.1f s, peak RSS %.0f MB\n", $1, $2 / 1024 }' "$tmp/ort10k"
fi

echo "edit loop, $N images (one process: evaluate, then each edit re-evaluated incrementally):"
last='override.edits=[{"tensor":"/stage3/Relu_1_output_0","scale":0.05}]'
first='override.edits=[{"tensor":"/Relu_output_0","scale":0.05}]'
"$qg" run "$graph" --json "${sets[@]}" --then "$last" --then "$first" >"$tmp/loop.json" 2>/dev/null
plain=$("$py" - "$N" "$B" <<'PY'
import os, sys, time, numpy as np, onnxruntime as ort
n, b = int(sys.argv[1]), int(sys.argv[2])
rec = 1 + 3072
raw = np.fromfile(os.path.join(os.environ["QUANTGRAPH_CIFAR10"], "test_batch.bin"), dtype=np.uint8, count=n * rec)
x = raw.reshape(n, rec)[:, 1:].reshape(n, 3, 32, 32).astype(np.float32)
s = ort.InferenceSession("models/resnet8_int8_qdq.onnx", providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
times = []
for _ in range(5):
    t = time.perf_counter()
    for i in range(0, n, b):
        s.run(None, {name: x[i:i + b]})
    times.append(time.perf_counter() - t)
print(sorted(times)[2])
PY
)
"$py" - "$tmp/loop.json" "$plain" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["evaluations"]
plain = float(sys.argv[2])
full = ev[0]["wall_secs"]
print(f"  {'':34} {'wall s':>7} {'× full':>7} {'× plain INT8':>13}  ran")
for label, e in zip(["full evaluation", "edit last-stage scale", "edit first-stage scale"], ev):
    ran = ", ".join(f"{r['node'].split(' (')[0]} {r['secs']:.2f}" for r in e["ran"])
    print(f"  {label:34} {e['wall_secs']:7.2f} {e['wall_secs'] / full:7.2f} {e['wall_secs'] / plain:13.1f}  {ran}")
print(f"  {'plain ORT INT8 inference (Python)':34} {plain:7.2f}")
print("  (targets for the last-stage edit: ≤ 0.25× full and ≤ 3× plain INT8)")
PY
