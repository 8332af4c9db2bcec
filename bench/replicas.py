"""Replicas behind nginx (issue 20's benchmark): throughput of 1, 2 and 3 Quiver replicas
behind Debian's nginx with the shipped deploy/nginx/nginx.conf, the same load straight to one
replica (what nginx adds per request), and the p99 while a replica is lost (SIGKILL mid-run).

The dense 64→256→10 fixture, V2 JSON through wrk (bench/dense.lua), each replica with one
intra-op thread; on a 2-core machine the cores cap the total, which is the point to see.

    python3 bench/replicas.py [--binary target/release/quiver] [--seconds 5] [--connections 8]
"""
import argparse
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
DENSE = ROOT / "crates" / "test-support" / "fixtures" / "models" / "dense"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


def replica(binary, repository, i):
    rest, grpc = free_port(), free_port()
    process = subprocess.Popen(
        [binary, "serve", "--model-repository", str(repository), "--host", "127.0.0.1",
         "--rest-port", str(rest), "--grpc-port", str(grpc), "--intra-op-threads", "1",
         "--replica-id", f"r{i}", "--model-control-mode", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{rest}")
    return process, rest, grpc


def upstream(text, pattern, ports):
    """`text` with the servers `pattern` matches replaced by one line per port."""
    lines = "\n        ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in ports)
    seen = []

    def swap(_match):
        seen.append(1)
        return lines if len(seen) == 1 else ""

    return re.sub(pattern, swap, text)


def nginx(prefix, replicas):
    """nginx on the shipped config, its upstreams cut to `replicas`; returns (process, port)."""
    text = NGINX_CONF.read_text()
    text = upstream(text, r"server 127\.0\.0\.1:85[0-2]1 [^;]*;", [r for _, r, _ in replicas])
    text = upstream(text, r"server 127\.0\.0\.1:85[0-2]0 [^;]*;", [g for _, _, g in replicas])
    port = free_port()
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    text = text.replace("listen 8081 http2;", f"listen 127.0.0.1:{free_port()} http2;")
    shutil.rmtree(prefix, ignore_errors=True)
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(text)
    process = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}")
    return process, port


def wrk(port, seconds, connections, path="/v2/models/dense/infer"):
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(ROOT / "bench" / "dense_count.lua"), f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(g) for g in sockets.groups()) if sockets else 0
    return rate, pct(50), pct(99), failed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.environ.get("QUIVER_BIN", str(ROOT / "target" / "release" / "quiver")))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp())
    repository = work / "models"
    shutil.copytree(DENSE, repository / "dense")
    replicas = [replica(args.binary, repository, i) for i in range(3)]
    try:
        print(f"binary {args.binary}; wrk -t2 -c{args.connections} -d{args.seconds}s, V2 JSON, dense\n")
        print("| target | req/s | p50 ms | p99 ms | failed |")
        print("|---|---|---|---|---|")
        rate, p50, p99, failed = wrk(replicas[0][1], args.seconds, args.connections)
        print(f"| one replica, direct | {rate:.0f} | {p50:.2f} | {p99:.2f} | {failed} |")
        direct = rate
        for n in (1, 2, 3):
            proxy, port = nginx(work / f"nginx{n}", replicas[:n])
            try:
                rate, p50, p99, failed = wrk(port, args.seconds, args.connections)
            finally:
                proxy.send_signal(signal.SIGQUIT)
                proxy.wait()
            print(f"| {n} replica(s) behind nginx | {rate:.0f} | {p50:.2f} | {p99:.2f} | {failed} |")
            if n == 1:
                # Per request, what nginx adds: the time per request through it less direct.
                cost = (1 / rate - 1 / direct) * 1e6
        # A replica lost mid-run: SIGKILL at a third of the run.
        proxy, port = nginx(work / "nginx-loss", replicas)
        killer = threading.Timer(args.seconds / 3, lambda: replicas[2][0].send_signal(signal.SIGKILL))
        killer.start()
        try:
            rate, p50, p99, failed = wrk(port, args.seconds, args.connections)
        finally:
            proxy.send_signal(signal.SIGQUIT)
            proxy.wait()
        print(f"| 3 replicas, one SIGKILLed mid-run | {rate:.0f} | {p50:.2f} | {p99:.2f} | {failed} |")
        print(f"\nnginx's cost per request at c={args.connections}, one replica: {cost:.0f} µs of "
              "the machine's time (1/rate through nginx less 1/rate direct)")
    finally:
        for process, _, _ in replicas:
            process.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
