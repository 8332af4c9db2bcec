#!/usr/bin/env bash
# The README's first command: builds the release binary, fetches ONNX Runtime's library from PyPI
# with scripts/fetch-onnxruntime.sh (once; kept under target/onnxruntime) and serves the example
# repository on it. When the library cannot be had (no network to PyPI, no wheel for this
# machine), it says so in one line and serves on tract, the pure-Rust engine.
#
#   scripts/serve-example.sh [QUIVER SERVE FLAGS...]     e.g. --rest-port 9000
#
# QUIVER_BIN=PATH uses that binary instead of building one (the tests do).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${QUIVER_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release
    bin=target/release/quiver
fi
args=()
if lib=$(scripts/fetch-onnxruntime.sh 2>/dev/null | tail -n 1) && [ -f "$lib" ]; then
    args=(--onnxruntime-lib "$lib")
else
    echo "serve-example: could not fetch ONNX Runtime's library (scripts/fetch-onnxruntime.sh failed); serving on tract" >&2
fi
exec "$bin" serve --model-repository examples/models "${args[@]}" "$@"
