"""Payload logging (`[payload_log]` in a model's config.toml; README "Payload logging"): a sample of
request/response pairs written as CloudEvents to a file (JSON lines) or POSTed to an HTTP
endpoint, with the request id, model, version, timing and tensors; the share sampled is within a
binomial bound of the configured rate; a slow sink drops (and counts) events rather than slowing
requests; a bad table fails the model's load with the key named."""
import http.server
import json
import math
import shutil
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from conftest import FIXTURE_MODELS, Server, wait_until

TIMEOUT = 30
SINK_DELAY_S = 1.0


class SlowSink:
    """An HTTP endpoint that takes SINK_DELAY_S to accept each event, and keeps what it got."""

    def __init__(self):
        events = self.events = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(SINK_DELAY_S)
                events.append((self.headers["content-type"], json.loads(body)))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def sink():
    sink = SlowSink()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return tmp_path_factory.mktemp("payload-logs")


@pytest.fixture(scope="module")
def server(tmp_path_factory, logs, sink):
    repository = tmp_path_factory.mktemp("payload-repository")
    configs = {
        "everything": f'[payload_log]\nsink = "file:{logs / "everything.jsonl"}"\n',
        "sampled": f'[payload_log]\nsample = 0.3\nsink = "file:{logs / "sampled.jsonl"}"\n',
        "slow": f'[payload_log]\nsink = "{sink.url}"\nqueue = 2\n',
        "plain": None,
        "broken": '[payload_log]\nsample = 2\nsink = "file:x.jsonl"\n',
    }
    for name, config in configs.items():
        (repository / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURE_MODELS / "half_plus_two" / "1" / "model.onnx", repository / name / "1" / "model.onnx")
        if config:
            (repository / name / "config.toml").write_text(config)
    server = Server(repository)
    yield server
    server.stop()


def infer(session, server, model, values, request_id=None):
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": values}]}
    headers = {"x-request-id": request_id} if request_id else {}
    response = session.post(f"{server.url}/v2/models/{model}/infer", json=body, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response


def events_total(server, model, outcome):
    text = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    needle = f'quiver_payload_log_events_total{{model="{model}",version="1",outcome="{outcome}"}} '
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(needle))


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_every_pair_is_a_cloud_event_with_its_request(server, logs):
    with requests.Session() as session:
        for i in range(3):
            infer(session, server, "everything", [1.0, 2.0, float(i)], request_id=f"rest-{i}")
    with grpcclient.InferenceServerClient(server.grpc) as triton:
        x = grpcclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[4.0, 6.0, 8.0]], dtype=np.float32))
        triton.infer("everything", [x], headers={"x-request-id": "grpc-0"})
    path = logs / "everything.jsonl"
    events = wait_until(lambda: len(lines(path)) >= 4 and lines(path), "four events in the log")
    by_id = {e["data"]["request_id"]: e for e in events}
    assert set(by_id) == {"rest-0", "rest-1", "rest-2", "grpc-0"}
    event = by_id["rest-2"]
    assert event["specversion"] == "1.0" and event["type"] == "dev.quiver.inference.payload"
    assert event["source"] == "/v2/models/everything/versions/1"
    assert event["quiverrequestid"] == "rest-2" and event["id"]
    assert event["time"].endswith("Z") or "+" in event["time"]
    data = event["data"]
    assert (data["model"], data["version"]) == ("everything", "1")
    assert data["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1.0, 2.0, 2.0]}]
    assert data["outputs"][0]["data"] == [2.5, 3.0, 3.0]
    assert 0 <= data["queue_ms"] <= data["duration_ms"] and data["compute_ms"] >= 0
    assert by_id["grpc-0"]["data"]["outputs"][0]["data"] == [4.0, 5.0, 6.0]
    assert events_total(server, "everything", "written") == 4


def test_the_share_logged_is_the_sample_rate(server, logs):
    n, rate = 400, 0.3
    with requests.Session() as session:
        for i in range(n):
            infer(session, server, "sampled", [float(i), 0.0, 0.0])
    wait_until(lambda: events_total(server, "sampled", "written") == len(lines(logs / "sampled.jsonl")),
               "the log to catch up")
    logged = len(lines(logs / "sampled.jsonl"))
    # Binomial(400, 0.3): mean 120, standard deviation 9.2; five of them either side fails
    # a correct sampler once in 1.7 million runs.
    bound = 5 * math.sqrt(n * rate * (1 - rate))
    assert abs(logged - n * rate) <= bound, logged
    assert events_total(server, "sampled", "dropped") == 0


def test_a_slow_sink_never_slows_requests(server, sink):
    """The sink takes a second per event and the queue holds two: requests still take
    milliseconds, the sink gets a few events, and the rest are dropped and counted."""
    took = []
    with requests.Session() as session:
        for i in range(40):
            started = time.monotonic()
            infer(session, server, "slow", [float(i), 1.0, 2.0])
            took.append(time.monotonic() - started)
    assert max(took) < SINK_DELAY_S / 2, f"slowest request {max(took):.3f}s"
    dropped = events_total(server, "slow", "dropped")
    assert dropped >= 30, dropped
    wait_until(lambda: sink.events, "the sink to get an event", timeout=SINK_DELAY_S * 10)
    content_type, event = sink.events[0]
    assert content_type == "application/cloudevents+json"
    assert event["specversion"] == "1.0" and event["data"]["model"] == "slow"


def test_a_model_without_the_table_logs_nothing(server):
    with requests.Session() as session:
        infer(session, server, "plain", [1.0, 2.0, 3.0])
    assert "quiver_payload_log_events_total{model=\"plain\"" not in requests.get(
        f"{server.url}/metrics", timeout=TIMEOUT).text


def test_a_bad_table_fails_the_load_naming_the_key(server):
    rows = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=TIMEOUT).json()
    broken = [row for row in rows if row["name"] == "broken"]
    assert broken and all(row["state"] == "UNAVAILABLE" for row in broken), broken
    assert any("payload_log.sample" in row.get("reason", "") for row in broken), broken
