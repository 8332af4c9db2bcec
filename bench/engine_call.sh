#!/usr/bin/env bash
# Quiver's ONNX Runtime engine call vs Python onnxruntime's session.run (and tract), in process,
# same models, inputs and thread count, one after the other in one run.
#
#   bench/engine_call.sh            (needs ../shared/models; fetches ONNX Runtime's library)
set -euo pipefail
cd "$(dirname "$0")/.."
export QUIVER_SHARED_MODELS="${QUIVER_SHARED_MODELS:-$PWD/../shared/models}"
QUIVER_ONNXRUNTIME_LIB=$(scripts/fetch-onnxruntime.sh | tail -n 1)
export QUIVER_ONNXRUNTIME_LIB

venv=target/venv-bench
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check numpy==1.26.4 onnxruntime==1.31.1

echo "== Python onnxruntime session.run"
"$venv/bin/python" bench/ort_python.py "$QUIVER_SHARED_MODELS" 5
echo "== Quiver engines (criterion; the middle number is the mean)"
cargo bench -p quiver-engine-onnxruntime --bench engine_call -- --warm-up-time 1 --measurement-time 5 2>&1 \
    | grep -E '^(onnxruntime|tract)/|time:'
echo "== Python onnxruntime session.run, again (to see the drift)"
"$venv/bin/python" bench/ort_python.py "$QUIVER_SHARED_MODELS" 5
