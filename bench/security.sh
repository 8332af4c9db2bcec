#!/usr/bin/env bash
# What TLS and bearer tokens cost on the request path: one binary started three ways — plain,
# TLS on both listeners (--tls-cert/--tls-key), and tokens (--auth-tokens-file) — in alternating
# rounds so the machine's noise falls on all alike. Each round drives the dense 64→256→10 fixture
# model with wrk (V2 JSON over HTTP/1.1 keep-alive; https when TLS is on) and with h2load (V2 gRPC
# ModelInfer over HTTP/2, one call at a time per stream), at concurrency 1 and 8. Prints medians
# and the ratios TLS/plain and tokens/plain; use a multiple of 3 rounds, so each mode goes first,
# second and third equally often.
#
#   bench/security.sh [BINARY] [ROUNDS] [SECONDS]    (defaults: target/release/quiver, 3, 5)
#
# perf_analyzer cannot send gRPC metadata (its -H is HTTP only), so gRPC is driven by h2load
# (Debian's nghttp2-client) with a serialized ModelInferRequest; h2load counts HTTP statuses, not
# grpc-status, so every gRPC point is checked against the server's own count of requests that
# succeeded. Needs wrk, h2load and openssl (installed if missing) and target/venv (scripts/test.sh
# makes it) for the protobuf message.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/quiver} rounds=${2:-3} seconds=${3:-5}
for tool in wrk:wrk h2load:nghttp2-client openssl:openssl; do
    if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
        apt-get install -y -q "${tool#*:}" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q "${tool#*:}" >/dev/null; }
    fi
done
lib=${QUIVER_ONNXRUNTIME_LIB:-}
if [ -z "$lib" ] && [ -d target/onnxruntime/onnxruntime/capi ]; then
    lib=$(ls target/onnxruntime/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# A throwaway CA and a server certificate for 127.0.0.1.
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req "${ec[@]}" -keyout "$work/server.key" -out "$work/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$work/san"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -out "$work/server.pem" -days 2 -extfile "$work/san" 2>/dev/null
token=bench-$(openssl rand -hex 16)
printf '%s infer,metrics bench\n' "$token" >"$work/tokens"

# wrk: the V2 JSON request of bench/dense.lua, with the token when the mode has one.
printf 'dofile("bench/dense.lua")\n' >"$work/plain.lua"
printf 'dofile("bench/dense.lua")\nwrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$work/tokens.lua"
# h2load: one gRPC frame (uncompressed flag, big-endian length, ModelInferRequest).
target/venv/bin/python - "$work/infer.grpc" <<'PY'
import math, struct, sys
from tritonclient.grpc import service_pb2
r = service_pb2.ModelInferRequest(model_name="dense")
r.inputs.add(name="x", datatype="FP32", shape=[1, 64])
r.raw_input_contents.append(struct.pack("<64f", *(math.sin(i) for i in range(1, 65))))
body = r.SerializeToString()
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(body)) + body)
PY

start() { # mode -> sets rest, grpc, scheme, server
    local log=$work/log extra=()
    : >"$log"
    case $1 in
        tls) extra=(--tls-cert "$work/server.pem" --tls-key "$work/server.key") ;;
        tokens) extra=(--auth-tokens-file "$work/tokens") ;;
    esac
    QUIVER_ONNXRUNTIME_LIB=$lib "$bin" serve --model-repository crates/test-support/fixtures/models \
        --host 127.0.0.1 --rest-port 0 --grpc-port 0 --intra-op-threads 1 --access-log false \
        "${extra[@]}" 2>"$log" &
    server=$!
    for _ in $(seq 300); do
        grep -q "gRPC API listening" "$log" && break
        sleep 0.1
    done
    scheme=http
    [ "$1" = tls ] && scheme=https
    rest=$(sed -n 's/.*REST API listening on https\?:\/\///p' "$log" | head -1)
    grpc=$(sed -n 's/.*gRPC API listening on \(https\?:\/\/\)\?//p' "$log" | head -1)
}

