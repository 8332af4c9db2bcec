#!/usr/bin/env bash
# The memory budget's costs (issue: "the cost of the budget bookkeeping on the request path
# (<= 2%); time to serve a request for an evicted model vs. its cold load").
#
#   bench/budget.sh [BINARY] [ROUNDS] [SECONDS]     (defaults: target/release/quiver, 3, 5)
#
# 1. Bookkeeping: bench/compare.sh with the same binary as A (no budget) and B (the same binary
#    with --max-loaded-models 100, so every lookup bumps the LRU clock), on the fixture models.
# 2. Evicted vs cold: two copies of the shared mobilenet_v2 with --max-loaded-models 1 on ONNX
#    Runtime; the cold load is the first copy's load at start-up (quiver_model_load_duration_seconds),
#    then requests alternate between the copies, each unloading the other, and are timed with curl
#    beside warm requests to a copy already loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/quiver}") rounds=${2:-3} seconds=${3:-5}
models=${QUIVER_SHARED_MODELS:-../shared/models}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

cat >"$work/with-budget" <<SH
#!/bin/sh
exec "$bin" "\$@" --max-loaded-models 100
SH
chmod +x "$work/with-budget"
echo "## Bookkeeping: A = no budget, B = --max-loaded-models 100"
bench/compare.sh "$bin" "$work/with-budget" "$rounds" "$seconds"

lib=${QUIVER_ONNXRUNTIME_LIB:-}
if [ -z "$lib" ] && [ -d target/onnxruntime/onnxruntime/capi ]; then
    lib=$(ls target/onnxruntime/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
fi
for m in m1 m2; do
    mkdir -p "$work/repo/$m/1"
    ln -s "$(realpath "$models/mobilenet_v2/1/model.onnx")" "$work/repo/$m/1/model.onnx"
done
QUIVER_ONNXRUNTIME_LIB=$lib "$bin" serve --model-repository "$work/repo" --host 127.0.0.1 \
    --rest-port 0 --grpc-port 0 --max-loaded-models 1 2>"$work/log" &
for _ in $(seq 600); do grep -q "gRPC API listening" "$work/log" && break; sleep 0.1; done
rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$work/log" | head -1)
python3 - "$rest" <<'PY'
import json, statistics, sys, time, urllib.request
rest = sys.argv[1]
body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                               "data": [0.0] * (3 * 224 * 224)}]}).encode()
def infer(model):
    started = time.perf_counter()
    request = urllib.request.Request(f"http://{rest}/v2/models/{model}/infer", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200
        response.read()
    return time.perf_counter() - started
metrics = urllib.request.urlopen(f"http://{rest}/metrics", timeout=30).read().decode()
cold = [float(l.split()[-1]) for l in metrics.splitlines()
        if l.startswith('quiver_model_load_duration_seconds_sum{model="m1"')][0]
evicted, warm = [], []
for i in range(10):
    model = ("m2", "m1")[i % 2]
    evicted.append(infer(model))          # the other copy is unloaded to make room
    warm.extend(infer(model) for _ in range(3))
print("\n## Evicted vs cold (mobilenet_v2, ONNX Runtime, --max-loaded-models 1)\n")
print("| what | median ms |")
print("|---|---|")
print(f"| cold load at start-up (load + warm-up) | {cold * 1e3:.0f} |")
print(f"| request to an evicted copy (unload the other, load, infer) | {statistics.median(evicted) * 1e3:.0f} |")
print(f"| request to a loaded copy | {statistics.median(warm) * 1e3:.1f} |")
PY
