#!/usr/bin/env bash
# The cost of metrics and access logs on the hot path: the dense 64→256→10 fixture over V2 HTTP
# JSON at concurrency 8 with perf_analyzer, against two release servers on the same machine —
# one with everything on (the default: /metrics, one access line per request, written to a file)
# and one with `--metrics false --access-log false`. The two are measured in turns, several
# rounds, so that the machine's drift hits both alike; each round prints both throughputs and
# their ratio. The servers run on core 1 and perf_analyzer on core 0, so that the client's
# share of the CPU does not swing with the server's (an A/A run, OFF_ARGS="", shows the noise
# that remains).
#
#   bench/observability.sh [ROUNDS] [SECONDS_PER_POINT]      (default 4 rounds of 5 s)
#
# Needs what bench/load_test.sh needs; uses ONNX Runtime (fetched) so that the model's own
# compute is as small as it gets and the overhead shows.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
seconds=${2:-5}
bin=target/release/quiver
pa=target/venv/bin/perf_analyzer
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
[ -x "$pa" ] || { echo "no $pa: run scripts/test.sh once" >&2; exit 1; }
cudart=$(target/venv/bin/python -c 'import nvidia.cuda_runtime, pathlib; print(pathlib.Path(list(nvidia.cuda_runtime.__path__)[0]) / "lib")')
export LD_LIBRARY_PATH="$cudart:${LD_LIBRARY_PATH:-}"
ort=$(scripts/fetch-onnxruntime.sh | tail -n 1)

repo=$(mktemp -d)
on_log=$(mktemp)
off_log=$(mktemp)
mkdir -p "$repo/dense/1"
cp crates/test-support/fixtures/models/dense/1/model.onnx "$repo/dense/1/"

start() { # LOG ARGS...
    local log=$1
    shift
    taskset -c 1 "$bin" serve --model-repository "$repo" --host 127.0.0.1 --rest-port 0 --grpc-port 0 \
        --onnxruntime-lib "$ort" "$@" 2>"$log" &
}
start "$on_log" --access-log true
on_pid=$!
# OFF_ARGS="" measures the two servers set up alike (an A/A run: how far apart noise alone puts them).
start "$off_log" ${OFF_ARGS---metrics false --access-log false}
off_pid=$!
trap 'kill $on_pid $off_pid 2>/dev/null; rm -rf "$on_log" "$off_log" "$repo"' EXIT
for log in "$on_log" "$off_log"; do
    for _ in $(seq 300); do
        grep -q "REST API listening" "$log" && break
        sleep 0.1
    done
done
url() { sed -n 's/.*REST API listening on http:\/\///p' "$1" | head -1; }
on_url=$(url "$on_log")
off_url=$(url "$off_log")

throughput() { # URL
    local out
    out=$(taskset -c 0 "$pa" -m dense -i http -u "$1" --input-tensor-format json --output-tensor-format json \
        --shape x:1,64 --concurrency-range 8 --measurement-interval $((seconds * 1000)) \
        --max-trials 5 --stability-percentage 50 2>&1) || { echo "perf_analyzer failed: $out" >&2; exit 1; }
    sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' <<<"$out" | tail -1
}

echo "| round | on (infer/s) | off (infer/s) | on / off |"
echo "|---|---|---|---|"
total_on=0
total_off=0
for round in $(seq "$rounds"); do
    # Alternate which goes first, so that neither always gets the warmer machine.
    if [ $((round % 2)) = 1 ]; then
        on=$(throughput "$on_url"); off=$(throughput "$off_url")
    else
        off=$(throughput "$off_url"); on=$(throughput "$on_url")
    fi
    total_on=$(python3 -c "print($total_on + $on)")
    total_off=$(python3 -c "print($total_off + $off)")
    echo "| $round | $on | $off | $(python3 -c "print(f'{$on / $off:.3f}')") |"
done
echo "| all | $(python3 -c "print(f'{$total_on / $rounds:.0f}')") | $(python3 -c "print(f'{$total_off / $rounds:.0f}')") | $(python3 -c "print(f'{$total_on / $total_off:.3f}')") |"
echo "access lines written by the 'on' server: $(grep -c 'quiver::access' "$on_log")"