ok_count() { # the server's count of inference requests that succeeded
    curl -s --cacert "$work/ca.pem" -H "Authorization: Bearer $token" "$scheme://$rest/metrics" |
        awk '/^quiver_requests_total\{/ && /outcome="ok"/ { n += $NF } END { printf "%d\n", n }'
}

wrk_point() { # mode concurrency -> "requests/s p50_us p99_us"
    local script=$work/plain.lua out
    [ "$1" = tokens ] && script=$work/tokens.lua
    out=$(wrk -t"$(($2 < 2 ? 1 : 2))" -c"$2" -d"${seconds}s" --latency -s "$script" \
        "$scheme://$rest/v2/models/dense/infer" 2>&1)
    python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
if "status " in out or "Non-2xx" in out:
    sys.exit("wrk saw failed requests:\n" + out)
rate = float(re.search(r"Requests/sec:\s*([0-9.]+)", out).group(1))
def us(p):
    m = re.search(rf"\s{p}%\s+([0-9.]+)(us|ms|s)\b", out)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]
print(f"{rate:.0f} {us(50):.0f} {us(99):.0f}")
PY
}

h2load_point() { # mode concurrency -> "requests/s mean_us -"
    local auth=() before out
    [ "$1" = tokens ] && auth=(-H "authorization: Bearer $token")
    before=$(ok_count)
    out=$(h2load -c"$2" -m1 -t1 -D"$seconds" --warm-up-time=1 -d "$work/infer.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' "${auth[@]}" \
        "$scheme://$grpc/inference.GRPCInferenceService/ModelInfer" 2>&1)
    python3 - "$out" "$before" "$(ok_count)" <<'PY'
import re, sys
out, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rate = float(re.search(r"finished in [0-9.]+s, ([0-9.]+) req/s", out).group(1))
done = int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1))
# The warm-up's requests count on the server too, so it may have counted more, never fewer.
if after - before < done:
    sys.exit(f"only {after - before} of h2load's {done} gRPC calls succeeded:\n{out}")
m = re.search(r"time for request:\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)\s+([0-9.]+)(us|ms|s)", out)
mean = float(m.group(5)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(6)]
print(f"{rate:.0f} {mean:.0f} -")
PY
}

results=$work/results
: >"$results"
modes=(plain tls tokens)
for round in $(seq "$rounds"); do
    # Each round starts with the next mode: a mode always run last would carry the machine's
    # drift over a round (seen up to ~10% in bench/compare.sh's A-vs-A runs).
    first=$(((round - 1) % 3))
    for mode in "${modes[@]:first}" "${modes[@]:0:first}"; do
        start "$mode"
        for c in 1 8; do
            echo "$mode V2-JSON c=$c $(wrk_point "$mode" "$c")" >>"$results"
            echo "$mode V2-gRPC c=$c $(h2load_point "$mode" "$c")" >>"$results"
        done
        kill "$server"
        wait "$server" 2>/dev/null || true
    done
    echo "round $round done" >&2
done
python3 - "$results" "$rounds" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, proto, c, rate, lat, p99 = line.split()
    rows.setdefault((proto, c), {}).setdefault(mode, []).append((float(rate), float(lat)))
print(f"Medians of {sys.argv[2]} alternating rounds (latency: p50 for wrk, mean for h2load):\n")
print("| protocol | concurrency | plain req/s | TLS req/s | TLS/plain | tokens req/s | tokens/plain "
      "| plain µs | TLS µs | tokens µs |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (proto, c), by in rows.items():
    med = {m: [statistics.median(x[i] for x in v) for i in range(2)] for m, v in by.items()}
    p, t, k = med["plain"], med["tls"], med["tokens"]
    print(f"| {proto} | {c.split('=')[1]} | {p[0]:.0f} | {t[0]:.0f} | {t[0] / p[0]:.2f} | {k[0]:.0f} "
          f"| {k[0] / p[0]:.2f} | {p[1]:.0f} | {t[1]:.0f} | {k[1]:.0f} |")
PY
