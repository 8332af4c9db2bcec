"""The soak behind bench/soak.sh: mixed traffic on every protocol for a long time, sampling the
server's resident memory, file descriptors and threads every 10 s, then a verdict.

Traffic: TF Serving REST predict (half_plus_two), KServe V2 HTTP JSON and binary (dense, through
tritonclient.http), KServe V2 gRPC (tritonclient.grpc), TF Serving gRPC (the TF Serving API stubs,
in a worker process on target/venv-tfserving's interpreter), ~1% of requests malformed (answered
400 / INVALID_ARGUMENT, counted apart), a new version of half_plus_two rolled in through the
repository API every minute, and a model loaded and unloaded through the API every 20 s.

Verdict (what tests/e2e/test_soak.py checks): resident memory at the end within 10% of what it
was after the warm-up; descriptors and threads back to their baseline once the clients are gone;
no 5xx / INTERNAL / UNAVAILABLE answer and no failed call; the server alive and its log free of
panics.

    python bench/soak.py --duration SECS --binary target/release/quiver \
        --tfserving-python target/venv-tfserving/bin/python
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "crates" / "test-support" / "fixtures" / "models"
SAMPLE_EVERY = 10.0
WARM_UP = 20.0
BAD_EVERY = 100  # one request in a hundred is malformed


class Tally:
    """What the clients saw in the current sample interval."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.ok, self.bad, self.failed, self.latencies = 0, 0, [], []

    def record(self, outcome, latency, what=None):
        with self.lock:
            if outcome == "ok":
                self.ok += 1
                self.latencies.append(latency)
            elif outcome == "bad":
                self.bad += 1
            else:
                self.failed.append(what)

    def merge(self, other):
        with self.lock:
            self.ok += other["ok"]
            self.bad += other["bad"]
            self.failed += other["failed"]
            self.latencies += other["latencies"]

    def take(self):
        with self.lock:
            taken = dict(ok=self.ok, bad=self.bad, failed=self.failed, latencies=self.latencies)
            self.reset()
            return taken


def proc_sample(pid):
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


# ---- the clients -------------------------------------------------------------------------

def tf_rest_client(url, tally, stop):
    import requests
    session = requests.Session()
    i = 0
    while not stop.is_set():
        i += 1
        bad = i % BAD_EVERY == 0
        # Strings for a float input: refused with 400.
        body = {"instances": [["a", "b", "c"]]} if bad else {"instances": [[1.0, 2.0, 3.0]]}
        started = time.monotonic()
        try:
            r = session.post(f"{url}/v1/models/half_plus_two:predict", json=body, timeout=30)
            if r.status_code == 200 and not bad and r.json()["predictions"] == [[2.5, 3.0, 3.5]]:
                tally.record("ok", time.monotonic() - started)
            elif bad and r.status_code == 400:
                tally.record("bad", 0)
            else:
                tally.record("failed", 0, f"tf_rest {r.status_code} {r.text[:200]}")
        except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the soak
            tally.record("failed", 0, f"tf_rest {e!r}")


def v2_http_client(url, tally, stop, binary):
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
    client = httpclient.InferenceServerClient(url.split("://", 1)[1], network_timeout=30)
    data = np.full((1, 64), 0.5, dtype=np.float32)
    i = 0
    while not stop.is_set():
        i += 1
        bad = i % BAD_EVERY == 0
        x = httpclient.InferInput("x", [1, 63] if bad else [1, 64], "FP32")
        x.set_data_from_numpy(data[:, :63] if bad else data, binary_data=binary)
        started = time.monotonic()
        name = "v2_binary" if binary else "v2_json"
        try:
            result = client.infer("dense", [x])
            if not bad and result.as_numpy("probs").shape == (1, 10):
                tally.record("ok", time.monotonic() - started)
            else:
                tally.record("failed", 0, f"{name} answered a bad request")
        except InferenceServerException as e:
            if bad and str(e.status()) == "400":
                tally.record("bad", 0)
            else:
                tally.record("failed", 0, f"{name} {e.status()} {e}")
        except Exception as e:  # noqa: BLE001
            tally.record("failed", 0, f"{name} {e!r}")
    client.close()


def v2_grpc_client(address, tally, stop):
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    client = grpcclient.InferenceServerClient(address)
    data = np.full((1, 64), 0.5, dtype=np.float32)
    i = 0
    while not stop.is_set():
        i += 1
        bad = i % BAD_EVERY == 0
        x = grpcclient.InferInput("x", [1, 63] if bad else [1, 64], "FP32")
        x.set_data_from_numpy(data[:, :63] if bad else data)
        started = time.monotonic()
        try:
            result = client.infer("dense", [x], client_timeout=30)
            if not bad and result.as_numpy("probs").shape == (1, 10):
                tally.record("ok", time.monotonic() - started)
            else:
                tally.record("failed", 0, "v2_grpc answered a bad request")
        except InferenceServerException as e:
            if bad and e.status() == "StatusCode.INVALID_ARGUMENT":
                tally.record("bad", 0)
            else:
                tally.record("failed", 0, f"v2_grpc {e.status()} {e}")
        except Exception as e:  # noqa: BLE001
            tally.record("failed", 0, f"v2_grpc {e!r}")
    client.close()


