"""Experiments' cost (issue 18's benchmark): request throughput and latency of one Quiver with no
traffic policy, with a two-way split and a sticky key, and with a 100% shadow on a same-cost
version — in interleaved rounds on the same server (the policy is switched through the admin
API between runs), so the ratios come from one run on one machine.

The dense 64→256→10 fixture as versions 1 and 2 (the same file: the same cost), V2 JSON through
wrk with an `x-user-id` header on every request (bench/dense_sticky.lua) in every mode.

    python3 bench/experiments.py [--binary target/release/quiver] [--seconds 5] [--rounds 3]
"""
import argparse
import json
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
DENSE = ROOT / "crates" / "test-support" / "fixtures" / "models" / "dense" / "1" / "model.onnx"
LUA = ROOT / "bench" / "dense_sticky.lua"

MODES = {
    "no policy": None,
    "split 50/50 + sticky": {"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
                             "sticky_key": "x-user-id"},
    "100% shadow": {"split": [{"version": 1, "weight": 100}], "shadow": {"version": 2, "percent": 100}},
}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return r.status


def wait_ready(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if call("GET", f"{url}/v2/health/ready") == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


def micros(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1, "ms": 1000, "s": 1e6}[unit]


def wrk(url, seconds, connections):
    out = subprocess.run(["wrk", "-t1" if connections == 1 else "-t2", f"-c{connections}",
                          f"-d{seconds}s", "--latency", "-s", str(LUA), url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = micros(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = micros(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    return rate, p50, p99


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "release" / "quiver"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = pathlib.Path(tmp) / "repo"
        for version in (1, 2):
            (repo / "dense" / str(version)).mkdir(parents=True)
            shutil.copy(DENSE, repo / "dense" / str(version) / "model.onnx")
        (repo / "dense" / "config.toml").write_text('version_policy = "all"\n')
        port = free_port()
        server = subprocess.Popen(
            [args.binary, "serve", "--model-repository", str(repo), "--host", "127.0.0.1",
             "--rest-port", str(port), "--grpc-port", str(free_port()), "--intra-op-threads", "1",
             "--metadata-store", f"sqlite:{tmp}/meta.sqlite3", "--model-control-mode", "none"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url)
            results = {(mode, c): [] for mode in MODES for c in (1, 8)}
            for _ in range(args.rounds):
                for mode, policy in MODES.items():
                    if policy is None:
                        call("DELETE", f"{url}/admin/models/dense/traffic")
                    else:
                        call("PUT", f"{url}/admin/models/dense/traffic", policy)
                    for connections in (1, 8):
                        results[(mode, connections)].append(wrk(url, args.seconds, connections))
            print(f"binary {args.binary}; wrk -s bench/dense_sticky.lua -d{args.seconds}s, "
                  f"{args.rounds} interleaved rounds, medians\n")
            print("| mode | c | requests/s | ratio | p50 µs | p99 µs |")
            print("|---|---|---|---|---|---|")
            for connections in (1, 8):
                base = statistics.median(r[0] for r in results[("no policy", connections)])
                for mode in MODES:
                    runs = results[(mode, connections)]
                    rate = statistics.median(r[0] for r in runs)
                    p50 = statistics.median(r[1] for r in runs)
                    p99 = statistics.median(r[2] for r in runs)
                    print(f"| {mode} | {connections} | {rate:,.0f} | {rate / base:.2f}× | {p50:.0f} | {p99:.0f} |")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
