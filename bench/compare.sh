#!/usr/bin/env bash
# Two builds of Quiver side by side on the request path: the same requests, in alternating
# rounds (A, B, A, B, …) so that the machine's noise falls on both alike. Each round starts the
# binary on the fixture repository, drives it with wrk (V2 JSON and TF Serving REST, the dense
# 64→256→10 model, concurrency 1 and 8) and with perf_analyzer (V2 gRPC, concurrency 1 and 8, when
# the test virtualenv has it), then stops it. Prints the median of each point and the ratio B/A.
#
#   bench/compare.sh OLD_BINARY NEW_BINARY [ROUNDS] [SECONDS]     (defaults: 3 rounds, 5 s)
#
# Both binaries run with the same settings (no access log; ONNX Runtime when QUIVER_ONNXRUNTIME_LIB or
# target/onnxruntime has it, one intra-op thread). Needs wrk (Debian's package, installed if
# missing) and, for gRPC, target/venv/bin/perf_analyzer (scripts/test.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 rounds=${3:-3} seconds=${4:-5}
if ! command -v wrk >/dev/null 2>&1; then
    apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
fi
lib=${QUIVER_ONNXRUNTIME_LIB:-}
if [ -z "$lib" ] && [ -d target/onnxruntime/onnxruntime/capi ]; then
    lib=$(ls target/onnxruntime/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
fi
pa=target/venv/bin/perf_analyzer
if [ -x "$pa" ]; then
    cudart=$(target/venv/bin/python -c 'import nvidia.cuda_runtime, pathlib; print(pathlib.Path(list(nvidia.cuda_runtime.__path__)[0]) / "lib")')
    export LD_LIBRARY_PATH="$cudart:${LD_LIBRARY_PATH:-}"
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
values=$(python3 -c 'import math; print(",".join("%.4f" % math.sin(i) for i in range(1, 65)))')
cat >"$work/tf.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"instances": [[$values]]}'
function response(status, headers, body)
    if status ~= 200 then io.stderr:write("status " .. status .. ": " .. body .. "\n"); wrk.thread:stop() end
end
LUA

start() { # binary -> sets rest, grpc, server
    local log=$work/log
    : >"$log"
    QUIVER_ONNXRUNTIME_LIB=$lib "$1" serve --model-repository crates/test-support/fixtures/models \
        --host 127.0.0.1 --rest-port 0 --grpc-port 0 --intra-op-threads 1 --access-log false 2>"$log" &
    server=$!
    for _ in $(seq 300); do
        grep -q "gRPC API listening" "$log" && break
        sleep 0.1
    done
    rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$log" | head -1)
    grpc=$(sed -n 's/.*gRPC API listening on //p' "$log" | head -1)
}

wrk_point() { # script url concurrency -> "requests/s p50_us p99_us"
    local out
    out=$(wrk -t"$(( $3 < 2 ? 1 : 2 ))" -c"$3" -d"${seconds}s" --latency -s "$1" "$2" 2>&1)
    python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
rate = float(re.search(r"Requests/sec:\s*([0-9.]+)", out).group(1))
def us(p):
    m = re.search(rf"\s{p}%\s+([0-9.]+)(us|ms|s)\b", out)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
print(f"{rate:.0f} {us(50):.0f} {us(99):.0f}")
PY
}

pa_point() { # concurrency -> "infer/s p50_us p99_us"
    local out
    out=$("$pa" -m dense --shape x:1,64 -i grpc -u "$grpc" --concurrency-range "$1" \
        --measurement-interval $((seconds * 1000)) --max-trials 5 --stability-percentage 50 2>&1)
    local t p50 p99
    t=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' <<<"$out" | tail -1)
    p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
    p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
    echo "${t%.*} $p50 $p99"
}

results=$work/results
: >"$results"
for round in $(seq "$rounds"); do
    for which in A B; do
        bin=$a
        [ "$which" = B ] && bin=$b
        start "$bin"
        for c in 1 8; do
            echo "$which V2-JSON c=$c $(wrk_point bench/dense.lua "http://$rest/v2/models/dense/infer" "$c")" >>"$results"
            echo "$which TF-REST c=$c $(wrk_point "$work/tf.lua" "http://$rest/v1/models/dense:predict" "$c")" >>"$results"
            if [ -x "$pa" ]; then
                echo "$which V2-gRPC c=$c $(pa_point "$c")" >>"$results"
            fi
        done
        kill "$server"; wait "$server" 2>/dev/null || true
    done
    echo "round $round done" >&2
done
python3 - "$results" "$rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    which, proto, c, rate, p50, p99 = line.split()
    rows.setdefault((proto, c), {}).setdefault(which, []).append((float(rate), float(p50), float(p99)))
print(f"Medians of {sys.argv[2]} alternating rounds (A = old, B = new):\n")
print("| protocol | concurrency | A req/s | B req/s | B/A | A p50 µs | B p50 µs | A p99 µs | B p99 µs |")
print("|---|---|---|---|---|---|---|---|---|")
for (proto, c), by in rows.items():
    med = {w: [statistics.median(x[i] for x in v) for i in range(3)] for w, v in by.items()}
    a, b = med["A"], med["B"]
    print(f"| {proto} | {c.split('=')[1]} | {a[0]:.0f} | {b[0]:.0f} | {b[0]/a[0]:.2f} | {a[1]:.0f} | {b[1]:.0f} | {a[2]:.0f} | {b[2]:.0f} |")
PY