def tf_grpc_worker(address, seconds):
    """Runs in target/venv-tfserving: TF Serving gRPC Predict, a JSON tally on stdout each
    interval."""
    import grpc
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def request(bad):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = "half_plus_two"
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1), tensor_shape_pb2.TensorShapeProto.Dim(size=3)])
        if bad:  # strings for a float input: INVALID_ARGUMENT
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=[b"a"] * 3)
        else:
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=[1.0, 2.0, 3.0])
        r.inputs["x"].CopyFrom(tensor)
        return r

    good, bad_request = request(False), request(True)
    tally = Tally()
    end = time.monotonic() + seconds
    next_report = time.monotonic() + 1.0
    i = 0
    with grpc.insecure_channel(address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        while time.monotonic() < end:
            i += 1
            bad = i % BAD_EVERY == 0
            started = time.monotonic()
            try:
                response = stub.Predict(bad_request if bad else good, timeout=30)
                if not bad and "y" in response.outputs:
                    tally.record("ok", time.monotonic() - started)
                else:
                    tally.record("failed", 0, "tf_grpc answered a bad request")
            except grpc.RpcError as e:
                if bad and e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    tally.record("bad", 0)
                else:
                    tally.record("failed", 0, f"tf_grpc {e.code()} {e.details()}")
            if time.monotonic() >= next_report:
                print(json.dumps(tally.take()), flush=True)
                next_report += 1.0
    print(json.dumps(tally.take()), flush=True)


# ---- the server and the operator ---------------------------------------------------------

class Server:
    def __init__(self, binary, repo):
        command = [binary, "serve", "--model-repository", str(repo), "--host", "127.0.0.1",
                   "--rest-port", "0", "--grpc-port", "0", "--model-control-mode", "explicit",
                   "--load-model", "half_plus_two", "--load-model", "dense", "--intra-op-threads", "1"]
        env = dict(os.environ, NO_COLOR="1")
        env.pop("QUIVER_ONNXRUNTIME_LIB", None)
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        text=True, env=env)
        self.url = self.grpc = None
        self.panics = []
        ready = threading.Event()

        def pump():
            for line in self.process.stderr:
                if "panicked" in line:
                    self.panics.append(line.strip())
                if "REST API listening on " in line:
                    self.url = line.split("REST API listening on ", 1)[1].strip()
                if "gRPC API listening on " in line:
                    self.grpc = line.split("gRPC API listening on ", 1)[1].strip()
                if self.url and self.grpc:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(timeout=300)
        if not (self.url and self.grpc):
            raise SystemExit("the server did not start")

    def stop(self):
        self.process.terminate()
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return "killed after 60 s"


def operator(server, repo, stop, events):
    """Rolls a new version of half_plus_two in every minute, and loads and unloads a model
    every 20 s, through the repository API."""
    import requests
    version, tick = 1, 0
    while not stop.wait(10.0):
        tick += 1
        try:
            if tick % 6 == 0:
                version += 1
                target = repo / "half_plus_two" / str(version)
                shutil.copytree(repo / "half_plus_two" / str(version - 1), target)
                shutil.rmtree(repo / "half_plus_two" / str(version - 1))
                r = requests.post(f"{server.url}/v2/repository/models/half_plus_two/load", timeout=120)
                events.append(f"half_plus_two version {version} rolled in: {r.status_code}")
                if r.status_code != 200:
                    events.append(f"FAILED roll-over: {r.text[:200]}")
            if tick % 2 == 0:
                action = "load" if tick % 4 == 2 else "unload"
                r = requests.post(f"{server.url}/v2/repository/models/extra/{action}", timeout=120)
                if r.status_code != 200:
                    events.append(f"FAILED {action} of extra: {r.status_code} {r.text[:200]}")
        except Exception as e:  # noqa: BLE001
            events.append(f"FAILED operator step: {e!r}")


def traffic(server, tally, stop, tfserving_python, seconds):
    threads = [threading.Thread(target=tf_rest_client, args=(server.url, tally, stop), daemon=True),
               threading.Thread(target=v2_http_client, args=(server.url, tally, stop, False), daemon=True),
               threading.Thread(target=v2_http_client, args=(server.url, tally, stop, True), daemon=True),
               threading.Thread(target=v2_grpc_client, args=(server.grpc, tally, stop), daemon=True)]
    worker = subprocess.Popen([tfserving_python, __file__, "--tf-grpc-worker", server.grpc, str(seconds)],
                              stdout=subprocess.PIPE, text=True)

    def read_worker():
        for line in worker.stdout:
            tally.merge(json.loads(line))

    threads.append(threading.Thread(target=read_worker, daemon=True))
    for t in threads:
        t.start()
    return threads, worker


