"""The response cache (`[cache] max_bytes` in a model's config.toml, docs/processing.md): a repeated
request is answered from memory — `x-quiver-cache: hit`, the same bytes, counted in
`quiver_cache_requests_total` — over V2 HTTP, TF Serving REST and V2 gRPC; any other input, and
any other version, is a miss; a model without the key has no cache and no header."""
import os
import shutil

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from conftest import FIXTURE_MODELS, POLL_LOG, Server, half_plus_model, wait_until

TIMEOUT = 30
CACHE_TOML = "[cache]\nmax_bytes = 1048576\n"


def v2_body(values):
    return {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": values}]}


def cache_count(server, model, result):
    text = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    needle = f'quiver_cache_requests_total{{model="{model}",version="1",result="{result}"}} '
    lines = [line for line in text.splitlines() if line.startswith(needle)]
    return float(lines[0].split()[-1]) if lines else None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("cache-repository")
    for name, config in (("cached", CACHE_TOML), ("plain", None)):
        (repository / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURE_MODELS / "half_plus_two" / "1" / "model.onnx", repository / name / "1" / "model.onnx")
        if config:
            (repository / name / "config.toml").write_text(config)
    server = Server(repository)
    yield server
    server.stop()


def test_a_repeated_request_is_a_hit_with_the_same_bytes(server):
    url = f"{server.url}/v2/models/cached/infer"
    assert cache_count(server, "cached", "hit") == 0 and cache_count(server, "cached", "miss") == 0
    first = requests.post(url, json=v2_body([1, 2, 3]), timeout=TIMEOUT)
    assert first.status_code == 200, first.text
    assert first.headers["x-quiver-cache"] == "miss"
    second = requests.post(url, json=v2_body([1, 2, 3]), timeout=TIMEOUT)
    assert second.headers["x-quiver-cache"] == "hit"
    assert second.content == first.content
    assert second.json()["outputs"][0]["data"] == [2.5, 3.0, 3.5]
    # Another input is a miss, and is answered for itself.
    other = requests.post(url, json=v2_body([1, 2, 4]), timeout=TIMEOUT)
    assert other.headers["x-quiver-cache"] == "miss"
    assert other.json()["outputs"][0]["data"] == [2.5, 3.0, 4.0]
    # The same tensors over TF Serving REST are the same request to the model: a hit.
    tf = requests.post(f"{server.url}/v1/models/cached:predict", json={"instances": [[1, 2, 4]]}, timeout=TIMEOUT)
    assert tf.headers["x-quiver-cache"] == "hit"
    assert tf.json() == {"predictions": [[2.5, 3.0, 4.0]]}
    assert cache_count(server, "cached", "hit") == 2
    assert cache_count(server, "cached", "miss") == 2


def test_grpc_hits_the_same_cache(server):
    client = grpcclient.InferenceServerClient(server.grpc)
    data = np.array([[5, 6, 7]], dtype=np.float32)
    before = cache_count(server, "cached", "hit")
    answers = []
    for _ in range(2):
        inp = grpcclient.InferInput("x", [1, 3], "FP32")
        inp.set_data_from_numpy(data)
        answers.append(client.infer("cached", [inp]).as_numpy("y"))
    np.testing.assert_array_equal(answers[0], answers[1])
    np.testing.assert_allclose(answers[0], [[4.5, 5.0, 5.5]])
    assert cache_count(server, "cached", "hit") == before + 1


def test_a_model_without_the_key_has_no_cache(server):
    for _ in range(2):
        response = requests.post(f"{server.url}/v2/models/plain/infer", json=v2_body([1, 2, 3]), timeout=TIMEOUT)
        assert response.status_code == 200
        assert "x-quiver-cache" not in response.headers
    assert cache_count(server, "plain", "hit") is None


def test_a_new_version_starts_with_an_empty_cache(tmp_path):
    repository = tmp_path / "repo"
    (repository / "m" / "1").mkdir(parents=True)
    (repository / "m" / "1" / "model.onnx").write_bytes(half_plus_model(2))
    (repository / "m" / "config.toml").write_text(CACHE_TOML)
    server = Server(repository, "--repository-poll-secs", "0.2", env=POLL_LOG)
    try:
        url = f"{server.url}/v2/models/m/infer"
        assert requests.post(url, json=v2_body([2, 2, 2]), timeout=TIMEOUT).headers["x-quiver-cache"] == "miss"
        hit = requests.post(url, json=v2_body([2, 2, 2]), timeout=TIMEOUT)
        assert hit.headers["x-quiver-cache"] == "hit" and hit.json()["outputs"][0]["data"] == [3.0, 3.0, 3.0]
        # The version's file changes (0.5 x + 7 now): it is reloaded, and the reload has its own cache.
        replacement = repository / "m" / "1" / "model.onnx.new"
        replacement.write_bytes(half_plus_model(7))
        os.replace(replacement, repository / "m" / "1" / "model.onnx")
        wait_until(lambda: requests.post(url, json=v2_body([0, 0, 0]), timeout=TIMEOUT).json()["outputs"][0]["data"]
                   == [7.0, 7.0, 7.0], "the reloaded version to answer")
        fresh = requests.post(url, json=v2_body([2, 2, 2]), timeout=TIMEOUT)
        assert fresh.headers["x-quiver-cache"] == "miss"
        assert fresh.json()["outputs"][0]["data"] == [8.0, 8.0, 8.0]
    finally:
        server.stop()
