"""Cold start from an object store vs. a local directory (issue 19's benchmark).

An S3-compatible server (moto, in server mode, on a loopback port) holds the same repositories
as a local directory: `mobilenet_v2` (the example, 14 MB) and 1,000 copies of the tiny
`half_plus_two` fixture (1,000 model files). For each, the time from starting `quiver serve` to
ready (every model loaded) is measured from the local directory, from S3 with an empty cache
(cold: everything downloaded) and from S3 again with that cache (warm restart: one listing, no
download), in interleaved rounds; the median of the rounds is reported, with the ratios to
local.

    target/venv/bin/python bench/model_stores.py [--rounds 3] [--binary target/release/quiver]
"""
import argparse
import logging
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
from moto.server import ThreadedMotoServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
HALF = ROOT / "crates" / "test-support" / "fixtures" / "models" / "half_plus_two" / "1" / "model.onnx"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_REGION": "us-east-1"}


def ready_after(binary, repository, env):
    """Seconds from start to ready, and the downloads the server counted."""
    started = time.monotonic()
    process = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repository), "--host", "127.0.0.1",
         "--rest-port", "0", "--grpc-port", "0", "--model-control-mode", "none"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "QUIVER_LOG": "warn,quiver::server=info", **env})
    url = None
    for line in process.stderr:
        found = re.search(r"REST API listening on (http://\S+)", line)
        if found:
            url = found.group(1)
            break
    assert url, "the server did not start"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.01)
    took = time.monotonic() - started
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    downloads = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("quiver_store_downloads_total{") and 'outcome="ok"' in line)
    process.terminate()
    process.wait(timeout=60)
    return took, int(downloads)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--binary", default=os.environ.get("QUIVER_BIN", str(ROOT / "target" / "release" / "quiver")))
    parser.add_argument("--models", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    work = pathlib.Path(tempfile.mkdtemp())
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{moto.get_host_and_port()[1]}"
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                      aws_secret_access_key="bench", region_name="us-east-1")
    try:
        repositories = {"mobilenet_v2": work / "mobilenet", f"{args.models} files": work / "many"}
        shutil.copytree(ROOT / "examples" / "models" / "mobilenet_v2", work / "mobilenet" / "mobilenet_v2")
        data = HALF.read_bytes()
        for i in range(args.models):
            (work / "many" / f"m{i:04}" / "1").mkdir(parents=True)
            (work / "many" / f"m{i:04}" / "1" / "model.onnx").write_bytes(data)
        for name, local in repositories.items():
            bucket = re.sub(r"[^a-z0-9]", "", name.lower())
            s3.create_bucket(Bucket=bucket)
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                s3.put_object(Bucket=bucket, Key=f"repo/{path.relative_to(local).as_posix()}",
                              Body=path.read_bytes())
        print(f"binary: {args.binary}; moto at {endpoint}; {args.rounds} rounds, medians\n")
        print("| repository | local | S3 cold | S3 warm (cache) | cold/local | warm/local | downloads cold, warm |")
        print("|---|---|---|---|---|---|---|")
        for name, local in repositories.items():
            bucket = re.sub(r"[^a-z0-9]", "", name.lower())
            times = {"local": [], "cold": [], "warm": []}
            counts = {}
            for round_ in range(args.rounds):
                cache = work / f"cache-{bucket}-{round_}"
                env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "QUIVER_MODEL_CACHE_DIR": str(cache)}
                times["local"].append(ready_after(args.binary, local, {})[0])
                took, counts["cold"] = ready_after(args.binary, f"s3://{bucket}/repo", env)
                times["cold"].append(took)
                took, counts["warm"] = ready_after(args.binary, f"s3://{bucket}/repo", env)
                times["warm"].append(took)
                shutil.rmtree(cache)
            local_s, cold_s, warm_s = (statistics.median(times[k]) for k in ("local", "cold", "warm"))
            print(f"| {name} | {local_s:.2f} s | {cold_s:.2f} s | {warm_s:.2f} s | "
                  f"{cold_s / local_s:.2f} | {warm_s / local_s:.2f} | {counts['cold']}, {counts['warm']} |")
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
