#!/usr/bin/env bash
# The response cache on mobilenet_v2 (issue: "cache hit vs. miss latency"): three copies of the
# shared model on ONNX Runtime — `plain` (no cache), `cached` ([cache] max_bytes = 256 MiB) — and
# tritonclient sending the normalised 1x3x224x224 tensor as V2 binary data: a new random input
# every request to `plain` (no cache) and to `cached` (a miss: the key is built and the answer
# inserted), then one input over and over to `cached` (a hit). Rounds interleave the three.
#
#   bench/cache.sh [BINARY] [ROUNDS] [REQUESTS]     (defaults: target/release/quiver, 3, 60)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/quiver}") rounds=${2:-3} requests=${3:-60}
models=${QUIVER_SHARED_MODELS:-../shared/models}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
lib=${QUIVER_ONNXRUNTIME_LIB:-}
if [ -z "$lib" ] && [ -d target/onnxruntime/onnxruntime/capi ]; then
    lib=$(ls target/onnxruntime/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
fi
for m in plain cached; do
    mkdir -p "$work/repo/$m/1"
    ln -s "$(realpath "$models/mobilenet_v2/1/model.onnx")" "$work/repo/$m/1/model.onnx"
done
printf '[cache]\nmax_bytes = 268435456\n' >"$work/repo/cached/config.toml"
QUIVER_ONNXRUNTIME_LIB=$lib "$bin" serve --model-repository "$work/repo" --host 127.0.0.1 \
    --rest-port 0 --grpc-port 0 2>"$work/log" &
for _ in $(seq 600); do grep -q "gRPC API listening" "$work/log" && break; sleep 0.1; done
rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$work/log" | head -1)
target/venv/bin/python - "$rest" "$rounds" "$requests" <<'PY'
import statistics, sys, time
import numpy as np
import tritonclient.http as httpclient
rest, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = httpclient.InferenceServerClient(rest, network_timeout=120)
rng = np.random.default_rng(0)
def one(model, pixels):
    x = httpclient.InferInput("input", list(pixels.shape), "FP32")
    x.set_data_from_numpy(pixels, binary_data=True)
    started = time.perf_counter()
    client.infer(model, [x], outputs=[httpclient.InferRequestedOutput("logits", binary_data=True)])
    return time.perf_counter() - started
def fresh():
    return rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
same = fresh()
one("cached", same)  # the entry the hits find
results = {"no cache": [], "miss": [], "hit": []}
for _ in range(rounds):
    for _ in range(5):  # warm up each
        one("plain", fresh()); one("cached", fresh()); one("cached", same)
    for _ in range(n):
        results["no cache"].append(one("plain", fresh()))
        results["miss"].append(one("cached", fresh()))
        results["hit"].append(one("cached", same))
base = statistics.median(results["no cache"])
print("| request | p50 ms | p90 ms | p50 / no cache |")
print("|---|---|---|---|")
for name, times in results.items():
    times.sort()
    p50, p90 = statistics.median(times), times[int(0.9 * len(times))]
    print(f"| {name} | {p50 * 1e3:.2f} | {p90 * 1e3:.2f} | {p50 / base:.2f} |")
PY
