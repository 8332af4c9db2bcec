#!/usr/bin/env bash
# The request path against its ceiling (issue 17): Quiver serving the dense 64→256→10 fixture on
# ONNX Runtime (one intra-op thread, batch 1, no batching, no access log), beside
# bench/ceiling — the same stack (tokio, hyper/axum, tonic) answering a fixed V2 response with no
# model — and optionally an older Quiver, all driven alike in interleaved rounds (ceiling, new,
# old, ceiling, new, old, …) so the machine's noise falls on all of them:
#   wrk, V2 JSON                     concurrency 1 and 8
#   perf_analyzer, V2 HTTP (binary)  concurrency 1 and 8
#   perf_analyzer, V2 gRPC           concurrency 1 and 8
# Prints the median of each point and each server's ratio to the ceiling (and new/old).
#
#   cargo build --release --workspace          # target/release/quiver and quiver-ceiling
#   bench/request_path.sh [ROUNDS] [SECONDS]    # defaults: 3 rounds of 5 s a point
#   OLD_BIN=/path/to/old/quiver bench/request_path.sh   # adds an older build's column
#
# Needs wrk (Debian's package, installed if missing) and target/venv/bin/perf_analyzer (the
# tritonclient wheel scripts/test.sh installs; it needs Debian's libb64-0d).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} seconds=${2:-5}
new=${QUIVER_BIN:-target/release/quiver}
ceiling=${CEILING_BIN:-target/release/quiver-ceiling}
old=${OLD_BIN:-}
for bin in "$new" "$ceiling" ${old:+"$old"}; do
    [ -x "$bin" ] || { echo "no binary at $bin: cargo build --release --workspace" >&2; exit 1; }
done
if ! command -v wrk >/dev/null 2>&1; then
    apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
fi
pa=target/venv/bin/perf_analyzer
[ -x "$pa" ] || { echo "no $pa: run scripts/test.sh once (it makes target/venv)" >&2; exit 1; }
cudart=$(target/venv/bin/python -c 'import nvidia.cuda_runtime, pathlib; print(pathlib.Path(list(nvidia.cuda_runtime.__path__)[0]) / "lib")')
export LD_LIBRARY_PATH="$cudart:${LD_LIBRARY_PATH:-}"
lib=${QUIVER_ONNXRUNTIME_LIB:-$(scripts/fetch-onnxruntime.sh | tail -n 1)}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

start() { # name binary -> sets rest, grpc, server
    local log=$work/log
    : >"$log"
    if [ "$1" = ceiling ]; then
        "$2" --host 127.0.0.1 2>"$log" &
    else
        QUIVER_ONNXRUNTIME_LIB=$lib "$2" serve --model-repository crates/test-support/fixtures/models \
            --host 127.0.0.1 --rest-port 0 --grpc-port 0 --intra-op-threads 1 --access-log false 2>"$log" &
    fi
    server=$!
    for _ in $(seq 600); do
        grep -q "gRPC API listening" "$log" && grep -q "REST API listening" "$log" && break
        sleep 0.1
    done
    rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$log" | head -1)
    grpc=$(sed -n 's/.*gRPC API listening on //p' "$log" | head -1)
    # Quiver listens before its models are ready: wait for dense.
    for _ in $(seq 600); do
        curl -sf "http://$rest/v2/models/dense/ready" >/dev/null && break
        sleep 0.1
    done
}

wrk_point() { # url concurrency -> "requests/s p50_us p99_us"
    local out
    out=$(wrk -t"$(( $2 < 2 ? 1 : 2 ))" -c"$2" -d"${seconds}s" --latency -s bench/dense.lua "$1" 2>&1)
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

pa_point() { # protocol url concurrency -> "infer/s p50_us p99_us"
    local out
    out=$("$pa" -m dense --shape x:1,64 -i "$1" -u "$2" --concurrency-range "$3" \
        --measurement-interval $((seconds * 1000)) --max-trials 5 --stability-percentage 50 2>&1) || true
    local t p50 p99
    t=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' <<<"$out" | tail -1)
    p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
    p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
    if [ -z "$t" ]; then echo "perf_analyzer failed: $out" >&2; echo "0 0 0"; return; fi
    echo "${t%.*} $p50 $p99"
}

servers="ceiling new${old:+ old}"
results=$work/results
: >"$results"
for round in $(seq "$rounds"); do
    for which in $servers; do
        case $which in ceiling) bin=$ceiling ;; new) bin=$new ;; old) bin=$old ;; esac
        start "$which" "$bin"
        for c in 1 8; do
            echo "$which wrk-V2-JSON $c $(wrk_point "http://$rest/v2/models/dense/infer" "$c")" >>"$results"
            echo "$which pa-V2-HTTP-binary $c $(pa_point http "$rest" "$c")" >>"$results"
            echo "$which pa-V2-gRPC $c $(pa_point grpc "$grpc" "$c")" >>"$results"
        done
        kill "$server"; wait "$server" 2>/dev/null || true
    done
    echo "round $round done" >&2
done
python3 - "$results" "$rounds" "$servers" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    which, point, c, rate, p50, p99 = line.split()
    rows.setdefault((point, c), {}).setdefault(which, []).append((float(rate), float(p50), float(p99)))
servers = sys.argv[3].split()
print(f"Medians of {sys.argv[2]} interleaved rounds; req/s (p50 µs, p99 µs); ratios of throughput.\n")
head = ["client, protocol", "c"] + servers + [f"{s}/ceiling" for s in servers if s != "ceiling"]
if "old" in servers:
    head.append("new/old")
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for (point, c), by in rows.items():
    med = {w: [statistics.median(x[i] for x in v) for i in range(3)] for w, v in by.items()}
    cells = [point, c] + [f"{med[s][0]:.0f} ({med[s][1]:.0f}, {med[s][2]:.0f})" for s in servers]
    ratio = lambda a, b: f"{med[a][0] / med[b][0]:.2f}" if med[b][0] else "-"
    cells += [ratio(s, "ceiling") for s in servers if s != "ceiling"]
    if "old" in servers:
        cells.append(ratio("new", "old"))
    print("| " + " | ".join(cells) + " |")
PY
