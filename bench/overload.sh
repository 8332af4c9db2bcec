#!/usr/bin/env bash
# The overload curve: MiniLM (128 tokens, ONNX Runtime, one engine thread) behind
# --max-inflight-requests 4, offered 0.5, 1, 2, 3 and 5 times its measured capacity at a steady
# rate; goodput, admitted p50/p99 and how fast the excess is refused (bench/overload.py).
#
#   bench/overload.sh [SECONDS_PER_POINT] [MULTIPLES] [BINARY]   (defaults: 10, 0.5,1,2,3,5, target/release/quiver)
#
# Needs target/venv (scripts/test.sh), the shared models (QUIVER_SHARED_MODELS, default
# ../shared/models) and ONNX Runtime's library (scripts/fetch-onnxruntime.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10} multiples=${2:-0.5,1,2,3,5} binary=${3:-target/release/quiver}
lib=${QUIVER_ONNXRUNTIME_LIB:-$(scripts/fetch-onnxruntime.sh | tail -n 1)}
exec target/venv/bin/python bench/overload.py "$binary" "${QUIVER_SHARED_MODELS:-$PWD/../shared/models}" "$lib" \
    "$seconds" "$multiples"
