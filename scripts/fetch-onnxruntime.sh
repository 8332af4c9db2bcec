#!/usr/bin/env bash
# Fetches ONNX Runtime's shared library from the `onnxruntime` wheel on PyPI (no crate ships it,
# and the `ort` crate's own download does not work behind a registry-only network).
#
#   scripts/fetch-onnxruntime.sh [DIR]      (default DIR: target/onnxruntime)
#
# Prints the library's path on the last line of standard output. Use it with
#   quiver serve --onnxruntime-lib PATH ...   (or QUIVER_ONNXRUNTIME_LIB=PATH)
# or copy it next to the `quiver` binary, where Quiver looks for it by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${ONNXRUNTIME_VERSION:-1.31.1}
dir=${1:-target/onnxruntime}
lib="$dir/onnxruntime/capi/libonnxruntime.so.$version"

if [ ! -f "$lib" ]; then
    mkdir -p "$dir"
    case "$(uname -m)" in
        x86_64) platform=manylinux_2_28_x86_64 ;;
        aarch64) platform=manylinux_2_28_aarch64 ;;
        *) echo "fetch-onnxruntime: no onnxruntime wheel for $(uname -m)" >&2; exit 1 ;;
    esac
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform "$platform" --python-version 3.11 -d "$dir" "onnxruntime==$version" >&2
    wheel=$(ls "$dir"/onnxruntime-"$version"-*.whl | head -n 1)
    python3 - "$wheel" "$dir" "onnxruntime/capi/libonnxruntime.so.$version" <<'PY'
import sys, zipfile
wheel, out, member = sys.argv[1:]
zipfile.ZipFile(wheel).extract(member, out)
PY
fi
# ort looks for a file named exactly libonnxruntime.so when given a directory; keep both names.
ln -sf "libonnxruntime.so.$version" "$dir/onnxruntime/capi/libonnxruntime.so"
echo "$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
