"""The memory budget (`--max-loaded-models`, `--memory-budget-bytes`, `[lifecycle] pinned` and
`memory_bytes`; README "Memory budget") on three copies of the real mobilenet_v2 with room for
two: requests to each in turn all get the right class, never more than two versions are loaded,
the least recently used one goes (shown as UNLOADED_IDLE) and loads again on its next request,
pinned versions stay, and requests in flight on an unloaded version finish."""
import importlib.util
import json
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server, wait_until

spec = importlib.util.spec_from_file_location("predict_image", ROOT / "examples" / "client" / "predict_image.py")
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)

COPIES = ["m1", "m2", "m3"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def image(shared_models):
    """chelsea.png as the model takes it, with its expected top-1 class."""
    expected = json.loads((shared_models / "expected.json").read_text())
    top = expected["images"]["mobilenet_v2"]["chelsea.png"]["resize256_crop224"][0]["index"]
    return client.preprocess(shared_models / "images" / "chelsea.png")[np.newaxis].astype(np.float32), top


def repository(tmp_path, shared_models, configs=None):
    """Three copies of mobilenet_v2 (the model file linked, not copied), each with its config."""
    for name in COPIES:
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.onnx").symlink_to(shared_models / "mobilenet_v2" / "1" / "model.onnx")
        text = (configs or {}).get(name)
        if text:
            (tmp_path / name / "config.toml").write_text(text)
    return tmp_path


def start(tmp_path, shared_models, onnxruntime_library, *flags, configs=None):
    return Server(repository(tmp_path, shared_models, configs), *flags, onnxruntime=True)


def top1(server, model, image, protocol="http"):
    pixels, _ = image
    if protocol == "grpc":
        with grpcclient.InferenceServerClient(server.grpc) as triton:
            data = grpcclient.InferInput("input", list(pixels.shape), "FP32")
            data.set_data_from_numpy(pixels)
            logits = triton.infer(model, [data], client_timeout=TIMEOUT).as_numpy("logits")
    else:
        with httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=TIMEOUT) as triton:
            data = httpclient.InferInput("input", list(pixels.shape), "FP32")
            data.set_data_from_numpy(pixels, binary_data=True)
            logits = triton.infer(model, [data]).as_numpy("logits")
    return int(np.argmax(logits[0]))


def index(server):
    response = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return {row["name"]: row for row in response.json()}


def loaded(server):
    return sorted(name for name, row in index(server).items() if row.get("state") in ("READY", "LOADING"))


