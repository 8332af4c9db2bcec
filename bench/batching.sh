#!/usr/bin/env bash
# Dynamic batching under load, with Triton's perf_analyzer against the release binary:
#   1. the dense 64→256→10 fixture at concurrency 32, batching off vs on (V2 HTTP JSON and V2 gRPC);
#   2. all_minilm_l6_v2 (seq 128) on ONNX Runtime at concurrency 16, unbatched vs batched
#      (compare with the in-process engine at batch 8: bench/engine_call.sh);
#   3. latency at concurrency 1, batching off vs on (the added latency should stay below
#      max_queue_delay + 1 ms);
#   4. all_minilm_l6_v2 as clients use it: one real sentence a request (bench/data/sentences.txt,
#      13-18 tokens), tokenized in the server (examples/configs/all_minilm_l6_v2), unbatched vs
#      batched up to 8 with padding to the longest, at concurrency 16, driven by wrk
#      (bench/sentences.lua; Debian's wrk, installed if missing) in ROUNDS alternating rounds;
#      and the in-process engine at batch 1 and 8 at 17 tokens (criterion, with the server
#      stopped), for the batched server's share of the engine's own throughput;
#   5. the dense fixture at concurrency 32 over V2 JSON with wrk (bench/dense.lua), batching off
#      vs on in ROUNDS rounds: each server thread's CPU per request, the rest of the machine's
#      busy time (client and kernel) and the idle cores, which bound what batching can gain.
#
#   bench/batching.sh [SECONDS_PER_POINT] [ROUNDS]      (default 5 s, 3 rounds)
#
# Needs what bench/load_test.sh needs, ../shared/models, and fetches ONNX Runtime's library.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
bin=target/release/quiver
pa=target/venv/bin/perf_analyzer
shared=${QUIVER_SHARED_MODELS:-$PWD/../shared/models}
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
[ -x "$pa" ] || { echo "no $pa: run scripts/test.sh once" >&2; exit 1; }
cudart=$(target/venv/bin/python -c 'import nvidia.cuda_runtime, pathlib; print(pathlib.Path(list(nvidia.cuda_runtime.__path__)[0]) / "lib")')
export LD_LIBRARY_PATH="$cudart:${LD_LIBRARY_PATH:-}"
ort=$(scripts/fetch-onnxruntime.sh | tail -n 1)

repo=$(mktemp -d)
log=$(mktemp)
for name in dense dense_batched; do
    mkdir -p "$repo/$name/1"
    cp crates/test-support/fixtures/models/dense/1/model.onnx "$repo/$name/1/"
done
printf '[batching]\nmax_batch_size = 32\nmax_queue_delay_us = 500\n' >"$repo/dense_batched/config.toml"
for name in minilm minilm_batched; do
    mkdir -p "$repo/$name/1"
    ln -s "$shared/all_minilm_l6_v2/1/model.onnx" "$repo/$name/1/model.onnx"
    printf 'engine = "onnxruntime"\n' >"$repo/$name/config.toml"
done
printf '[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 5000\npreferred_batch_sizes = [8]\n' >>"$repo/minilm_batched/config.toml"
# Sentences in, embeddings out: the example config (its [batching] table replaced).
for name in minilm_text minilm_text_batched; do
    mkdir -p "$repo/$name/1"
    ln -s "$shared/all_minilm_l6_v2/1/model.onnx" "$repo/$name/1/model.onnx"
    ln -s "$shared/all_minilm_l6_v2/tokenizer.json" "$repo/$name/tokenizer.json"
    { printf 'engine = "onnxruntime"\n\n'; sed '/^\[batching\]/,$d' examples/configs/all_minilm_l6_v2/config.toml; } \
        >"$repo/$name/config.toml"
done
printf '[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 5000\npreferred_batch_sizes = [8]\npad_inputs = { input_ids = 0, attention_mask = 0, token_type_ids = 0 }\n' \
    >>"$repo/minilm_text_batched/config.toml"

