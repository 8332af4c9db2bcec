"""The operator's kit in deploy/monitoring against the real server and a real Prometheus.

- promtool checks the Prometheus config and the rules, and runs the rules' unit tests;
- the server's own /metrics passes `promtool check metrics`, follows docs/metrics.md and the
  label contract, and has every metric the Grafana dashboard queries;
- a real Prometheus scrapes the server with the shipped rules: it sees the request counts the
  server reports, computes a p99, evaluates every dashboard query, and raises the alerts an error
  burst, a failed model, a full queue and a dead target call for.

promtool and prometheus come from Debian's `prometheus` package (scripts/test.sh installs it).
Missing, they skip these tests loudly, or fail them when QUIVER_REQUIRE_PROMETHEUS=1 (CI).
"""
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import ROOT, Server

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
ALERTS = MONITORING / "alerts.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
FIXTURES = ROOT / "crates" / "test-support" / "fixtures" / "models"

LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1, 2.5, 5, 10]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
STATES = ["start", "loading", "available", "unloading", "end", "failed", "unloaded_idle"]
STAGES = ["preprocess", "queue", "compute", "postprocess", "encode"]
# `queued` holds a lone request in its queue this long, waiting for a batch to fill.
QUEUED_DELAY_S = 1.5


# ---- Tools ---------------------------------------------------------------------------------------

def tool(name):
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found on PATH; install Debian's `prometheus` package (scripts/test.sh does)"
    if os.environ.get("QUIVER_REQUIRE_PROMETHEUS") == "1":
        pytest.fail(message + "; it is required (QUIVER_REQUIRE_PROMETHEUS=1)")
    print(f"\n!!! SKIPPED: {message} !!!\n", file=sys.stderr)
    pytest.skip(message)


@pytest.fixture(scope="module")
def promtool():
    return tool("promtool")


@pytest.fixture(scope="module")
def prometheus():
    return tool("prometheus")


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def free_ports(n):
    """n distinct ports nobody listens on (bound together, then released)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# ---- The server and its traffic -------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server on a repository made for metrics: `dense` (the fixture); `queued`, the same
    model batching with a queue of one request that waits QUEUED_DELAY_S for company, so that a
    second request is refused; `broken`, which fails to load; `cached`, dense with a response
    cache."""
    repository = tmp_path_factory.mktemp("monitoring-models")
    (repository / "dense").symlink_to(FIXTURES / "dense")
    (repository / "queued" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "dense" / "1" / "model.onnx", repository / "queued" / "1" / "model.onnx")
    (repository / "queued" / "config.toml").write_text(
        "[batching]\nmax_batch_size = 64\n"
        f"max_queue_delay_us = {int(QUEUED_DELAY_S * 1e6)}\nmax_queue_size = 1\n")
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    # `cached`: dense with a response cache, so the cache's counters are exposed too.
    (repository / "cached" / "1").mkdir(parents=True)
    shutil.copy(FIXTURES / "dense" / "1" / "model.onnx", repository / "cached" / "1" / "model.onnx")
    # ... and a payload log that samples nothing, so that its counters are exposed too.
    payloads = tmp_path_factory.mktemp("monitoring-payloads") / "payloads.jsonl"
    (repository / "cached" / "config.toml").write_text(
        f'[cache]\nmax_bytes = 1048576\n\n[payload_log]\nsample = 0.0\nsink = "file:{payloads}"\n')
    # A budget with room for all (so the budget's metrics are exposed, and nothing is unloaded).
    server = Server(repository, "--max-loaded-models", "16")
    yield server
    server.stop()


ROW = [i / 64 for i in range(64)]


def infer(url, model="dense", width=64, timeout_ms=None):
    """KServe V2 over HTTP."""
    body = {"inputs": [{"name": "x", "shape": [1, width], "datatype": "FP32", "data": ROW[:width]}]}
    headers = {} if timeout_ms is None else {"X-Quiver-Timeout-Ms": str(timeout_ms)}
    return requests.post(f"{url}/v2/models/{model}/infer", json=body, headers=headers, timeout=30)


