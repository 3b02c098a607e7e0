#!/usr/bin/env bash
# Issue 10's benchmark: QuantGraph's Sensitivity Sweep (assets/graphs/fix-int8.qgraph) against
# the same sweep as a plain Python onnxruntime loop (scripts/bench/sensitivity_loop.py), side by
# side in one run (same image count, same batch size), as whole-process wall time and peak RSS
# (/usr/bin/time), median of REPEAT interleaved runs, and the ratio QuantGraph / Python.
#
#   scripts/bench/sensitivity.sh                # N=1000 B=16 REPEAT=3 (B: the graphs' batch)
#   N=1000 B=64 REPEAT=5 scripts/bench/sensitivity.sh
#
# Two QuantGraph runs per round: scripts/bench/sweep-only.qgraph is the Python loop's work and
# nothing more (the committed QDQ model, the first N test images, the sweep; plus the sweep's
# mixed-precision model), so its whole-process ratio is the like-for-like one; the example
# graph assets/graphs/fix-int8.qgraph shows what the whole repair pipeline costs beside it.
# Each process starts fresh, so QuantGraph's variant memo (in-process) reuses nothing. The
# fix-int8 run evaluates every sink of the graph: besides the sweep (FP32 reference, full
# INT8, two variants per layer) it builds the mixed-precision model (more variants, until
# top-1 is within 0.2 pt of FP32) and probes and compares it with FP32; the Python loop does
# the sweep only, so the whole-process ratio is conservative for QuantGraph. The graph also makes its
# QDQ model (Calibrate, MinMax on 1,000 training images: the very model models/quantize.py
# wrote, which the Python loop loads), another second or so on QuantGraph's side. The sweep node's
# own time (from --json) is printed too. QuantGraph takes per_class=N/10 (the graph's
# class-balanced pick), the Python loop the first N images of test_batch.bin.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
N="${N:-1000}"; B="${B:-16}"; REPEAT="${REPEAT:-3}"
export QUANTGRAPH_CIFAR10="${QUANTGRAPH_CIFAR10:-$repo/../shared/data/cifar10}"
export ORT_DYLIB_PATH="$(scripts/ensure-ort.sh)"
py="$(scripts/bench/setup.sh)"
cargo test --workspace --locked --no-run --quiet 2>/dev/null || cargo test --workspace --locked --no-run
qg="$repo/target/debug/quantgraph"
graph=assets/graphs/fix-int8.qgraph
per_class=$(( N % 10 == 0 && N <= 10000 ? N / 10 : 0 ))
sets=(--set "cifar10_test.count=$N" --set "cifar10_test.per_class=$per_class" --set "sweep.batch_size=$B"
      --set "probe_fp32.batch_size=$B" --set "probe_mixed.batch_size=$B")
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

# measure NAME CMD...: append "wall_s rss_kb" of one run to $tmp/NAME, its stdout to $tmp/NAME.out
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$tmp/t" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
  cat "$tmp/t" >>"$tmp/$name"
  cat "$tmp/out" >>"$tmp/$name.out"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

only_sets=(--set "cifar10_test.count=$N" --set "cifar10_test.per_class=0" --set "sweep.batch_size=$B")

echo "sensitivity sweep, $N images, batch $B, median of $REPEAT (interleaved runs):"
for i in $(seq "$REPEAT"); do
  measure only "$qg" run scripts/bench/sweep-only.qgraph --json "${only_sets[@]}"
  cp "$tmp/out" "$tmp/only.$i.json"
  measure qg "$qg" run "$graph" --json "${sets[@]}"
  cp "$tmp/out" "$tmp/qg.$i.json"
  measure py "$py" scripts/bench/sensitivity_loop.py --images "$N" --batch "$B"
done
qg_t=$(cut -d' ' -f1 "$tmp/qg" | median); qg_m=$(cut -d' ' -f2 "$tmp/qg" | median)
only_t=$(cut -d' ' -f1 "$tmp/only" | median); only_m=$(cut -d' ' -f2 "$tmp/only" | median)
py_t=$(cut -d' ' -f1 "$tmp/py" | median); py_m=$(cut -d' ' -f2 "$tmp/py" | median)
# The sweep node's own seconds per run, and its note on how many variants it ran.
"$py" - "$tmp"/qg.*.json >"$tmp/sweep" <<'PY'
import json, sys
secs, note = [], ""
for path in sys.argv[1:]:
    r = json.load(open(path))
    secs += [e["secs"] for e in r["evaluations"][0]["ran"] if e["node"].startswith("sweep (")]
    for n in r["nodes"].values():
        if n.get("label") == "sweep":
            note = next((x for x in n["outputs"]["report"].get("notes", []) if "variants over" in x), note)
print(sorted(secs)[(len(secs) - 1) // 2] if secs else "nan")
print(note)
PY
sweep_t=$(sed -n 1p "$tmp/sweep"); sweep_note=$(sed -n 2p "$tmp/sweep")
py_line=$(grep '^python sensitivity loop:' "$tmp/py.out" | tail -1)
awk -v a="$qg_t" -v b="$qg_m" -v c="$py_t" -v d="$py_m" -v s="$sweep_t" -v o="$only_t" -v m="$only_m" 'BEGIN {
  printf "  %-40s %8s %10s\n", "", "wall s", "peak RSS"
  printf "  %-40s %8.2f %7.0f MB\n", "QuantGraph, sweep-only.qgraph", o, m/1024
  printf "  %-40s %8.2f %7.0f MB\n", "Python onnxruntime loop", c, d/1024
  printf "  %-40s %8.2f× %9.2f×   (target: ≤ 0.5× time)\n", "ratio QuantGraph / Python", o/c, m/d
  printf "  %-40s %8.2f %7.0f MB\n", "QuantGraph, fix-int8.qgraph (whole graph)", a, b/1024
  printf "  %-40s %8.2f\n", "  of which the sweep node", s
  printf "  %-40s %8.2f× %9.2f×\n", "  ratio to the Python loop", a/c, b/d }'
echo "  QuantGraph: $sweep_note"
echo "  $py_line  (last run; its own timer, without reading images or starting Python)"
