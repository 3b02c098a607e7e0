#!/usr/bin/env bash
# Fetch the ONNX Runtime shared library QuantGraph loads at run time, once.
#
# It comes from the pinned `onnxruntime` wheel on PyPI (the wheel carries
# onnxruntime/capi/libonnxruntime.so.<version>); the wheel's sha256 is checked before
# anything is unpacked. The library is cached in $QUANTGRAPH_CACHE (default: .cache/ in
# the repository), so later runs do not fetch again. Prints the library's path.
#
# ORT_DYLIB_PATH, when set to an existing file, wins and nothing is fetched.
set -euo pipefail

ORT_VERSION=1.31.1
WHEEL=onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${QUANTGRAPH_CACHE:-$repo/.cache}"
dest="$cache/onnxruntime-$ORT_VERSION"
lib="$dest/libonnxruntime.so.$ORT_VERSION"

if [[ -n "${ORT_DYLIB_PATH:-}" && -f "${ORT_DYLIB_PATH}" ]]; then
  echo "$ORT_DYLIB_PATH"
  exit 0
fi
if [[ -f "$lib" ]]; then
  echo "$lib"
  exit 0
fi
if [[ "$(uname -m)" != "x86_64" || "$(uname -s)" != "Linux" ]]; then
  echo "ensure-ort: only Linux x86-64 is pinned here; set ORT_DYLIB_PATH to a libonnxruntime $ORT_VERSION" >&2
  exit 1
fi

mkdir -p "$dest/download"
wheel_path="$dest/download/$WHEEL"
if [[ ! -f "$wheel_path" ]]; then
  echo "ensure-ort: downloading $WHEEL from PyPI" >&2
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
    -d "$dest/download" "onnxruntime==$ORT_VERSION" >&2
fi
actual="$(sha256sum "$wheel_path" | cut -d' ' -f1)"
if [[ "$actual" != "$WHEEL_SHA256" ]]; then
  echo "ensure-ort: sha256 mismatch for $wheel_path: expected $WHEEL_SHA256, found $actual" >&2
  rm -f "$wheel_path"
  exit 1
fi
python3 - "$wheel_path" "$dest" "$ORT_VERSION" <<'PY'
import sys, zipfile, os
wheel, dest, version = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name in (f"onnxruntime/capi/libonnxruntime.so.{version}", "onnxruntime/capi/libonnxruntime_providers_shared.so"):
        target = os.path.join(dest, os.path.basename(name))
        with z.open(name) as src, open(target + ".part", "wb") as out:
            out.write(src.read())
        os.replace(target + ".part", target)
PY
rm -rf "$dest/download"
echo "$lib"