def predict(url, model="dense", width=64, timeout_ms=None):
    """TF Serving's REST API."""
    headers = {} if timeout_ms is None else {"X-Quiver-Timeout-Ms": str(timeout_ms)}
    return requests.post(f"{url}/v1/models/{model}:predict", json={"instances": [ROW[:width]]},
                         headers=headers, timeout=30)


def expect(response, status):
    assert response.status_code == status, f"{response.request.method} {response.url}: " \
        f"{response.status_code} {response.text[:500]} (expected {status})"


def ok_requests(url, n):
    for _ in range(n):
        expect(infer(url), 200)
        expect(predict(url), 200)


def timeouts(url, n):
    """Requests whose deadline (X-Quiver-Timeout-Ms: 0) passes before compute: 504, outcome timeout."""
    for _ in range(n):
        expect(infer(url, timeout_ms=0), 504)
        expect(predict(url, timeout_ms=0), 504)


def overload(url):
    """One request waits in `queued`'s queue (its batch waits for company); a second finds the
    queue full: 429, outcome overloaded. Says whether /metrics showed the waiting request in
    quiver_queue_depth and quiver_inflight_requests meanwhile."""
    first = {}

    def send_first():
        try:
            first["response"] = infer(url, "queued")
        except requests.RequestException as error:
            first["error"] = error

    thread = threading.Thread(target=send_first)
    thread.start()
    seen = {"quiver_queue_depth": False, "quiver_inflight_requests": False}
    waited_until = time.monotonic() + QUEUED_DELAY_S / 2
    while time.monotonic() < waited_until and not all(seen.values()):
        samples = parse_exposition(scrape(url))[1]
        for name in seen:
            seen[name] |= value(samples, name, model="queued", version="1", default=0) >= 1
        time.sleep(0.05)
    second = infer(url, "queued")
    thread.join(timeout=60)
    assert "response" in first, f"the first request to queued failed: {first}"
    expect(second, 429)
    expect(first["response"], 200)
    return seen


def traffic(url, n=5):
    """Requests of every kind on both REST APIs: ok, invalid_input, not_found, timeout, and one
    overloaded (rejected)."""
    ok_requests(url, n)
    expect(infer(url, width=3), 400)
    expect(predict(url, width=3), 400)
    expect(infer(url, "no_such_model"), 404)
    expect(predict(url, "no_such_model"), 404)
    timeouts(url, 1)
    return overload(url)


# ---- The exposition -----------------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def scrape(url):
    response = requests.get(f"{url}/metrics", timeout=30)
    expect(response, 200)
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith("text/plain"), \
        f"/metrics has content type {content_type!r}, not Prometheus' text/plain; version=0.0.4"
    return response.text


def parse_exposition(text):
    """({family: type}, [(sample name, {label: value}, value)]) of Prometheus' text format."""
    types, samples = {}, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
        elif line.strip() and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"line {number} of /metrics is not a sample: {line!r}"
            name, labels_text, number_text = match.groups()
            labels = {}
            if labels_text:
                position = 0
                while position < len(labels_text):
                    label = LABEL.match(labels_text, position)
                    assert label, f"line {number} of /metrics has malformed labels: {line!r}"
                    labels[label.group(1)] = label.group(2)
                    position = label.end()
            samples.append((name, labels, float(number_text)))
    return types, samples


def value(samples, name, default=None, **labels):
    """The sum of the samples called `name` whose labels include `labels`."""
    found = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    if not found:
        if default is not None:
            return default
        raise AssertionError(f"no sample {name}{labels} in /metrics")
    return sum(found)


@pytest.fixture(scope="module")
def exposition(server):
    """/metrics after traffic of every kind, parsed, with what overload() saw of the gauges."""
    seen = traffic(server.url)
    text = scrape(server.url)
    return text, *parse_exposition(text), seen


