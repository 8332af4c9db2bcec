#!/usr/bin/env bash
# Load test of the running server with Triton's perf_analyzer: V2 HTTP JSON, V2 HTTP binary and
# V2 gRPC, at concurrency 1 and 8, on the fixture models `dense` (64→256→10, the speed-test
# model) and `image_sum` (a 600 KB float input, cheap compute: protocol costs dominate).
#
#   bench/load_test.sh [SECONDS_PER_POINT]      (default 5)
#
# Needs the release binary (cargo build --release) and the test virtualenv with perf_analyzer
# (scripts/test.sh makes it, or: python3 -m venv target/venv && target/venv/bin/pip install -r
# tests/e2e/requirements.txt; apt-get install libb64-0d). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
bin=target/release/quiver
pa=target/venv/bin/perf_analyzer
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
[ -x "$pa" ] || { echo "no $pa: run scripts/test.sh once, or install tests/e2e/requirements.txt" >&2; exit 1; }
cudart=$(target/venv/bin/python -c 'import nvidia.cuda_runtime, pathlib; print(pathlib.Path(list(nvidia.cuda_runtime.__path__)[0]) / "lib")')
export LD_LIBRARY_PATH="$cudart:${LD_LIBRARY_PATH:-}"

log=$(mktemp)
"$bin" serve --model-repository crates/test-support/fixtures/models --host 127.0.0.1 \
    --rest-port 0 --grpc-port 0 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do
    grep -q "gRPC API listening" "$log" && break
    sleep 0.1
done
rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$log" | head -1)
grpc=$(sed -n 's/.*gRPC API listening on //p' "$log" | head -1)

echo "| model | protocol | concurrency | infer/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|---|"
for model_shape in "dense x:1,64" "image_sum x:1,3,224,224"; do
    read -r model shape <<<"$model_shape"
    for protocol in "V2 HTTP JSON" "V2 HTTP binary" "V2 gRPC"; do
        case $protocol in
            "V2 HTTP JSON") args=(-i http -u "$rest" --input-tensor-format json --output-tensor-format json) ;;
            "V2 HTTP binary") args=(-i http -u "$rest") ;;
            "V2 gRPC") args=(-i grpc -u "$grpc") ;;
        esac
        for concurrency in 1 8; do
            out=$("$pa" -m "$model" --shape "$shape" "${args[@]}" --concurrency-range "$concurrency" \
                --measurement-interval $((seconds * 1000)) --max-trials 5 --stability-percentage 50 2>&1) || {
                echo "perf_analyzer failed: $out" >&2; exit 1; }
            throughput=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' <<<"$out" | tail -1)
            p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
            p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
            echo "| $model | $protocol | $concurrency | $throughput | $p50 | $p99 |"
        done
    done
done
