"""The overload curve behind bench/overload.sh: a slow model (MiniLM at 128 tokens on ONNX Runtime,
one engine thread) behind --max-inflight-requests, offered a steady rate of V2 JSON requests at
multiples of its measured capacity (open loop: requests are sent on schedule whatever the
answers). For each multiple: goodput (answers 200 a second), its share of the capacity, p50/p99 of
the admitted requests, how many were refused with 429 and how fast.

    python bench/overload.py BINARY SHARED_MODELS ONNXRUNTIME_LIB [SECONDS] [MULTIPLES]
"""
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

SEQ = 128
INFLIGHT = 4


def body():
    ids = [101] + [2023] * (SEQ - 2) + [102]
    inputs = [{"name": n, "shape": [1, SEQ], "datatype": "INT64", "data": d}
              for n, d in (("input_ids", ids), ("attention_mask", [1] * SEQ), ("token_type_ids", [0] * SEQ))]
    return json.dumps({"inputs": inputs,
                       "outputs": [{"name": "last_hidden_state", "parameters": {"binary_data": True}}]})


def start(binary, repo, lib):
    env = dict(os.environ, NO_COLOR="1", QUIVER_ONNXRUNTIME_LIB=lib)
    process = subprocess.Popen([binary, "serve", "--model-repository", str(repo), "--host", "127.0.0.1",
                                "--rest-port", "0", "--grpc-port", "0", "--intra-op-threads", "1",
                                "--max-inflight-requests", str(INFLIGHT)],
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    for line in process.stderr:
        if "REST API listening on " in line:
            url = line.split("REST API listening on ", 1)[1].strip()
            threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
            return process, url
    raise SystemExit("the server did not start")


def pct(values, q):
    values = sorted(values)
    return 1000 * values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def main():
    binary, shared, lib = sys.argv[1:4]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    multiples = [float(m) for m in (sys.argv[5] if len(sys.argv) > 5 else "0.5,1,2,3,5").split(",")]
    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-overload-"))
    (work / "minilm" / "1").mkdir(parents=True)
    os.symlink(pathlib.Path(shared) / "all_minilm_l6_v2" / "1" / "model.onnx", work / "minilm" / "1" / "model.onnx")
    process, url = start(binary, work, lib)
    url += "/v2/models/minilm/infer"
    payload = body()
    local = threading.local()

    def send():
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.monotonic()
        try:
            status = session.post(url, data=payload, headers={"Content-Type": "application/json"},
                                  timeout=60).status_code
        except requests.RequestException as e:
            status = repr(e)
        return status, time.monotonic() - started

    try:
        for _ in range(5):
            send()
        end = time.monotonic() + seconds
        done = []

        def closed_loop():
            while time.monotonic() < end:
                done.append(send())

        with ThreadPoolExecutor(INFLIGHT) as pool:
            for _ in range(INFLIGHT):
                pool.submit(closed_loop)
        capacity = sum(1 for s, _ in done if s == 200) / seconds
        print(f"capacity (closed loop, {INFLIGHT} clients, {seconds:.0f} s): {capacity:.1f} requests/s; "
              f"--max-inflight-requests {INFLIGHT}")
        print("| offered | offered/s | goodput/s | goodput/capacity | admitted p50 | admitted p99 | refused (429) | 429 p50 | 429 p99 | other |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for multiple in multiples:
            offered = multiple * capacity
            with ThreadPoolExecutor(128) as pool:
                futures = []
                begin = time.monotonic()
                for i in range(int(offered * seconds)):
                    delay = begin + i / offered - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(send))
                results = [f.result() for f in futures]
                elapsed = time.monotonic() - begin
            ok = [t for s, t in results if s == 200]
            refused = [t for s, t in results if s == 429]
            other = len(results) - len(ok) - len(refused)
            goodput = len(ok) / elapsed
            print(f"| {multiple:g}× | {offered:.1f} | {goodput:.1f} | {goodput / capacity:.2f} | {pct(ok, 0.5):.0f} ms | "
                  f"{pct(ok, 0.99):.0f} ms | {len(refused)} | {pct(refused, 0.5):.1f} ms | {pct(refused, 0.99):.1f} ms | {other} |",
                  flush=True)
            time.sleep(1)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
