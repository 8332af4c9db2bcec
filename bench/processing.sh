#!/usr/bin/env bash
# Server-side image pre-processing under load (docs/processing.md): mobilenet_v2 on ONNX Runtime,
# configured as examples/models/mobilenet_v2/config.toml, at concurrency 8, fed
#   - a JPEG as a V2 BYTES input (binary request, as tritonclient sends it): grace_hopper.jpg
#     (512x600, 61 KB) and a ~1.9 MP JPEG (chelsea upscaled to 1600x1200, quality 90); the
#     server decodes, resizes (shorter side 256, centre crop 224) and normalises;
#   - the normalised NCHW float tensor the model takes, as V2 JSON (what a client that does its
#     own pre-processing sends, ~3 MB of text) and as V2 binary (602 KB); it passes through.
# Every request gets the same post-processing (softmax, top 5 labels). Prints images/s for each,
# the ratio of each to the float tensor over V2 JSON, and the mean `preprocess` stage time per
# request from /metrics. The modes are measured in turns, ROUNDS rounds, so that the machine's
# drift hits all alike.
#
#   bench/processing.sh [ROUNDS] [SECONDS_PER_POINT]      (default 3 rounds of 10 s)
#   CLIENT=python PIN=0 bench/processing.sh [ROUNDS] [SECONDS]
#
# CLIENT=python measures end to end instead: the README's client (examples/client/predict_image.py
# through bench/processing_client.py, 8 processes) sending the JPEG file vs pre-processing it
# itself and sending JSON floats, its own work counted.
#
# The server runs on core 1 and the load generator on core 0 (as bench/observability.sh does);
# with PIN=0 both run on both cores (the server's pre-processing pool and ONNX Runtime then use
# two threads each, as in production, and share them with the load generator).
# perf_analyzer cannot be the load generator here: it sends each input with the datatype the
# model's metadata declares (FP32 for `input`), so it cannot send a BYTES image to it. The load
# generator is oha if it is on PATH, else hey (Debian's `hey` package, installed if missing);
# both POST a prepared body with keep-alive, so neither mode pays for building its request.
#
# Needs the release binary (cargo build --release), target/venv (scripts/test.sh makes it: numpy,
# pillow, requests), ../shared/models (or QUIVER_SHARED_MODELS), and ONNX Runtime's library
# (QUIVER_ONNXRUNTIME_LIB, else fetched with scripts/fetch-onnxruntime.sh).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-10}
concurrency=8
bin=target/release/quiver
python=target/venv/bin/python
shared=${QUIVER_SHARED_MODELS:-$PWD/../shared/models}
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
[ -x "$python" ] || { echo "no $python: run scripts/test.sh once" >&2; exit 1; }
[ -f "$shared/mobilenet_v2/1/model.onnx" ] || { echo "no shared models at $shared (set QUIVER_SHARED_MODELS)" >&2; exit 1; }
ort=${QUIVER_ONNXRUNTIME_LIB:-}
if [ -z "$ort" ] || [ ! -f "$ort" ]; then
    ort=$(scripts/fetch-onnxruntime.sh | tail -n 1)
fi

if command -v oha >/dev/null 2>&1; then
    loadgen=oha
else
    if ! command -v hey >/dev/null 2>&1; then
        sudo_cmd=""
        if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
        $sudo_cmd apt-get install -y -q hey >/dev/null || {
            $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q hey >/dev/null
        }
    fi
    loadgen=hey
fi

work=$(mktemp -d)
log="$work/server.log"
repo="$work/repo"
mkdir -p "$repo/mobilenet_v2/1"
ln -s "$shared/mobilenet_v2/1/model.onnx" "$repo/mobilenet_v2/1/model.onnx"
cp examples/models/mobilenet_v2/labels.txt "$repo/mobilenet_v2/"
# The example config, on ONNX Runtime (a top-level key, so before the example's tables).
# BATCH=N: requests also batch, up to N (max_queue_delay 2 ms).
{
    printf 'engine = "onnxruntime"\n\n'
    cat examples/models/mobilenet_v2/config.toml
    if [ -n "${BATCH:-}" ]; then printf '\n[batching]\nmax_batch_size = %d\nmax_queue_delay_us = 2000\n' "$BATCH"; fi
} >"$repo/mobilenet_v2/config.toml"