def metric(server, name, model=None):
    """The sum of a metric's samples (of one model's, when given)."""
    text = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and (model is None or f'model="{model}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Watch:
    """Reads the repository index over and over on a thread of its own, and keeps the most
    versions it ever saw loaded (or loading) at once."""

    def __init__(self, server):
        self.server, self.most, self.seen, self.done = server, 0, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            now = loaded(self.server)
            self.seen.append(now)
            self.most = max(self.most, len(now))
            time.sleep(0.01)

    def stop(self):
        self.done.set()
        self.thread.join(timeout=30)
        return self.most


@pytest.fixture(scope="module")
def counted(tmp_path_factory, shared_models, onnxruntime_library):
    server = start(tmp_path_factory.mktemp("budget-count"), shared_models, onnxruntime_library,
                   "--max-loaded-models", "2")
    yield server
    server.stop()


def test_a_count_budget_serves_every_copy_in_turn(counted, image):
    # Start-up loads what fits and leaves the rest idle (it loads when asked for).
    rows = index(counted)
    assert loaded(counted) == ["m1", "m2"], rows
    assert rows["m3"]["state"] == "UNLOADED_IDLE" and "memory budget" in rows["m3"]["reason"]
    ready = requests.get(f"{counted.url}/v2/models/m3/ready", timeout=TIMEOUT)
    assert ready.status_code != 200, "an idle version is not ready until loaded"
    watch = Watch(counted)
    try:
        order = ["m3", "m1", "m2", "m3", "m3", "m2", "m1"]
        for i, model in enumerate(order):
            protocol = "grpc" if i % 2 else "http"
            assert top1(counted, model, image, protocol) == image[1], (model, protocol)
            assert model in loaded(counted)
    finally:
        most = watch.stop()
    assert most <= 2, f"more than two loaded at once: {max(watch.seen, key=len)}"
    # m3, then m1 (m2 idle), m2 (m3 idle), m3 (m1 idle), m2, m1 (m3 idle): the least recently
    # used went each time.
    assert loaded(counted) == ["m1", "m2"]
    assert index(counted)["m3"]["state"] == "UNLOADED_IDLE"
    assert metric(counted, "quiver_model_evictions_total") >= 4
    assert metric(counted, "quiver_model_loads_on_demand_total") >= 4
    assert metric(counted, "quiver_model_on_demand_wait_seconds_count") >= 4
    state = metric(counted, "quiver_model_version_state", "m3")
    assert state == 1  # exactly one state is 1
    assert 'state="unloaded_idle"} 1' in requests.get(f"{counted.url}/metrics", timeout=TIMEOUT).text
    # TF Serving's status shows the idle version as ended, and a predict loads it again.
    status = requests.get(f"{counted.url}/v1/models/m3", timeout=TIMEOUT).json()
    assert status["model_version_status"][0]["state"] == "END"


def test_the_measured_estimate_is_at_least_the_weights(counted, shared_models):
    weights = (shared_models / "mobilenet_v2" / "1" / "model.onnx").stat().st_size
    text = requests.get(f"{counted.url}/metrics", timeout=TIMEOUT).text
    sizes = {line.split('model="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
             for line in text.splitlines() if line.startswith("quiver_model_memory_bytes{")}
    for model in loaded(counted):
        assert weights <= sizes[model] < 20 * weights, sizes


def test_requests_in_flight_are_never_dropped(counted, image):
    """Three clients, each on its own copy, with room for two: every request gets its answer
    while versions keep being unloaded and loaded under them."""
    failures, answers = [], []

    def hammer(model):
        for _ in range(6):
            try:
                answers.append(top1(counted, model, image))
            except Exception as error:  # noqa: BLE001 - every failure is reported
                failures.append(f"{model}: {error}")

    before = metric(counted, "quiver_model_evictions_total")
    watch = Watch(counted)
    threads = [threading.Thread(target=hammer, args=(m,)) for m in COPIES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    most = watch.stop()
    assert not failures, failures
    assert answers == [image[1]] * 18
    assert most <= 2
    assert metric(counted, "quiver_model_evictions_total") > before


def test_pinned_versions_are_never_unloaded(tmp_path, shared_models, onnxruntime_library, image):
    server = start(tmp_path, shared_models, onnxruntime_library, "--max-loaded-models", "2",
                   configs={"m3": "[lifecycle]\npinned = true\n"})
    try:
        assert "m3" in loaded(server)
        watch = Watch(server)
        for model in ["m1", "m2", "m1", "m2", "m3", "m1"]:
            assert top1(server, model, image) == image[1]
        watch.stop()
        assert all("m3" in seen for seen in watch.seen), "the pinned version was unloaded"
        assert watch.most <= 2
        assert metric(server, "quiver_model_evictions_total", "m3") == 0
        assert metric(server, "quiver_model_evictions_total") >= 3
    finally:
        server.stop()


def test_a_byte_budget_keeps_the_loaded_versions_within_it(tmp_path, shared_models, onnxruntime_library,
                                                           image):
    """By bytes: each copy counts 100 MiB (declared, so that the test does not hang on how much
    the process grew while one loaded), the budget 250 MiB."""
    mib = 1 << 20
    configs = {name: f"[lifecycle]\nmemory_bytes = {100 * mib}\n" for name in COPIES}
    server = start(tmp_path, shared_models, onnxruntime_library, "--memory-budget-bytes", str(250 * mib),
                   configs=configs)
    try:
        assert loaded(server) == ["m1", "m2"]
        watch = Watch(server)
        for model in ["m3", "m1", "m2", "m3"]:
            assert top1(server, model, image) == image[1]
            assert metric(server, "quiver_model_memory_bytes") <= 250 * mib
        watch.stop()
        assert watch.most <= 2
        assert loaded(server) == ["m2", "m3"]
    finally:
        server.stop()


def test_a_version_that_cannot_fit_is_refused_with_the_reason(tmp_path, shared_models, onnxruntime_library,
                                                              image):
    configs = {name: "[lifecycle]\npinned = true\n" for name in ("m1", "m2")}
    server = start(tmp_path, shared_models, onnxruntime_library, "--max-loaded-models", "2", configs=configs)
    try:
        pixels, _ = image
        body = {"inputs": [{"name": "input", "shape": list(pixels.shape), "datatype": "FP32",
                            "data": pixels.flatten().tolist()}]}
        response = requests.post(f"{server.url}/v2/models/m3/infer", json=body, timeout=TIMEOUT)
        assert response.status_code == 503, response.text
        assert "pinned" in response.json()["error"]
        wait_until(lambda: index(server)["m3"]["state"] == "UNLOADED_IDLE", "m3 to stay loadable")
        # The pinned versions kept serving.
        assert top1(server, "m1", image) == image[1]
    finally:
        server.stop()
