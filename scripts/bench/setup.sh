#!/usr/bin/env bash
# Make the Python venv the reference benchmarks in scripts/bench/ run in, once.
#
#   py=$(scripts/bench/setup.sh) && "$py" scripts/bench/qdq_loss_debug.py --images 1000 --batch 250
#
# The venv lives in .cache/bench-venv (git-ignored) and gets the versions pinned in
# models/requirements.txt (without torch, which the benchmarks do not need; ml_dtypes is
# imported by onnxruntime.quantization but not declared by the onnxruntime wheel). A stamp file
# records what was installed, so a second run does nothing and just prints the path.
# Progress goes to stderr; the only thing on stdout is the venv's python.
set -euo pipefail

PACKAGES=(numpy==2.1.3 onnx==1.17.0 onnxruntime==1.31.1 ml_dtypes==0.6.0 pillow==11.0.0)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$repo/.cache/bench-venv"
py="$venv/bin/python"
stamp="$venv/.installed"
want="${PACKAGES[*]}"

if [[ -x "$py" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$py"
  exit 0
fi

if [[ ! -x "$py" ]]; then
  echo "bench setup: creating venv $venv" >&2
  mkdir -p "$repo/.cache"
  "${PYTHON:-python3}" -m venv "$venv" >&2
fi
echo "bench setup: installing $want" >&2
"$py" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
echo "$want" > "$stamp"
echo "bench setup: done" >&2
echo "$py"
