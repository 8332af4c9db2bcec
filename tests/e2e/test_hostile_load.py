"""Hostile and excessive clients (docs/security.md, "Connections and overload"): half-sent headers
and slow bodies are cut off by their timeouts while real clients keep being served, the connection
cap refuses the excess and recovers, an HTTP/2 rapid-reset burst costs the server little and stops
no one, and three times a slow model's capacity keeps goodput near the maximum with fast 429s.
(Streams per gRPC connection: test_grpc_streams.py.)"""
import json
import os
import re
import shutil
import socket
import statistics
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import FIXTURE_MODELS, Server, wait_until

TICKS = os.sysconf("SC_CLK_TCK")


def fixture_repo(tmp_path, *names):
    for name in names:
        shutil.copytree(FIXTURE_MODELS / name, tmp_path / name)
    return tmp_path


def host_port(url):
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def metric(url, name, **labels):
    """The value of one series of /metrics (0 when absent)."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def dense_body():
    return {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}


class Prober:
    """A real client sending requests one after another in the background, recording each
    latency and every failure."""

    def __init__(self, url):
        self.url, self.latencies, self.failures = url, [], []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        session = requests.Session()
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                response = session.post(f"{self.url}/v2/models/dense/infer", json=dense_body(), timeout=10)
                if response.status_code == 200:
                    self.latencies.append(time.monotonic() - started)
                else:
                    self.failures.append(response.status_code)
            except requests.RequestException as e:
                self.failures.append(repr(e))
            time.sleep(0.01)

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=30)
        lat = sorted(self.latencies)
        return {"requests": len(lat), "failures": self.failures,
                "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None}


def closed_by_server(sock, timeout):
    """Whether the server closes `sock` (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_half_sent_headers_are_closed_after_the_header_timeout(tmp_path):
    server = Server(fixture_repo(tmp_path, "dense"), "--http-header-timeout-secs", "2")
    try:
        host, port = host_port(server.url)
        prober = Prober(server.url)
        slow = []
        for i in range(3000):
            sock = socket.create_connection((host, port), timeout=10)
            if i % 2:
                sock.sendall(b"POST /v2/models/dense/infer HTTP/1.1\r\nHost: x\r\nContent-Le")
            slow.append(sock)  # the even ones send nothing at all
        opened = time.monotonic()
        # Every one is closed after the 2 s timeout (and not much later).
        deadline = opened + 10
        still_open = [s for s in slow if not closed_by_server(s, max(0.01, deadline - time.monotonic()))]
        took = time.monotonic() - opened
        for sock in slow:
            sock.close()
        served = prober.stop()
        print(f"\n3000 half-sent requests closed within {took:.1f} s; meanwhile a real client: {served}")
        assert not still_open, f"{len(still_open)} of 3000 slow connections still open after 10 s"
        assert metric(server.url, "quiver_connections_timed_out_total", listener="rest", phase="header") >= 3000
        assert served["requests"] > 50 and not served["failures"], served
        assert served["p99_ms"] < 1000, served
    finally:
        server.stop()


def test_a_kept_alive_connection_gets_the_idle_timeout_not_the_header_timeout(tmp_path):
    server = Server(fixture_repo(tmp_path, "dense"), "--http-header-timeout-secs", "1",
                    "--http-idle-timeout-secs", "3")
    try:
        session = requests.Session()
        assert session.post(f"{server.url}/v2/models/dense/infer", json=dense_body(), timeout=10).ok
        time.sleep(2)  # past the header timeout: the kept-alive connection still serves
        assert session.post(f"{server.url}/v2/models/dense/infer", json=dense_body(), timeout=10).ok
        host, port = host_port(server.url)
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert closed_by_server(sock, 10)
        idle = time.monotonic() - started
        assert 2.5 < idle < 6, idle
        assert metric(server.url, "quiver_connections_timed_out_total", listener="rest", phase="idle") >= 1
    finally:
        server.stop()


def test_slow_bodies_get_408_and_honest_slow_ones_are_served(tmp_path):
    server = Server(fixture_repo(tmp_path, "dense"), "--http-body-timeout-secs", "1",
                    "--http-body-min-rate", "2000")
    try:
        host, port = host_port(server.url)
        body = json.dumps(dense_body()).encode()
        head = (f"POST /v2/models/dense/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        allowance = 1 + len(body) / 2000
        prober = Prober(server.url)
        # Many bodies that stop half-way: each gets 408 after its allowance, then is closed.
        stalled = []
        for _ in range(200):
            sock = socket.create_connection((host, port), timeout=10)
            sock.sendall(head + body[:len(body) // 2])
            stalled.append(sock)
        started = time.monotonic()
        answers = []
        for sock in stalled:
            sock.settimeout(allowance + 10)
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            answers.append(data)
            sock.close()
        took = time.monotonic() - started
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
        assert took < allowance + 5, took
        assert b"too slowly" in answers[0]
        # A body sent in pieces, slowly but within its allowance, is served.
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(head)
        for i in range(0, len(body), len(body) // 4 + 1):
            time.sleep(allowance / 8)
            sock.sendall(body[i:i + len(body) // 4 + 1])
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
        served = prober.stop()
        print(f"\n200 stalled bodies answered 408 within {took:.1f} s (allowance {allowance:.1f} s); "
              f"meanwhile a real client: {served}")
        assert served["requests"] > 20 and not served["failures"], served
        assert metric(server.url, "quiver_connections_timed_out_total", listener="rest", phase="body") >= 200
        assert metric(server.url, "quiver_requests_total", outcome="request_timeout") >= 200
    finally:
        server.stop()


def test_the_connection_cap_refuses_the_excess_and_recovers(tmp_path):
    server = Server(fixture_repo(tmp_path, "dense"), "--max-connections", "40",
                    "--http-header-timeout-secs", "60")
    try:
        host, port = host_port(server.url)
        # A gRPC channel and a kept-alive REST connection, working before the flood.
        channel = grpc.insecure_channel(server.grpc)
        grpc.channel_ready_future(channel).result(timeout=10)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        session = requests.Session()
        assert session.get(f"{server.url}/v2/health/ready", timeout=10).ok
        idle = [socket.create_connection((host, port), timeout=10) for _ in range(38)]
        # The cap (40) is reached: a new connection is closed at once, on either port.
        extra = socket.create_connection((host, port), timeout=10)
        started = time.monotonic()
        assert closed_by_server(extra, 5)
        assert time.monotonic() - started < 1
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{server.url}/v2/health/ready", timeout=5)
        grpc_host, grpc_port = server.grpc.rsplit(":", 1)
        assert closed_by_server(socket.create_connection((grpc_host, int(grpc_port)), timeout=10), 5)
        # The connections already open keep working.
        assert session.get(f"{server.url}/v2/health/ready", timeout=10).ok
        stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10)
        # When the idle ones close, new connections are taken again.
        for sock in idle:
            sock.close()

        def new_connection_served():
            # Until the server has seen the others close, a new one may still be refused.
            try:
                return requests.get(f"{server.url}/v2/health/ready", timeout=5).ok
            except requests.ConnectionError:
                return False

        wait_until(new_connection_served, "a new connection after the others closed")
        assert metric(server.url, "quiver_connections_refused_total", listener="rest") >= 2
        assert metric(server.url, "quiver_connections_refused_total", listener="grpc") >= 1
        channel.close()
    finally:
        server.stop()


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rapid_reset(host, port, seconds):
    """Opens HTTP/2 connections and, on each, streams that are reset as soon as they are opened,
    as fast as it can for `seconds`. Returns (streams sent, connections used, connections the
    server closed with ENHANCE_YOUR_CALM)."""
    headers = [(":method", "POST"), (":scheme", "http"), (":authority", f"{host}:{port}"),
               (":path", "/inference.GRPCInferenceService/ModelInfer"),
               ("content-type", "application/grpc"), ("te", "trailers")]
    streams = connections = calmed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sock = socket.create_connection((host, port), timeout=5)
        connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        try:
            sent = 0
            while time.monotonic() < end:
                for _ in range(100):
                    stream = conn.get_next_available_stream_id()
                    conn.send_headers(stream, headers)
                    conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
                    sent += 1
                sock.sendall(conn.data_to_send())
                streams += 100
                sock.setblocking(False)
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    data = None
                sock.setblocking(True)
                if data == b"":
                    break
                if data:
                    events = conn.receive_data(data)
                    if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                        if any(isinstance(e, h2.events.ConnectionTerminated)
                               and e.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM for e in events):
                            calmed += 1
                        break
        except (OSError, h2.exceptions.ProtocolError):
            pass
        finally:
            sock.close()
    return streams, connections, calmed


def test_a_rapid_reset_burst_costs_little_and_stops_no_one(tmp_path):
    server = Server(fixture_repo(tmp_path, "dense"))
    try:
        host, port = server.grpc.rsplit(":", 1)
        port = int(port)
        channel = grpc.insecure_channel(server.grpc)
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(
            model_name="dense",
            inputs=[service_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 64])],
            raw_input_contents=[struct.pack("<64f", *([0.5] * 64))])
        stub.ModelInfer(request, timeout=10)
        good = {"ok": 0, "failed": []}
        stopping = threading.Event()

        def good_client():
            while not stopping.is_set():
                try:
                    stub.ModelInfer(request, timeout=10)
                    good["ok"] += 1
                except grpc.RpcError as e:
                    good["failed"].append(e.code())
                time.sleep(0.01)

        thread = threading.Thread(target=good_client, daemon=True)
        thread.start()
        seconds = 5
        cpu_before, wall_before = cpu_seconds(server.process.pid), time.monotonic()
        streams, connections, calmed = rapid_reset(host, port, seconds)
        cpu = cpu_seconds(server.process.pid) - cpu_before
        wall = time.monotonic() - wall_before
        stopping.set()
        thread.join(timeout=30)
        print(f"\nrapid reset: {streams} streams opened and reset on {connections} connections in "
              f"{wall:.1f} s ({calmed} closed with ENHANCE_YOUR_CALM); server CPU {cpu:.2f} s "
              f"({100 * cpu / wall:.0f}% of a core); meanwhile {good['ok']} good calls, "
              f"{len(good['failed'])} failed")
        assert streams >= 1000
        # The server refuses to keep a connection that resets streams it never took.
        assert calmed >= 1 and connections >= 2
        # The stated bound (docs/security.md): under half a core while an attacker on the same
        # machine resets streams as fast as it can.
        assert cpu / wall < 0.5, (cpu, wall)
        assert not good["failed"] and good["ok"] >= 50, good
        channel.close()
    finally:
        server.stop()


MINILM_SEQ = 128


def minilm_repo(tmp_path, shared_models):
    (tmp_path / "minilm" / "1").mkdir(parents=True)
    os.symlink(shared_models / "all_minilm_l6_v2" / "1" / "model.onnx", tmp_path / "minilm" / "1" / "model.onnx")
    return tmp_path


def minilm_request():
    ids = [101] + [2023] * (MINILM_SEQ - 2) + [102]
    inputs = [{"name": name, "shape": [1, MINILM_SEQ], "datatype": "INT64", "data": data}
              for name, data in (("input_ids", ids), ("attention_mask", [1] * MINILM_SEQ),
                                 ("token_type_ids", [0] * MINILM_SEQ))]
    return json.dumps({"inputs": inputs,
                       "outputs": [{"name": "last_hidden_state", "parameters": {"binary_data": True}}]})


def test_three_times_capacity_keeps_goodput_and_refuses_fast(tmp_path, shared_models, onnxruntime_library):
    """A slow model (MiniLM at 128 tokens on ONNX Runtime, one engine thread) behind
    --max-inflight-requests 4."""
    server = Server(minilm_repo(tmp_path, shared_models), "--intra-op-threads", "1",
                    "--max-inflight-requests", "4", onnxruntime=True)
    url = f"{server.url}/v2/models/minilm/infer"
    body = minilm_request()
    local = threading.local()

    def send():
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.monotonic()
        try:
            status = session.post(url, data=body, headers={"Content-Type": "application/json"},
                                  timeout=30).status_code
        except requests.RequestException as e:
            status = repr(e)
        return status, time.monotonic() - started

    try:
        for _ in range(3):
            assert send()[0] == 200
        # The maximum: as many clients as the bound admits, back to back.
        window = 8.0
        end = time.monotonic() + window
        done = []

        def closed_loop():
            while time.monotonic() < end:
                done.append(send())

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(closed_loop)
        maximum = sum(1 for status, _ in done if status == 200) / window
        assert maximum > 5, done[:5]
        # Three times that, offered at a steady rate whatever the answers.
        offered = 3 * maximum
        results = []
        with ThreadPoolExecutor(96) as pool:
            futures = []
            start = time.monotonic()
            n = int(offered * window)
            for i in range(n):
                delay = start + i / offered - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(send))
            results = [f.result() for f in futures]
            elapsed = time.monotonic() - start
        stopped = time.monotonic()
        # Recovery: a request right after the load stops is served within a second.
        while send()[0] != 200:
            assert time.monotonic() - stopped < 1.0, "not serving a second after the overload"
        recovered = time.monotonic() - stopped
        ok = [t for status, t in results if status == 200]
        refused = [t for status, t in results if status == 429]
        other = [status for status, _ in results if status not in (200, 429)]
        goodput = len(ok) / elapsed
        ok.sort()
        refused.sort()
        print(f"\nmaximum {maximum:.1f}/s; offered {offered:.1f}/s for {elapsed:.1f} s: goodput {goodput:.1f}/s "
              f"({100 * goodput / maximum:.0f}%), admitted p50 {1000 * ok[len(ok) // 2]:.0f} ms "
              f"p99 {1000 * ok[int(len(ok) * 0.99)]:.0f} ms; {len(refused)} refused, p50 "
              f"{1000 * refused[len(refused) // 2]:.1f} ms p99 {1000 * refused[int(len(refused) * 0.99)]:.1f} ms; "
              f"recovered in {1000 * recovered:.0f} ms")
        assert not other, other[:10]
        assert goodput >= 0.9 * maximum, (goodput, maximum)
        assert len(refused) > len(ok) // 2
        # Refusals are fast: far quicker than an admitted request (one model run is ~1/maximum).
        assert statistics.median(refused) < 0.5 / maximum, statistics.median(refused)
        # Admitted requests wait behind at most the bound's worth of others.
        assert ok[int(len(ok) * 0.99)] < 4 * 4 / maximum, ok[int(len(ok) * 0.99)]
        assert metric(server.url, "quiver_server_rejected_requests_total") == len(refused)
        retry = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert retry.status_code == 200
    finally:
        server.stop()


def test_an_overloaded_answer_says_when_to_retry(tmp_path):
    """429 carries Retry-After (HTTP) and RESOURCE_EXHAUSTED retry-after metadata (gRPC)."""
    repo = fixture_repo(tmp_path, "dense")
    (repo / "dense" / "config.toml").write_text("[batching]\nmax_batch_size = 64\nmax_queue_delay_us = 3000000\n")
    server = Server(repo, "--max-inflight-requests", "1")
    try:
        holder = threading.Thread(target=lambda: requests.post(f"{server.url}/v2/models/dense/infer",
                                                               json=dense_body(), timeout=30))
        holder.start()
        wait_until(lambda: metric(server.url, "quiver_server_inflight_requests") >= 1, "one request in flight")
        response = requests.post(f"{server.url}/v2/models/dense/infer", json=dense_body(), timeout=30)
        assert response.status_code == 429 and response.headers.get("Retry-After") == "1", response.headers
        assert "--max-inflight-requests" in response.json()["error"]
        with grpc.insecure_channel(server.grpc) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = service_pb2.ModelInferRequest(
                model_name="dense",
                inputs=[service_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 64])],
                raw_input_contents=[struct.pack("<64f", *([0.5] * 64))])
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(request, timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(refused.value.trailing_metadata()).get("retry-after") == "1"
        holder.join(timeout=30)
    finally:
        server.stop()


def test_an_oversized_grpc_header_list_is_refused_and_the_channel_goes_on(tmp_path):
    server = Server(fixture_repo(tmp_path, "dense"), "--http2-max-header-list-bytes", "4096")
    try:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=10)
            with pytest.raises(grpc.RpcError):
                stub.ServerLive(service_pb2.ServerLiveRequest(), metadata=[("x-padding", "a" * 8192)], timeout=10)
            stub.ServerLive(service_pb2.ServerLiveRequest(), metadata=[("x-padding", "a" * 1024)], timeout=10)
    finally:
        server.stop()
