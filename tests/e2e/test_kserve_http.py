"""KServe V2 over HTTP, driven by Triton's own Python client (tritonclient.http)."""
import json

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype


@pytest.fixture(scope="module")
def client(fixtures_server):
    return httpclient.InferenceServerClient(fixtures_server.url[len("http://"):], concurrency=4)


def infer_input(name, array, binary):
    i = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    i.set_data_from_numpy(array, binary_data=binary)
    return i


def test_health_and_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("half_plus_two")
    assert client.is_model_ready("half_plus_two", "1")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert server["name"] == "quiver"
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("multi_io")
    assert meta["name"] == "multi_io"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "tract_onnx"
    assert meta["inputs"] == [
        {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "b", "datatype": "INT32", "shape": [-1]},
    ]
    assert [o["datatype"] for o in meta["outputs"]] == ["FP32", "INT32", "BOOL"]
    config = client.get_model_config("dense")
    assert config["name"] == "dense"
    assert config["max_batch_size"] == 0
    assert config["input"] == [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 64]}]
    assert config["output"][0]["data_type"] == "TYPE_FP32"


@pytest.mark.parametrize("binary", [False, True])
def test_infer_float_and_int(client, binary):
    x = np.array([[1, 2, 3], [-2, 0, 10]], dtype=np.float32)
    result = client.infer("half_plus_two", [infer_input("x", x, binary)],
                          outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)])
    np.testing.assert_array_equal(result.as_numpy("y"), 0.5 * x + 2)
    a = np.array([[1, 2], [-5, 9_007_199_254_740]], dtype=np.int64)
    result = client.infer("int_affine", [infer_input("a", a, binary)], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("y"), 3 * a - 1)
    assert result.get_response()["model_version"] == "1"


def test_multi_io_selects_and_orders_outputs(client):
    a = np.array([[1.5, 2.0], [-1.0, 0.25]], dtype=np.float32)
    b = np.array([3, -4], dtype=np.int32)
    outputs = [httpclient.InferRequestedOutput("positive", binary_data=True),
               httpclient.InferRequestedOutput("sum", binary_data=False)]
    result = client.infer("multi_io", [infer_input("a", a, True), infer_input("b", b, False)],
                          outputs=outputs, request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7"
    assert [o["name"] for o in response["outputs"]] == ["positive", "sum"]
    np.testing.assert_array_equal(result.as_numpy("positive"), [True, False])
    np.testing.assert_array_equal(result.as_numpy("sum"), [3.5, -0.75])
    assert result.as_numpy("b_doubled") is None


@pytest.mark.parametrize("binary", [False, True])
def test_bytes_tensors(client, binary):
    text = np.array([b"hello", "wörld".encode(), b""], dtype=np.object_)
    result = client.infer("echo_bytes", [infer_input("text", text, binary)],
                          outputs=[httpclient.InferRequestedOutput("echo", binary_data=binary)])
    echoed = result.as_numpy("echo")
    assert [bytes(e) if not isinstance(e, str) else e.encode() for e in echoed] == list(text)


def test_async_infer(client):
    requests_ = []
    for i in range(8):
        x = np.full((1, 3), i, dtype=np.float32)
        requests_.append((i, client.async_infer("half_plus_two", [infer_input("x", x, True)])))
    for i, pending in requests_:
        np.testing.assert_array_equal(pending.get_result().as_numpy("y"), np.full((1, 3), 0.5 * i + 2))


def test_client_errors(client):
    x = np.zeros((1, 3), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="nope"):
        client.infer("nope", [infer_input("x", x, True)])
    with pytest.raises(InferenceServerException, match="version"):
        client.infer("half_plus_two", [infer_input("x", x, True)], model_version="7")
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("half_plus_two", [infer_input("x", np.zeros((1, 4), np.float32), True)])
    with pytest.raises(InferenceServerException, match="data type|FP32"):
        client.infer("half_plus_two", [infer_input("x", np.zeros((1, 3), np.int64), False)])
    with pytest.raises(InferenceServerException, match="unknown output"):
        client.infer("half_plus_two", [infer_input("x", x, True)],
                     outputs=[httpclient.InferRequestedOutput("nope")])


def error_of(response, status):
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and body["error"], body
    return body["error"]


def test_raw_http_errors(fixtures_server):
    url = f"{fixtures_server.url}/v2/models/half_plus_two/infer"
    good = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    assert requests.post(url, json=good, timeout=30).status_code == 200
    error_of(requests.post(url, data="{not json", timeout=30), 400)
    error_of(requests.post(url, data="[" * 150_000 + "]" * 150_000, timeout=30), 400)
    bad_type = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP99", "data": [1, 2, 3]}]}
    assert "FP99" in error_of(requests.post(url, json=bad_type, timeout=30), 400)
    bad_count = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}
    error_of(requests.post(url, json=bad_count, timeout=30), 400)
    huge = {"inputs": [{"name": "x", "shape": [2**62, 2**62], "datatype": "FP32", "data": [1]}]}
    error_of(requests.post(url, json=huge, timeout=30), 400)
    # binary_data_size that does not add up with the body, either way.
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 12}}]}).encode()
    for payload in (header + b"\0" * 8, header + b"\0" * 16):
        error_of(requests.post(url, data=payload, timeout=30,
                               headers={"Inference-Header-Content-Length": str(len(header))}), 400)
    error_of(requests.post(url, data=header, timeout=30,
                           headers={"Inference-Header-Content-Length": str(len(header) + 5)}), 400)
    error_of(requests.post(f"{fixtures_server.url}/v2/models/nope/infer", json=good, timeout=30), 404)
    error_of(requests.get(f"{fixtures_server.url}/v2/models/nope", timeout=30), 404)
    error_of(requests.get(f"{fixtures_server.url}/v2/models/half_plus_two/versions/x", timeout=30), 400)
    error_of(requests.get(f"{fixtures_server.url}/v2/models/half_plus_two/versions/9/ready", timeout=30), 404)
    assert requests.post(url, json=good, timeout=30).json()["outputs"][0]["data"] == [2.5, 3.0, 3.5]
