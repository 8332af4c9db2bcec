"""Three replicas behind a real nginx (Debian's package, started here on loopback ports with the
shipped deploy/nginx/nginx.conf, its addresses rewritten to this run's) under steady load from
real clients over V2 HTTP and gRPC: one replica SIGKILLed, one rolled (SIGTERM, restart on its
ports), a new model version rolled across all of them — and no client request fails. Then the
same behind HAProxy (deploy/haproxy/haproxy.cfg), whose readiness probe takes a stopping
replica out before its listeners close."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from conftest import ROOT, Server, half_plus_model, wait_until

NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
X = [1.0, 2.0, 5.0]
ANSWERS = {"1": [2.5, 3.0, 4.5], "2": [7.5, 8.0, 9.5]}
GRPC_RETRIES = json.dumps({"methodConfig": [{
    "name": [{"service": "inference.GRPCInferenceService"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def nginx_binary():
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if os.path.exists(path):
        return path
    message = "nginx not found (apt-get install nginx-light; scripts/test.sh does)"
    if os.environ.get("QUIVER_REQUIRE_NGINX") == "1":
        pytest.fail(message + "; it is required (QUIVER_REQUIRE_NGINX=1)")
    print(f"\n!!! SKIPPED: {message} !!!\n")
    pytest.skip(message)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_shipped_config_is_valid(tmp_path):
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(NGINX_CONF)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_answers_grpc_clients_a_retryable_unavailable_when_no_replica_can(tmp_path):
    """nginx's own 502 as a plain HTTP status would commit a gRPC call (its retry policy never
    runs); the shipped config turns it into a Trailers-Only UNAVAILABLE."""
    nginx = Nginx(tmp_path / "nginx", [(free_port(), free_port()) for _ in range(3)], check=False)
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{nginx.grpc_port}")
        infer_input = grpcclient.InferInput("x", [1, 3], "FP32")
        infer_input.set_data_from_numpy(np.array([X], dtype=np.float32))
        with pytest.raises(Exception) as raised:
            client.infer("half", [infer_input])
        assert raised.value.status() == "StatusCode.UNAVAILABLE", raised.value
        assert "no replica could answer (nginx)" in raised.value.message(), raised.value
    finally:
        nginx.stop()


class Nginx:
    """nginx on the shipped config, in front of `replicas` ((rest port, grpc port) each)."""

    def __init__(self, prefix, replicas, check=True):
        text = NGINX_CONF.read_text()
        rest = iter(port for port, _ in replicas)
        grpc = iter(port for _, port in replicas)
        text = re.sub(r"server 127\.0\.0\.1:85[0-2]1 ", lambda m: f"server 127.0.0.1:{next(rest)} ", text)
        text = re.sub(r"server 127\.0\.0\.1:85[0-2]0 ", lambda m: f"server 127.0.0.1:{next(grpc)} ", text)
        self.rest_port, self.grpc_port = free_port(), free_port()
        text = text.replace("listen 8080;", f"listen 127.0.0.1:{self.rest_port};")
        text = text.replace("listen 8081 http2;", f"listen 127.0.0.1:{self.grpc_port} http2;")
        (prefix / "tmp").mkdir(parents=True)
        conf = prefix / "nginx.conf"
        conf.write_text(text)
        self.process = subprocess.Popen([nginx_binary(), "-p", str(prefix), "-c", str(conf),
                                         "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        wait_until(self.up if check else self.listening, lambda: "nginx up:\n" + "".join(self.log))

    def listening(self):
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.grpc_port)) == 0

    def up(self):
        try:
            return requests.get(f"{self.url}/v2/health/live", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Load:
    """Clients sending requests through the balancer until stopped: V2 JSON over HTTP and V2
    over gRPC (tritonclient), each answer checked against the version that gave it."""

    def __init__(self, nginx, http_clients=3, grpc_clients=2):
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.latencies, self.failures, self.replicas, self.versions = [], [], set(), set()
        self.phase = "start"  # named in each failure, so a failure says when it happened
        self.threads = [threading.Thread(target=self.http, args=(nginx.url,), daemon=True)
                        for _ in range(http_clients)]
        self.threads += [threading.Thread(target=self.grpc, args=(f"127.0.0.1:{nginx.grpc_port}",),
                                          daemon=True) for _ in range(grpc_clients)]
        for thread in self.threads:
            thread.start()

    def record(self, started, version=None, replica=None, data=None, error=None):
        took = time.monotonic() - started
        with self.lock:
            if error is None and ANSWERS.get(version) != data:
                error = f"version {version} answered {data}"
            if error is not None:
                self.failures.append(f"[{self.phase}] {error}")
                return
            self.latencies.append(took)
            self.versions.add(version)
            if replica:
                self.replicas.add(replica)

    def http(self, url):
        session = requests.Session()
        body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]}
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                response = session.post(f"{url}/v2/models/half/infer", json=body, timeout=30)
                if response.status_code != 200:
                    self.record(started, error=f"HTTP {response.status_code}: {response.text}")
                    continue
                answer = response.json()
                self.record(started, answer["model_version"], response.headers.get("x-quiver-replica"),
                            answer["outputs"][0]["data"])
            except Exception as e:  # noqa: BLE001 - every failure is counted
                self.record(started, error=f"HTTP: {e!r}")

    def grpc(self, url):
        # A call in flight on a replica that dies cannot be replayed by nginx (it streams a
        # gRPC request on; only HTTP bodies are buffered): nginx answers UNAVAILABLE, and gRPC's
        # own retry policy, as a production client sets it, sends it again.
        client = grpcclient.InferenceServerClient(url, channel_args=[
            ("grpc.enable_retries", 1), ("grpc.service_config", GRPC_RETRIES)])
        infer_input = grpcclient.InferInput("x", [1, 3], "FP32")
        infer_input.set_data_from_numpy(np.array([X], dtype=np.float32))
        while not self.stopped.is_set():
            started = time.monotonic()
            try:
                result = client.infer("half", [infer_input])
                response = result.get_response()
                self.record(started, response.model_version, None,
                            result.as_numpy("y").reshape(-1).tolist())
            except Exception as e:  # noqa: BLE001 - every failure is counted
                details = [getattr(e, f, lambda: None)() for f in ("status", "message", "debug_details")]
                self.record(started, error=f"gRPC: {details}")

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def count(self):
        with self.lock:
            return len(self.latencies)


def test_three_replicas_lose_one_roll_one_and_roll_a_version_with_no_failed_request(tmp_path):
    repository = tmp_path / "models"
    (repository / "half" / "1").mkdir(parents=True)
    (repository / "half" / "1" / "model.onnx").write_bytes(half_plus_model(2))
    args = ["--repository-poll-secs", "0.2", "--shutdown-delay-secs", "0.5"]
    replicas = [Server(repository, *args, "--replica-id", f"r{i}") for i in range(3)]
    ports = [(int(s.url.rsplit(":", 1)[1]), int(s.grpc.rsplit(":", 1)[1])) for s in replicas]
    nginx = load = None
    try:
        nginx = Nginx(tmp_path / "nginx", ports)
        load = Load(nginx)
        wait_until(lambda: load.count() > 200, "steady load")
        wait_until(lambda: load.replicas >= {"r0", "r1", "r2"}, lambda: f"all replicas: {load.replicas}")

        # One replica dies.
        load.phase = "r0 killed"
        replicas[0].process.send_signal(signal.SIGKILL)
        replicas[0].process.wait(timeout=30)
        before = load.count()
        wait_until(lambda: load.count() > before + 200, "load after the kill")

        # One is rolled: SIGTERM (not ready, drains, exits), then started again on its ports.
        load.phase = "r1 stopping"
        replicas[1].stop()
        load.phase = "r1 stopped"
        before = load.count()
        wait_until(lambda: load.count() > before + 100, "load while r1 is down")
        rest, grpc = ports[1]
        load.phase = "r1b starting"
        replicas[1] = Server(repository, *args, "--replica-id", "r1b", rest_port=rest, grpc_port=grpc)
        load.phase = "r1b started"
        wait_until(lambda: "r1b" in load.replicas, lambda: f"r1b serving: {load.replicas}")

        # A new version rolls across the replicas still running (each polls the repository).
        load.phase = "version 2 rolling"
        staging = repository / "half" / ".2"
        staging.mkdir()
        (staging / "model.onnx").write_bytes(half_plus_model(7))
        staging.rename(repository / "half" / "2")
        wait_until(lambda: "2" in load.versions, "version 2 served")
        time.sleep(1.0)  # every live replica has rolled by now; load goes on through it
        before = load.count()
        wait_until(lambda: load.count() > before + 200, "load after the roll-over")
    finally:
        if load is not None:
            load.stop()
        if nginx is not None:
            nginx.stop()
        for replica in replicas:
            replica.stop()
    latencies = sorted(load.latencies)
    p99 = latencies[int(len(latencies) * 0.99)] * 1e3
    print(f"\n{len(latencies)} requests through nginx, {len(load.failures)} failed, "
          f"p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, p99 {p99:.1f} ms, "
          f"replicas {sorted(load.replicas)}")
    log = "".join(nginx.log[-40:])
    assert not load.failures, \
        f"{len(load.failures)} failed requests, e.g. {load.failures[:5]}; nginx said:\n{log}"
    assert load.versions == {"1", "2"}


class Haproxy:
    """HAProxy on the shipped deploy/haproxy/haproxy.cfg, its addresses rewritten to
    `replicas` ((rest port, grpc port) each)."""

    def __init__(self, prefix, replicas):
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            message = "haproxy not found (apt-get install haproxy; scripts/test.sh does)"
            if os.environ.get("QUIVER_REQUIRE_NGINX") == "1":
                pytest.fail(message)
            pytest.skip(message)
        text = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
        for i, (rest, grpc) in enumerate(replicas):
            text = text.replace(f"server r{i} 127.0.0.1:85{i}1\n", f"server r{i} 127.0.0.1:{rest}\n")
            text = text.replace(f"server r{i} 127.0.0.1:85{i}0 port 85{i}1\n",
                                f"server r{i} 127.0.0.1:{grpc} port {rest}\n")
        self.rest_port, self.grpc_port = free_port(), free_port()
        text = text.replace("bind :8080", f"bind 127.0.0.1:{self.rest_port}")
        text = text.replace("bind :8081", f"bind 127.0.0.1:{self.grpc_port}")
        prefix.mkdir(parents=True)
        conf = prefix / "haproxy.cfg"
        conf.write_text(text)
        self.process = subprocess.Popen([binary, "-db", "-f", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.rest_port}"
        wait_until(self.up, "haproxy up")

    def up(self):
        try:
            return requests.get(f"{self.url}/v2/health/live", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def test_readiness_takes_a_stopping_replica_out_before_it_stops_serving(tmp_path):
    """Under HAProxy, which probes /v2/health/ready every second: a replica told to stop
    reports not-ready at once and keeps serving for --shutdown-delay-secs; the balancer stops
    sending it requests within that delay, before its listeners close, and no request fails."""
    repository = tmp_path / "models"
    (repository / "half" / "1").mkdir(parents=True)
    (repository / "half" / "1" / "model.onnx").write_bytes(half_plus_model(2))
    args = ["--shutdown-delay-secs", "3"]
    replicas = [Server(repository, *args, "--replica-id", f"r{i}") for i in range(3)]
    ports = [(int(s.url.rsplit(":", 1)[1]), int(s.grpc.rsplit(":", 1)[1])) for s in replicas]
    balancer = load = None
    seen = {}  # replica -> when it last answered
    try:
        balancer = Haproxy(tmp_path / "haproxy", ports)
        load = Load(balancer, http_clients=3, grpc_clients=1)
        original = load.record

        def record(started, version=None, replica=None, data=None, error=None):
            if replica:
                seen[replica] = time.monotonic()
            original(started, version, replica, data, error)

        load.record = record
        wait_until(lambda: {"r0", "r1", "r2"} <= set(seen), lambda: f"all replicas: {seen}")
        told = time.monotonic()
        replicas[1].process.send_signal(signal.SIGTERM)
        # Its listeners close 3 s after it is told; HAProxy must have taken it out before.
        wait_until(lambda: time.monotonic() - told > 4, "past the shutdown delay", timeout=10)
        last = seen["r1"] - told
        before = load.count()
        wait_until(lambda: load.count() > before + 100, "load after r1 left")
        replicas[1].process.wait(timeout=30)
    finally:
        if load is not None:
            load.stop()
        if balancer is not None:
            balancer.stop()
        for replica in replicas:
            replica.stop()
    print(f"\nr1 answered its last request {last:.2f} s after SIGTERM (listeners close at 3 s); "
          f"{load.count()} requests, {len(load.failures)} failed")
    assert last < 2.5, f"HAProxy still sent r1 requests {last:.2f} s after it went not-ready"
    assert not load.failures, f"{len(load.failures)} failed requests, e.g. {load.failures[:5]}"