# Families a server exposes only once what they count has happened, so the traffic() above never
# shows them: the model-store metrics (only with an object store; test_model_stores.py checks
# them against docs/metrics.md), and the experiments' (docs/experiments.md): traffic assignments
# appear with a model's first request routed by a traffic policy, shadow runs with its first
# shadow, metadata store errors with the first failure. Where the server does show them, their
# types and labels are still checked against docs/metrics.md. quiver_metadata_store_up is not
# among them: every server has a metadata store, and says from the start whether it answers.
EXPOSED_ONCE_USED = ("quiver_store_", "quiver_traffic_", "quiver_shadow_",
                     "quiver_metadata_store_errors_")


def exposed_once_used(metric):
    return metric.startswith(EXPOSED_ONCE_USED)


def family_of(name, types):
    """The metric family a sample or query name belongs to (histograms expose _bucket, _sum,
    _count samples)."""
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


# ---- a. promtool on the shipped files ------------------------------------------------------------

def test_prometheus_config_is_valid(promtool):
    result = run([promtool, "check", "config", str(MONITORING / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid(promtool):
    result = run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(promtool):
    result = run([promtool, "test", "rules", str(MONITORING / "alerts_test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_annotations():
    alerts = re.findall(r"^\s*- alert:\s*(\S+)", ALERTS.read_text(), re.MULTILINE)
    assert set(alerts) >= {"QuiverHighErrorRatio", "QuiverLatencyObjective", "QuiverQueueSaturated",
                           "QuiverRejectingRequests", "QuiverModelLoadFailures", "QuiverTargetDown"}
    tested = set(re.findall(r"alertname:\s*(\S+)", (MONITORING / "alerts_test.yml").read_text()))
    assert set(alerts) <= tested, f"alerts without a unit test: {set(alerts) - tested}"
    # Each alert's block names a severity, a summary and a description.
    blocks = re.split(r"^\s*- (?:alert|record):", ALERTS.read_text(), flags=re.MULTILINE)[1:]
    for block in blocks:
        name = block.split()[0]
        if name in alerts:
            for key in ("severity:", "summary:", "description:"):
                assert key in block, f"{name} has no {key}"


# ---- c. The dashboard (static part) --------------------------------------------------------------

def dashboard():
    return json.loads(DASHBOARD.read_text())


def dashboard_panels(board):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels


def dashboard_queries(board):
    """(panel title, PromQL) of every query of the dashboard, variables included."""
    for panel in dashboard_panels(board):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query


# What the dashboard's variables stand for when its queries are run outside Grafana.
VARIABLES = {"datasource": None, "job": "quiver", "instance": ".*", "model": ".*", "version": ".*",
             "__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


def concrete(expr):
    """A dashboard query as Prometheus can run it: variables replaced; label_values(...)
    becomes its selector."""
    def substitute(match):
        name = match.group(1) or match.group(2)
        assert name in VARIABLES and VARIABLES[name] is not None, f"unknown variable ${name} in {expr}"
        return VARIABLES[name]
    expr = re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, expr)
    label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr.strip(), re.DOTALL)
    return label_values.group(1) if label_values else expr


def referenced_metrics(expr):
    """Metric names a query references (recording rules, named with colons, aside)."""
    return set(re.findall(r"(?<![\w:])((?:quiver|process)_\w+)(?![\w:])", expr))


def recording_rules():
    return set(re.findall(r"^\s*- record:\s*(\S+)", ALERTS.read_text(), re.MULTILINE))


def test_dashboard_is_well_formed():
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("model", "version"):
        assert variables[name]["type"] == "query"
        assert "label_values(" in variables[name]["definition"]
    ids = [p["id"] for p in dashboard_panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    occupied = {}
    for panel in dashboard_panels(board):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the dashboard"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    titles = " ".join(p["title"].lower() for p in dashboard_panels(board))
    for word in ("throughput", "latency", "stage", "batch", "queue", "errors", "rejections",
                 "states", "load failures", "memory", "cpu"):
        assert word in titles, f"no panel about {word}"
    # Recording rules the dashboard uses are the ones alerts.yml defines.
    used = {name for _, expr in dashboard_queries(board)
            for name in re.findall(r"\b([a-z_]+:[\w:]+)", expr)}
    assert used <= recording_rules(), f"recording rules not in alerts.yml: {used - recording_rules()}"


def test_dashboard_queries_parse(promtool, tmp_path):
    """Every query, variables replaced, is valid PromQL: promtool checks them as recording rules."""
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (title, expr) in enumerate(dashboard_queries(dashboard())):
        lines.append(f"      # {title}")
        lines.append(f"      - record: dashboard:query_{i}")
        lines.append(f"        expr: {json.dumps(concrete(expr))}")
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    result = run([promtool, "check", "rules", str(rules)])
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + rules.read_text()


# ---- b, c. The server's exposition ---------------------------------------------------------------

def test_exposition_passes_promtool_lint(promtool, exposition):
    text = exposition[0]
    result = run([promtool, "check", "metrics"], input=text)
    problems = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not problems, \
        f"promtool check metrics (exit {result.returncode}):\n{problems}"


def test_dashboard_metrics_exist(exposition):
    _, types, samples, _ = exposition
    names = {name for name, _, _ in samples}
    missing = {}
    for title, expr in dashboard_queries(dashboard()):
        for metric in referenced_metrics(expr):
            if metric not in names and family_of(metric, types) is None \
                    and not exposed_once_used(metric):
                missing.setdefault(metric, []).append(title)
    assert not missing, f"the dashboard queries metrics /metrics does not have: {missing}"


def documented_metrics():
    """{name: (type, [labels])} from the tables of docs/metrics.md."""
    documented = {}
    for row in re.findall(r"^\| `((?:quiver|process)_\w+)` \|([^|]*)\|([^|]*)\|", METRICS_DOC.read_text(),
                          re.MULTILINE):
        name, kind, labels = row
        documented[name] = (kind.strip(), re.findall(r"`(\w+)`", labels))
    return documented


def test_exposition_follows_docs(exposition):
    """docs/metrics.md lists every metric Quiver exposes, with its type and labels, and no other."""
    _, types, samples, _ = exposition
    documented = documented_metrics()
    assert len(documented) >= 20, "docs/metrics.md's tables were not understood"
    exposed = {name for name in types if name.startswith(("quiver_", "process_"))}
    # process_* metrics beyond the documented ones (the exporter may add some) are allowed.
    undocumented = {n for n in exposed - set(documented) if n.startswith("quiver_")}
    assert not undocumented, f"metrics missing from docs/metrics.md: {sorted(undocumented)}"
    # The model-store and experiments metrics appear only once used (EXPOSED_ONCE_USED).
    absent = {n for n in set(documented) - exposed if not exposed_once_used(n)}
    assert not absent, f"documented metrics /metrics does not have: {sorted(absent)}"
    for name, (kind, labels) in documented.items():
        if name not in types:
            continue
        assert types[name] == kind, f"{name} is a {types[name]}, docs/metrics.md says {kind}"
        for sample, sample_labels, _ in samples:
            if family_of(sample, types) == name:
                expected = set(labels) | ({"le"} if sample == name + "_bucket" else set())
                assert set(sample_labels) == expected, \
                    f"{sample}{sample_labels}: docs/metrics.md says labels {labels}"


def test_exposition_follows_the_contract(exposition):
    """The label values, buckets and counts the metrics promise, after traffic()."""
    _, types, samples, seen = exposition
    served = dict(model="dense", version="1")
    for protocol in ("kserve_rest", "tfserving_rest"):
        for outcome in ("ok", "invalid_input", "timeout"):
            assert value(samples, "quiver_requests_total", protocol=protocol, outcome=outcome, **served) >= 1
        # An unknown model: not_found, with empty model and version (a name a client made up
        # never becomes a label value).
        assert value(samples, "quiver_requests_total", model="", version="",
                     protocol=protocol, outcome="not_found") >= 1
        # One duration per request.
        for outcome in ("ok", "timeout"):
            assert value(samples, "quiver_request_duration_seconds_count", protocol=protocol,
                         outcome=outcome, **served) \
                == value(samples, "quiver_requests_total", protocol=protocol, outcome=outcome, **served)
    # One observation per stage per successful request.
    ok = value(samples, "quiver_requests_total", outcome="ok", **served)
    for stage in STAGES:
        assert value(samples, "quiver_stage_duration_seconds_count", stage=stage, **served) == ok, stage
    # Buckets.
    def bounds(name, **labels):
        return sorted(float(l["le"]) for n, l, _ in samples
                      if n == name + "_bucket" and all(l.get(k) == v for k, v in labels.items()))
    assert bounds("quiver_request_duration_seconds", protocol="kserve_rest", outcome="ok", **served) \
        == LATENCY_BUCKETS + [math.inf]
    assert bounds("quiver_stage_duration_seconds", stage="compute", **served) == LATENCY_BUCKETS + [math.inf]
    assert bounds("quiver_batch_size", **served) == BATCH_BUCKETS + [math.inf]
    # Rejections count twice: rejected, and overloaded among the requests.
    rejected = value(samples, "quiver_rejected_requests_total", model="queued", version="1")
    assert rejected >= 1
    assert value(samples, "quiver_requests_total", model="queued", outcome="overloaded") == rejected
    # While a request waited in the queue, the gauges showed it; at rest they are back to 0.
    assert seen == {"quiver_queue_depth": True, "quiver_inflight_requests": True}, seen
    for gauge in ("quiver_queue_depth", "quiver_inflight_requests"):
        assert value(samples, gauge, model="dense", version="1") == 0
    # Model versions: exactly one state at 1.
    for model, state in (("dense", "available"), ("queued", "available"), ("broken", "failed")):
        states = {l["state"]: v for n, l, v in samples
                  if n == "quiver_model_version_state" and l["model"] == model and l["version"] == "1"}
        assert set(states) == set(STATES), (model, states)
        assert {s for s, v in states.items() if v == 1} == {state}, (model, states)
    assert value(samples, "quiver_model_load_failures_total", model="broken") == 1
    assert value(samples, "quiver_model_load_duration_seconds_count", model="dense", version="1") == 1
    builds = [(l, v) for n, l, v in samples if n == "quiver_build_info"]
    assert len(builds) == 1 and builds[0][1] == 1 and builds[0][0]["version"], builds
    assert value(samples, "process_resident_memory_bytes") > 0


# ---- d. A real Prometheus ------------------------------------------------------------------------

class Prometheus:
    """A Prometheus process on a free port, with its own storage; its log is kept for messages."""

    def __init__(self, binary, config, directory, port):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = directory / "prometheus.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address={self.url[len('http://'):]}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"prometheus exited ({self.process.returncode}):\n{self.log()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"prometheus was not ready within 60 s:\n{self.log()}")
            time.sleep(0.2)

    def log(self):
        return self.log_path.read_text()[-5000:]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def query(self, expr):
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def targets(self):
        """Each target's health and last scrape error."""
        try:
            body = requests.get(f"{self.url}/api/v1/targets", timeout=30).json()
            return [(t["scrapeUrl"], t["health"], t["lastError"], t.get("lastScrapeDuration"))
                    for t in body["data"]["activeTargets"]]
        except (requests.RequestException, ValueError, KeyError) as error:
            return f"unknown ({error})"

    def alerts(self, name):
        response = requests.get(f"{self.url}/api/v1/alerts", timeout=30)
        body = response.json()
        assert body["status"] == "success", body
        return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]

    def eventually(self, what, check, timeout=60, between=None):
        """Polls `check` (a (done, detail) pair) about every second, calling `between` before
        each attempt, until done; fails with the last detail and Prometheus' log."""
        deadline = time.monotonic() + timeout
        while True:
            if between:
                between()
            done, detail = check()
            if done:
                return detail
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not seen within {timeout} s; last: {detail}\n"
                            f"targets: {self.targets()}\nprometheus log:\n{self.log()}")
            time.sleep(1)


@pytest.fixture
def live_prometheus(prometheus, server, tmp_path):
    """Prometheus scraping the server every second, evaluating the shipped rules every second.
    The rules are a verbatim copy of alerts.yml: pending comes as soon as an alert's expression
    holds (whatever its `for:`), and rate() over the rules' 5m windows needs only two scrapes, so
    nothing needs shortening. A second target in job quiver, a port nobody listens on, is down."""
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    port, dead_port = free_ports(2)
    dead = f"127.0.0.1:{dead_port}"
    live = server.url[len("http://"):]
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {tmp_path / 'alerts.yml'}
scrape_configs:
  - job_name: quiver
    metrics_path: /metrics
    static_configs:
      - targets: ["{live}", "{dead}"]
""")
    instance = Prometheus(prometheus, config, tmp_path, port)
    instance.live, instance.dead = live, dead
    yield instance
    instance.stop()


def scalar(result):
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_prometheus_scrapes_computes_and_alerts(live_prometheus, server):
    prom, url = live_prometheus, server.url
    prom.eventually("the server scraped", lambda: (
        scalar(prom.query(f'up{{job="quiver", instance="{prom.live}"}}')) == 1,
        prom.query('up{job="quiver"}')))

    # The counts Prometheus stores are the server's.
    ok_requests(url, 10)
    expected = {protocol: value(parse_exposition(scrape(url))[1], "quiver_requests_total",
                                model="dense", version="1", protocol=protocol, outcome="ok")
                for protocol in ("kserve_rest", "tfserving_rest")}
    assert min(expected.values()) >= 10, expected

    def counts():
        result = prom.query('quiver_requests_total{model="dense", version="1", outcome="ok"}')
        # Series of protocols nobody used exist at 0 from the start; they are not compared.
        got = {r["metric"]["protocol"]: float(r["value"][1]) for r in result
               if float(r["value"][1]) > 0}
        return got == expected, got
    prom.eventually(f"quiver_requests_total == {expected}", counts)

    # A p99 from the histogram, over requests spread across scrapes.
    def p99():
        result = prom.query('histogram_quantile(0.99, sum by (le) '
                            '(rate(quiver_request_duration_seconds_bucket{model="dense", outcome="ok"}[1m])))')
        p = scalar(result)
        return p is not None and 0 < p <= 10, result
    prom.eventually("a p99 latency", p99, between=lambda: ok_requests(url, 3))

    # Every dashboard query runs and finds series.
    empty = {}
    def dashboard_answers():
        empty.clear()
        for title, expr in dashboard_queries(dashboard()):
            # Panels of families this server has not used (no policy, no shadow) have nothing
            # to show yet.
            if any(exposed_once_used(m) for m in referenced_metrics(expr)):
                continue
            if not prom.query(concrete(expr)):
                empty.setdefault(title, []).append(concrete(expr))
        return not empty, dict(empty)
    prom.eventually("an answer to every dashboard query", dashboard_answers,
                    between=lambda: (ok_requests(url, 2), overload(url)))

    def alert(name, states, **labels):
        def check():
            alerts = prom.alerts(name)
            matching = [a for a in alerts if a["state"] in states
                        and all(a["labels"].get(k) == v for k, v in labels.items())]
            return bool(matching), alerts or f"no {name} alert"
        return check

    # A failed model fires at once (for: 0m); a dead target is pending (for: 1m).
    prom.eventually("QuiverModelLoadFailures firing for broken",
                    alert("QuiverModelLoadFailures", {"firing"}, model="broken", version="1"))
    prom.eventually("QuiverTargetDown pending for the dead target",
                    alert("QuiverTargetDown", {"pending", "firing"}, instance=prom.dead))
    # A full queue, across scrapes.
    prom.eventually("QuiverRejectingRequests for queued",
                    alert("QuiverRejectingRequests", {"pending", "firing"}, model="queued"),
                    between=lambda: overload(url))
    # An error burst: requests that time out, across scrapes (a counter's first sample is no
    # increase), among client mistakes that must not count.
    def burst():
        timeouts(url, 20)
        for _ in range(5):
            expect(infer(url, "no_such_model"), 404)
            expect(predict(url, width=3), 400)
    prom.eventually("QuiverHighErrorRatio for dense",
                    alert("QuiverHighErrorRatio", {"pending", "firing"}, model="dense"),
                    between=burst)
    # Client mistakes alone page nobody.
    assert not [a for a in prom.alerts("QuiverHighErrorRatio") if a["labels"].get("model", "") == ""]