# The request bodies, built once: NAME.body, NAME.type (Content-Type), NAME.header (extra header).
"$python" - "$shared" "$work" <<'PY'
import io, json, pathlib, struct, sys

import numpy as np
from PIL import Image

shared, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
LOGITS = [{"name": "logits", "parameters": {"binary_data": False}}]


def write(name, body, content_type, header=""):
    (work / f"{name}.body").write_bytes(body)
    (work / f"{name}.type").write_text(content_type)
    (work / f"{name}.header").write_text(header)


def bytes_request(name, image):
    """V2 binary: JSON header, then the BYTES tensor (u32 length + the bytes)."""
    tensor = struct.pack("<I", len(image)) + image
    header = json.dumps({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(tensor)}}],
                         "outputs": LOGITS}).encode()
    write(name, header + tensor, "application/octet-stream", f"Inference-Header-Content-Length: {len(header)}")


hopper = (shared / "images" / "grace_hopper.jpg").read_bytes()
bytes_request("jpeg_0.3mp", hopper)
large = io.BytesIO()
Image.open(shared / "images" / "chelsea.png").convert("RGB").resize((1600, 1200), Image.BICUBIC).save(
    large, "JPEG", quality=90)
bytes_request("jpeg_1.9mp", large.getvalue())
(work / "large.jpg").write_bytes(large.getvalue())