def settle(pid, baseline, timeout=30.0):
    """The last sample once descriptors and threads are back to the baseline (or after
    `timeout`)."""
    end = time.monotonic() + timeout
    while True:
        sample = proc_sample(pid)
        back = sample["fds"] <= baseline["fds"] and sample["threads"] <= baseline["threads"]
        if back or time.monotonic() > end:
            return sample
        time.sleep(0.5)


def p99(latencies):
    if not latencies:
        return float("nan")
    latencies = sorted(latencies)
    return 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float)
    parser.add_argument("--binary")
    parser.add_argument("--tfserving-python")
    parser.add_argument("--tf-grpc-worker", nargs=2, metavar=("ADDRESS", "SECONDS"))
    args = parser.parse_args()
    if args.tf_grpc_worker:
        tf_grpc_worker(args.tf_grpc_worker[0], float(args.tf_grpc_worker[1]))
        return 0

    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-soak-"))
    repo = work / "models"
    for name in ("half_plus_two", "dense"):
        shutil.copytree(FIXTURES / name, repo / name)
    shutil.copytree(FIXTURES / "int_affine", repo / "extra")
    server = Server(args.binary, repo)
    pid = server.process.pid
    tally = Tally()
    failures, events = [], []
    try:
        # Warm-up traffic, then the baseline once its clients are gone.
        stop = threading.Event()
        threads, worker = traffic(server, tally, stop, args.tfserving_python, 5)
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        worker.wait(timeout=60)
        failures += tally.take()["failed"]
        time.sleep(2)
        baseline = proc_sample(pid)
        print(f"baseline (after a 5 s warm-up, clients gone): {baseline}", flush=True)

        stop = threading.Event()
        threads, worker = traffic(server, tally, stop, args.tfserving_python, args.duration)
        ops = threading.Thread(target=operator, args=(server, repo, stop, events), daemon=True)
        ops.start()
        print(f"{'t (s)':>6} {'RSS MB':>7} {'fds':>5} {'threads':>7} {'req/s':>8} {'p99 ms':>7} "
              f"{'bad':>5} {'failed':>6}", flush=True)
        rows = []
        started = time.monotonic()
        next_sample = started + SAMPLE_EVERY
        while True:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            now = time.monotonic()
            if server.process.poll() is not None:
                failures.append(f"the server exited with {server.process.returncode}")
                break
            sample = proc_sample(pid)
            seen = tally.take()
            failures += seen["failed"]
            row = dict(t=now - started, **sample, rate=seen["ok"] / SAMPLE_EVERY, p99=p99(seen["latencies"]),
                       bad=seen["bad"], failed=len(seen["failed"]))
            rows.append(row)
            print(f"{row['t']:6.0f} {row['rss_mb']:7.1f} {row['fds']:5d} {row['threads']:7d} {row['rate']:8.0f} "
                  f"{row['p99']:7.1f} {row['bad']:5d} {row['failed']:6d}", flush=True)
            next_sample += SAMPLE_EVERY
            if now - started >= args.duration - 0.5:
                break
        stop.set()
        for t in threads:
            t.join(timeout=60)
        worker.wait(timeout=60)
        ops.join(timeout=130)
        failures += tally.take()["failed"]
        final = settle(pid, baseline)
        print(f"after the clients left: {final}", flush=True)
        for event in events:
            print(f"  {event}")
            if event.startswith("FAILED"):
                failures.append(event)

        warm = next((r for r in rows if r["t"] >= WARM_UP), rows[0] if rows else None)
        verdict = []
        if warm and rows:
            growth = rows[-1]["rss_mb"] / warm["rss_mb"] - 1
            verdict.append((growth <= 0.10, f"resident memory {warm['rss_mb']:.1f} MB after warm-up -> "
                                            f"{rows[-1]['rss_mb']:.1f} MB at the end ({100 * growth:+.1f}%, at most +10%)"))
        verdict.append((final["fds"] <= baseline["fds"],
                        f"file descriptors back to the baseline: {final['fds']} (baseline {baseline['fds']})"))
        verdict.append((final["threads"] <= baseline["threads"],
                        f"threads back to the baseline: {final['threads']} (baseline {baseline['threads']})"))
        verdict.append((not failures, f"failed requests or 5xx: {len(failures)}"
                                      + (f" (first: {failures[:3]})" if failures else "")))
        verdict.append((sum(r["bad"] for r in rows) > 0, "malformed requests sent and refused with 400 / INVALID_ARGUMENT: "
                        f"{sum(r['bad'] for r in rows)}"))
        alive = server.process.poll() is None
        verdict.append((alive and not server.panics, "the server alive, no panic in its log"
                        + (f" ({server.panics[:2]})" if server.panics else "")))
        total = sum(r["rate"] * SAMPLE_EVERY for r in rows)
        print(f"{total:.0f} requests served in {args.duration:.0f} s")
        for ok, line in verdict:
            print(f"{'ok  ' if ok else 'FAIL'} {line}")
        passed = all(ok for ok, _ in verdict)
        print("VERDICT: PASS" if passed else "VERDICT: FAIL", flush=True)
        return 0 if passed else 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
