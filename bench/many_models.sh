#!/usr/bin/env bash
# The cost of many models (issue 17): a repository of N copies of the tiny half_plus_two fixture
# (symlinks to one file), served by the release binary on tract; reports the time from start to
# ready (every model loaded), resident memory (total and per model, net of an empty server's),
# and /metrics: its size, per model, and the time a scrape takes (median of 10).
#
#   bench/many_models.sh [N]        (default 1000; needs target/release/quiver)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
bin=${QUIVER_BIN:-target/release/quiver}
[ -x "$bin" ] || { echo "no binary at $bin: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
model=$PWD/crates/test-support/fixtures/models/half_plus_two/1/model.onnx
mkdir -p "$work/empty" "$work/many"
for i in $(seq -w 1 "$n"); do
    mkdir -p "$work/many/m$i/1"
    ln -s "$model" "$work/many/m$i/1/model.onnx"
done

serve() { # repository -> sets url, pid, ready_s
    local log=$work/log
    : >"$log"
    local started
    started=$(date +%s.%N)
    "$bin" serve --model-repository "$1" --host 127.0.0.1 --rest-port 0 --grpc-port 0 2>"$log" &
    pid=$!
    for _ in $(seq 3000); do
        url=$(sed -n 's/.*REST API listening on \(http:[^ ]*\).*/\1/p' "$log" | head -1)
        [ -n "$url" ] && curl -sf "$url/v2/health/ready" >/dev/null && break
        sleep 0.05
    done
    ready_s=$(python3 -c "import time; print(f'{time.time() - $started:.2f}')")
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

serve "$work/empty"
sleep 1
empty_rss=$(rss_kib "$pid")
empty_metrics=$(curl -s "$url/metrics" | wc -c)
kill "$pid"; wait "$pid" 2>/dev/null || true

serve "$work/many"
sleep 1
many_rss=$(rss_kib "$pid")
metrics=$(curl -s "$url/metrics" | wc -c)
times=()
for _ in $(seq 10); do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' "$url/metrics")")
done
scrape=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 5p)
kill "$pid"; wait "$pid" 2>/dev/null || true

python3 - "$n" "$ready_s" "$empty_rss" "$many_rss" "$empty_metrics" "$metrics" "$scrape" <<'PY'
import sys
n, ready, empty_rss, many_rss, empty_m, many_m, scrape = sys.argv[1:]
n = int(n)
per_rss = (int(many_rss) - int(empty_rss)) / n
per_m = (int(many_m) - int(empty_m)) / n
print(f"| models | start to ready | resident memory | per model | /metrics | per model | scrape (median of 10) |")
print(f"|---|---|---|---|---|---|---|")
print(f"| {n} | {float(ready):.2f} s | {int(many_rss) / 1024:.0f} MiB (empty server {int(empty_rss) / 1024:.0f}) | "
      f"{per_rss:.0f} KiB | {int(many_m) / 1024:.0f} KiB | {per_m / 1024:.2f} KiB | {float(scrape) * 1000:.1f} ms |")
PY