"$bin" serve --model-repository "$repo" --host 127.0.0.1 --rest-port 0 --grpc-port 0 \
    --onnxruntime-lib "$ort" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$log" "$repo"' EXIT
for _ in $(seq 300); do
    grep -q "gRPC API listening" "$log" && break
    sleep 0.1
done
rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$log" | head -1)
grpc=$(sed -n 's/.*gRPC API listening on //p' "$log" | head -1)

point() { # model protocol concurrency [extra perf_analyzer args...]
    local model=$1 protocol=$2 concurrency=$3
    shift 3
    case $protocol in
        "V2 HTTP JSON") args=(-i http -u "$rest" --input-tensor-format json --output-tensor-format json) ;;
        "V2 gRPC") args=(-i grpc -u "$grpc") ;;
    esac
    out=$("$pa" -m "$model" "${args[@]}" "$@" --concurrency-range "$concurrency" \
        --measurement-interval $((seconds * 1000)) --max-trials 5 --stability-percentage 50 2>&1) || {
        echo "perf_analyzer failed: $out" >&2; exit 1; }
    throughput=$(sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' <<<"$out" | tail -1)
    p50=$(sed -n 's/.*p50 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
    p99=$(sed -n 's/.*p99 latency: \([0-9]*\) usec.*/\1/p' <<<"$out" | tail -1)
    echo "| $model | $protocol | $concurrency | $throughput | $p50 | $p99 |"
}

echo "| model | protocol | concurrency | infer/s | p50 µs | p99 µs |"
echo "|---|---|---|---|---|---|"
for protocol in "V2 HTTP JSON" "V2 gRPC"; do
    point dense "$protocol" 32 --shape x:1,64
    point dense_batched "$protocol" 32
done
minilm_shapes=(--shape input_ids:128 --shape attention_mask:128 --shape token_type_ids:128)
point minilm "V2 gRPC" 16 --input-data zero --shape input_ids:1,128 --shape attention_mask:1,128 --shape token_type_ids:1,128
point minilm_batched "V2 gRPC" 16 --input-data zero "${minilm_shapes[@]}"
for protocol in "V2 HTTP JSON"; do
    point dense "$protocol" 1 --shape x:1,64
    point dense_batched "$protocol" 1
done

# 4. Sentences (wrk: perf_analyzer cannot vary a BYTES input's text per request as simply).
if ! command -v wrk >/dev/null 2>&1; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
    $sudo_cmd apt-get install -y -q wrk >/dev/null || {
        $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q wrk >/dev/null
    }
fi
sentences() { # model -> sentences/s (any non-200 answer stops wrk and fails the run)
    local out
    out=$(wrk -t2 -c16 -d"${seconds}s" -s bench/sentences.lua "http://$rest/v2/models/$1/infer" 2>&1)
    if grep -q '^status' <<<"$out" || grep -q 'Non-2xx' <<<"$out"; then echo "$1: requests failed: $out" >&2; exit 1; fi
    sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out"
}
echo
echo "Sentences (13-18 tokens) at concurrency 16, wrk, ${seconds} s a point:"
echo
echo "| round | minilm_text (sentences/s) | minilm_text_batched | batched / unbatched |"
echo "|---|---|---|---|"
sum_off=0; sum_on=0
for round in $(seq "$rounds"); do
    if [ $((round % 2)) = 1 ]; then off=$(sentences minilm_text); on=$(sentences minilm_text_batched)
    else on=$(sentences minilm_text_batched); off=$(sentences minilm_text); fi
    sum_off=$(python3 -c "print($sum_off + $off)"); sum_on=$(python3 -c "print($sum_on + $on)")
    echo "| $round | $off | $on | $(python3 -c "print(f'{$on / $off:.2f}')") |"
done
echo "| mean | $(python3 -c "print(f'{$sum_off / $rounds:.1f}')") | $(python3 -c "print(f'{$sum_on / $rounds:.1f}')") | $(python3 -c "print(f'{$sum_on / $sum_off:.2f}')") |"
batches=$(curl -s "http://$rest/metrics" | sed -n 's/^quiver_batch_size_\(sum\|count\){model="minilm_text_batched".*} \(.*\)/\2/p' | paste -sd' ')
echo
echo "minilm_text_batched: mean batch $(python3 -c "s, c = map(float, '$batches'.split()); print(f'{s / c:.2f}')") requests"

# 5. Where the dense model's CPU goes, batching off vs on: wrk at concurrency 32 over V2 JSON,
#    each thread's CPU time (from /proc) per answered request, the client's too, and the idle
#    cores. The engine thread's share bounds what batching can gain: with a free engine call
#    and no idle core, the unbatched total would fall by exactly that share.
ticks=$(getconf CLK_TCK)
thread_cpu() { # pid -> "thread-name ticks" lines, threads of one name summed
    for task in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' _ <"$task/comm")" "$(awk '{print $14 + $15}' "$task/stat")"
    done | awk '{t[$1] += $2} END {for (n in t) print n, t[n]}' | sort
}
idle_ticks() { awk '/^cpu /{print $5 + $6}' /proc/stat; }
cpu_split() { # model -> one table row
    local before after idle0 idle1 out rate
    before=$(thread_cpu $server); idle0=$(idle_ticks)
    out=$(wrk -t2 -c32 -d"${seconds}s" -s bench/dense.lua "http://$rest/v2/models/$1/infer" 2>&1)
    after=$(thread_cpu $server); idle1=$(idle_ticks)
    if grep -q '^status' <<<"$out" || grep -q 'Non-2xx' <<<"$out"; then echo "$1: requests failed: $out" >&2; exit 1; fi
    rate=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
    # The client's CPU is what the machine was busy for beyond the server's threads.
    join <(echo "$before") <(echo "$after") |
        python3 -c '
import sys
model, rate, seconds, ticks, idle_ticks, cores = sys.argv[1], *map(float, sys.argv[2:])
per_request = lambda t: t / ticks / (seconds * rate) * 1e6
split = {"runtime": 0.0, "engine": 0.0, "other": 0.0}
for line in sys.stdin:
    name, t0, t1 = line.split()
    # Engine threads are "quiver-MODEL-N", cut to 15 characters like every thread name.
    kind = "engine" if name.startswith(f"quiver-{model}-"[:15]) else "runtime" if name.startswith("tokio") else "other"
    split[kind] += per_request(int(t1) - int(t0))
idle = idle_ticks / ticks / seconds
busy = (cores - idle) / rate * 1e6  # all cores busy time per request: server, client, kernel
rest = busy - sum(split.values())
runtime, engine, other = split["runtime"], split["engine"], split["other"]
print(f"| {model} | {rate:.0f} | {runtime:.1f} | {engine:.1f} | {other:.1f} | {rest:.1f} | {idle:.2f} |")
' "$1" "$rate" "$seconds" "$ticks" $((idle1 - idle0)) "$(nproc)"
}
echo
echo "dense at concurrency 32 (wrk, V2 JSON): CPU µs per request by thread, ${seconds} s a point:"
echo
echo "| model | infer/s | runtime threads | engine thread | log + metrics threads | client and kernel rest | idle cores |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
    cpu_split dense
    cpu_split dense_batched
done

kill $server 2>/dev/null; wait $server 2>/dev/null || true
echo
echo "In-process engine, all_minilm_l6_v2 at 17 tokens (criterion: low, mean, high of one call):"
QUIVER_SHARED_MODELS=$shared QUIVER_ONNXRUNTIME_LIB=$ort QUIVER_BENCH_SEQ=17 \
    QUIVER_ONNXRUNTIME_SPINNING=${QUIVER_ONNXRUNTIME_SPINNING:-false} \
    cargo bench -q -p quiver-engine-onnxruntime --bench engine_call -- --warm-up-time 1 \
    --measurement-time "$seconds" "onnxruntime/all_minilm" 2>&1 | grep -E '^onnxruntime/|time:'