# The float tensor: grace_hopper.jpg pre-processed by the client (examples/client/predict_image.py).
image = Image.open(io.BytesIO(hopper)).convert("RGB")
width, height = image.size
scale = 256 / min(width, height)
image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
width, height = image.size
left, top = (width - 224) // 2, (height - 224) // 2
image = image.crop((left, top, left + 224, top + 224))
tensor = (((np.asarray(image, dtype=np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1))[np.newaxis]
tensor = np.ascontiguousarray(tensor, dtype=np.float32)
body = {"inputs": [{"name": "input", "shape": list(tensor.shape), "datatype": "FP32",
                    "data": tensor.ravel().tolist()}], "outputs": [{"name": "logits"}]}
write("float_json", json.dumps(body).encode(), "application/json")
header = json.dumps({"inputs": [{"name": "input", "shape": list(tensor.shape), "datatype": "FP32",
                                 "parameters": {"binary_data_size": tensor.nbytes}}],
                     "outputs": LOGITS}).encode()
write("float_binary", header + tensor.tobytes(), "application/octet-stream",
      f"Inference-Header-Content-Length: {len(header)}")
for path in sorted(work.glob("*.body")):
    print(f"{path.stem}: {path.stat().st_size} bytes", file=sys.stderr)
PY

server_cpus=(taskset -c 1)
client_cpus=(taskset -c 0)
if [ "${PIN:-1}" = 0 ]; then server_cpus=(); client_cpus=(); fi
"${server_cpus[@]}" "$bin" serve --model-repository "$repo" --host 127.0.0.1 --rest-port 0 --grpc-port 0 \
    --onnxruntime-lib "$ort" 2>"$log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 600); do
    grep -q "REST API listening" "$log" && break
    kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
done
rest=$(sed -n 's/.*REST API listening on http:\/\///p' "$log" | head -1)
[ -n "$rest" ] || { echo "the server did not start:" >&2; cat "$log" >&2; exit 1; }
url="http://$rest/v2/models/mobilenet_v2/infer"
modes=(jpeg_0.3mp jpeg_1.9mp float_json float_binary)

# Every mode must answer 200 with the top 5 labels before it is timed (a fast 400 is no result).
"$python" - "$url" "$work" "${modes[@]}" <<'PY'
import pathlib, sys

import requests

url, work, modes = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
for mode in modes:
    headers = {"Content-Type": (work / f"{mode}.type").read_text()}
    extra = (work / f"{mode}.header").read_text()
    if extra:
        key, value = extra.split(": ", 1)
        headers[key] = value
    response = requests.post(url, data=(work / f"{mode}.body").read_bytes(), headers=headers, timeout=120)
    if response.status_code != 200:
        sys.exit(f"{mode}: {response.status_code} {response.text}")
    [logits] = [o for o in response.json()["outputs"] if o["name"] == "logits"]
    if logits["datatype"] != "BYTES" or logits["shape"] != [1, 5]:
        sys.exit(f"{mode}: logits not post-processed: {logits['datatype']} {logits['shape']}")
    print(f"{mode}: top-1 {logits['data'][0]}", file=sys.stderr)
PY

stage_totals() { # -> "SUM COUNT" of the preprocess stage so far
    "$python" - "http://$rest/metrics" <<'PY'
import re, sys, urllib.request

text = urllib.request.urlopen(sys.argv[1], timeout=30).read().decode()
totals = {"sum": 0.0, "count": 0.0}
for line in text.splitlines():
    match = re.match(r'quiver_stage_duration_seconds_(sum|count)\{([^}]*)\} ([0-9.eE+-]+)$', line)
    if match and 'stage="preprocess"' in match.group(2) and 'model="mobilenet_v2"' in match.group(2):
        totals[match.group(1)] += float(match.group(3))
print(totals["sum"], totals["count"])
PY
}

throughput() { # MODE -> "IMAGES_PER_S PREPROCESS_MS"
    local mode=$1 out before after
    local args=(-z "${seconds}s" -c "$concurrency" -m POST -T "$(cat "$work/$mode.type")" -D "$work/$mode.body")
    if [ -s "$work/$mode.header" ]; then args+=(-H "$(cat "$work/$mode.header")"); fi
    if [ "$loadgen" = oha ]; then args+=(--no-tui); fi
    before=$(stage_totals)
    out=$("${client_cpus[@]}" "$loadgen" "${args[@]}" "$url" 2>&1) || { echo "$loadgen failed: $out" >&2; exit 1; }
    after=$(stage_totals)
    # Only 200s count: more than 1 % other status codes or errors fails the run.
    local rate
    rate=$(python3 -c '
import re, sys
out = sys.stdin.read()
rate = re.search(r"Requests/sec:\s*([0-9.]+)", out)
ok = sum(int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out) if code == "200")
bad = sum(int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", out) if code != "200")
errors = out.split("Error distribution:", 1)[1] if "Error distribution:" in out else ""
bad += sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", errors, re.M))
if rate is None or ok == 0 or bad > 0.01 * (ok + bad):
    sys.exit(f"{sys.argv[1]}: requests failed under load ({ok} ok, {bad} not):\n{out}")
if bad:
    print(f"warning: {sys.argv[1]}: {bad} of {ok + bad} requests failed", file=sys.stderr)
print(rate.group(1))' "$mode" <<<"$out")
    python3 -c "
b = '$before'.split(); a = '$after'.split()
n = float(a[1]) - float(b[1])
print(f'{$rate:.1f}', f'{(float(a[0]) - float(b[0])) / n * 1000:.2f}' if n else '-')"
}

if [ "${CLIENT:-}" = python ]; then
    # End to end with the README's Python client: its own work (reading and base64 of the file,
    # or decoding, resizing, normalising and writing ~3 MB of JSON) counts, as it does for a user.
    client() { "${client_cpus[@]}" "$python" bench/processing_client.py "http://$rest" mobilenet_v2 "$@" "$concurrency" "$seconds"; }
    images=("$shared/images/grace_hopper.jpg" "$work/large.jpg")
    echo "README client (examples/client/predict_image.py) x $concurrency processes, ${seconds} s a point"
    echo
    echo "| round | JPEG 0.3 MP sent (img/s) | 0.3 MP as JSON floats | ratio | JPEG 1.9 MP sent | 1.9 MP as JSON floats | ratio |"
    echo "|---|---|---|---|---|---|---|"
    sums=(0 0 0 0)
    for round in $(seq "$rounds"); do
        row=()
        for i in 0 1; do
            if [ $((round % 2)) = 0 ]; then
                tensor=$(client "${images[$i]}" tensor); image=$(client "${images[$i]}" image)
            else
                image=$(client "${images[$i]}" image); tensor=$(client "${images[$i]}" tensor)
            fi
            row+=("$image" "$tensor" "$(python3 -c "print(f'{$image / $tensor:.2f}')")")
            sums[$((2 * i))]=$(python3 -c "print(${sums[$((2 * i))]} + $image)")
            sums[$((2 * i + 1))]=$(python3 -c "print(${sums[$((2 * i + 1))]} + $tensor)")
        done
        echo "| $round | ${row[0]} | ${row[1]} | ${row[2]} | ${row[3]} | ${row[4]} | ${row[5]} |"
    done
    m() { python3 -c "print(f'{${sums[$1]} / $rounds:.1f}')"; }
    r() { python3 -c "print(f'{${sums[$1]} / ${sums[$2]}:.2f}')"; }
    echo "| mean | $(m 0) | $(m 1) | $(r 0 1) | $(m 2) | $(m 3) | $(r 2 3) |"
    exit 0
fi
if [ "${PIN:-1}" = 0 ]; then
    echo "load generator: $loadgen, concurrency $concurrency, ${seconds} s a point; server and $loadgen share both cores"
else
    echo "load generator: $loadgen, concurrency $concurrency, ${seconds} s a point; server on core 1, $loadgen on core 0"
fi
echo
echo "| round | JPEG 0.3 MP (img/s) | JPEG 1.9 MP (img/s) | float V2 JSON (img/s) | float V2 binary (img/s) | JPEG 0.3 MP / float JSON | JPEG 1.9 MP / float JSON |"
echo "|---|---|---|---|---|---|---|"
declare -A total preprocess rate
for mode in "${modes[@]}"; do total[$mode]=0; preprocess[$mode]=""; done
for round in $(seq "$rounds"); do
    # Rotate the order, so that no mode always gets the warmer (or cooler) machine.
    order=("${modes[@]:$(( (round - 1) % ${#modes[@]} ))}" "${modes[@]:0:$(( (round - 1) % ${#modes[@]} ))}")
    for mode in "${order[@]}"; do
        result=$(throughput "$mode")
        read -r r p <<<"$result"
        rate[$mode]=$r
        preprocess[$mode]="${preprocess[$mode]} $p"
        total[$mode]=$(python3 -c "print(${total[$mode]} + $r)")
    done
    echo "| $round | ${rate[jpeg_0.3mp]} | ${rate[jpeg_1.9mp]} | ${rate[float_json]} | ${rate[float_binary]} |" \
        "$(python3 -c "print(f'{${rate[jpeg_0.3mp]} / ${rate[float_json]}:.2f}')") |" \
        "$(python3 -c "print(f'{${rate[jpeg_1.9mp]} / ${rate[float_json]}:.2f}')") |"
done
mean() { python3 -c "print(f'{${total[$1]} / $rounds:.1f}')"; }
echo "| mean | $(mean jpeg_0.3mp) | $(mean jpeg_1.9mp) | $(mean float_json) | $(mean float_binary) |" \
    "$(python3 -c "print(f'{${total[jpeg_0.3mp]} / ${total[float_json]}:.2f}')") |" \
    "$(python3 -c "print(f'{${total[jpeg_1.9mp]} / ${total[float_json]}:.2f}')") |"
echo
echo "Mean preprocess stage per request (ms, each round): JPEG 0.3 MP:${preprocess[jpeg_0.3mp]};" \
    "JPEG 1.9 MP:${preprocess[jpeg_1.9mp]}; float V2 JSON:${preprocess[float_json]};" \
    "float V2 binary:${preprocess[float_binary]}"
