"""Every error in the protocol's shape, through real clients on the real binary: what the router
itself refuses (unknown path, wrong method, wrong content type, malformed JSON, a body over the
limit) answers {"error": "..."} with content-type application/json on TF Serving REST and KServe V2
alike; V2 outputs named twice are refused naming the output (HTTP and gRPC); and the deadline of
each surface that had no test is honoured."""
import json

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from conftest import FIXTURE_MODELS, ROOT, Server
from processing_models import start_server

TABULAR = ROOT / "tests" / "e2e" / "fixtures" / "models"
LIMIT = 4096


def error_of(response, status):
    """The message of an error answered as {"error": "..."} with `status` and a JSON content type."""
    what = f"{response.request.method} {response.url}"
    assert response.status_code == status, f"{what}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("content-type") == "application/json", f"{what}: {response.headers}"
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], f"{what}: {body}"
    return body["error"]


@pytest.fixture(scope="module")
def small_body_server():
    """The fixture models with a body limit of LIMIT bytes."""
    server = Server(FIXTURE_MODELS, "--max-body-bytes", str(LIMIT))
    yield server
    server.stop()


def test_unknown_paths_are_404(fixtures_server):
    url = fixtures_server.url
    for method, path in [("GET", "/no/such/route"), ("POST", "/v2/models/half_plus_two/explode"),
                         ("GET", "/v1/models/half_plus_two/other"), ("POST", "/v1/models/half_plus_two:explode"),
                         ("GET", "/")]:
        error_of(requests.request(method, url + path, timeout=30), 404)
    assert "nope" in error_of(requests.post(f"{url}/v2/models/nope/infer", json={"inputs": []}, timeout=30), 404)


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE"])
def test_methods_a_route_does_not_take_are_405(fixtures_server, method):
    routes = {
        "/v2/models/half_plus_two/infer": "POST",
        "/v2/models/half_plus_two/infer/image": "POST",
        "/v2/health/live": "GET",
        "/v2/health/ready": "GET",
        "/v2": "GET",
        "/v2/models/half_plus_two": "GET",
        "/v2/models/half_plus_two/ready": "GET",
        "/v2/models/half_plus_two/config": "GET",
        "/v1/models/half_plus_two": "GET",
        "/v1/models/half_plus_two/metadata": "GET",
        "/v1/models/half_plus_two:predict": "POST",
        "/metrics": "GET",
    }
    for path, allowed in routes.items():
        response = requests.request(method, fixtures_server.url + path, timeout=30)
        assert method in error_of(response, 405)
        assert allowed in response.headers.get("allow", ""), f"{method} {path}: {response.headers}"
    error_of(requests.get(f"{fixtures_server.url}/v2/models/half_plus_two/infer", timeout=30), 405)
    error_of(requests.post(f"{fixtures_server.url}/v2/health/live", timeout=30), 405)


def test_the_image_route_refuses_other_content_types(fixtures_server):
    url = f"{fixtures_server.url}/v2/models/half_plus_two/infer/image"
    # requests sends no content type for raw bytes.
    assert "image/*" in error_of(requests.post(url, data=b"\x89PNG", timeout=30), 415)
    assert "image/*" in error_of(requests.post(url, json={"inputs": []}, timeout=30), 415)
    error_of(requests.post(url, data=b"text", headers={"Content-Type": "text/plain"}, timeout=30), 415)


def test_malformed_json_is_400(fixtures_server):
    url = fixtures_server.url
    for path in ["/v2/models/half_plus_two/infer", "/v1/models/half_plus_two:predict", "/v2/repository/index"]:
        for body in ["{not json", "[1, 2", '{"inputs": tru}']:
            error_of(requests.post(url + path, data=body, headers={"Content-Type": "application/json"},
                                   timeout=30), 400)


def test_bodies_over_the_limit_are_413(small_body_server):
    url = small_body_server.url
    body = json.dumps({"instances": [[1.0, 2.0, 3.0]] * LIMIT})
    for path in ["/v2/models/half_plus_two/infer", "/v1/models/half_plus_two:predict", "/v2/repository/index"]:
        assert "--max-body-bytes" in error_of(requests.post(url + path, data=body, timeout=30), 413)
    error_of(requests.post(f"{url}/v2/models/half_plus_two/infer/image", data=b"\0" * (LIMIT + 1),
                           headers={"Content-Type": "image/png"}, timeout=30), 413)
    # Below the limit the same server answers.
    small = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    assert requests.post(f"{url}/v2/models/half_plus_two/infer", json=small, timeout=30).status_code == 200


# --- V2 outputs named twice -----------------------------------------------------------------------

def multi_io_inputs(module):
    a = module.InferInput("a", [1, 2], "FP32")
    a.set_data_from_numpy(np.array([[1.5, 2.0]], dtype=np.float32))
    b = module.InferInput("b", [1], "INT32")
    b.set_data_from_numpy(np.array([3], dtype=np.int32))
    return [a, b]


def test_an_output_named_twice_over_http(fixtures_server):
    client = httpclient.InferenceServerClient(fixtures_server.url[len("http://"):])
    outputs = [httpclient.InferRequestedOutput("sum"), httpclient.InferRequestedOutput("b_doubled"),
               httpclient.InferRequestedOutput("sum")]
    with pytest.raises(InferenceServerException) as raised:
        client.infer("multi_io", multi_io_inputs(httpclient), outputs=outputs)
    assert raised.value.status() == "400", raised.value
    assert "'sum'" in raised.value.message()
    # The same over raw JSON, as curl would send it.
    body = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2.0]},
                       {"name": "b", "shape": [1], "datatype": "INT32", "data": [3]}],
            "outputs": [{"name": "b_doubled"}, {"name": "b_doubled"}]}
    response = requests.post(f"{fixtures_server.url}/v2/models/multi_io/infer", json=body, timeout=30)
    assert "'b_doubled'" in error_of(response, 400)
    body["outputs"] = [{"name": "b_doubled"}, {"name": "sum"}]
    response = requests.post(f"{fixtures_server.url}/v2/models/multi_io/infer", json=body, timeout=30)
    assert [o["name"] for o in response.json()["outputs"]] == ["b_doubled", "sum"]


def test_an_output_named_twice_over_grpc(fixtures_server):
    client = grpcclient.InferenceServerClient(fixtures_server.grpc)
    outputs = [grpcclient.InferRequestedOutput("sum"), grpcclient.InferRequestedOutput("sum")]
    with pytest.raises(InferenceServerException) as raised:
        client.infer("multi_io", multi_io_inputs(grpcclient), outputs=outputs)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT", raised.value
    assert "'sum'" in raised.value.message()
    # The raw message, as any gRPC client builds it.
    with grpc.insecure_channel(fixtures_server.grpc) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                    response_deserializer=service_pb2.ModelInferResponse.FromString)
        request = service_pb2.ModelInferRequest(model_name="multi_io")
        request.inputs.add(name="a", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1.5, 2.0])
        request.inputs.add(name="b", datatype="INT32", shape=[1]).contents.int_contents.append(3)
        request.outputs.add(name="b_doubled")
        request.outputs.add(name="b_doubled")
        with pytest.raises(grpc.RpcError) as raised:
            infer(request)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'b_doubled'" in raised.value.details()


# --- Deadlines --------------------------------------------------------------------------------------
# A deadline that has passed before the model could run is answered 504 / DEADLINE_EXCEEDED by the
# server, with its own message (which says "deadline"). gRPC's own deadline (grpc-timeout) cannot be
# tested this way through grpcio, which gives up at the deadline itself: crates/grpc/tests/in_process.rs
# sends it in-process.

def test_the_v2_timeout_parameter_over_http(fixtures_server):
    client = httpclient.InferenceServerClient(fixtures_server.url[len("http://"):])
    x = httpclient.InferInput("x", [1, 3], "FP32")
    x.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("half_plus_two", [x], timeout=0)
    assert raised.value.status() == "504", raised.value
    assert "deadline" in raised.value.message()
    assert client.infer("half_plus_two", [x], timeout=60_000_000).as_numpy("y").tolist() == [[2.0] * 3]


def test_the_v2_timeout_parameter_over_grpc(fixtures_server):
    client = grpcclient.InferenceServerClient(fixtures_server.grpc)
    x = grpcclient.InferInput("x", [1, 3], "FP32")
    x.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("half_plus_two", [x], timeout=0)
    assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED", raised.value
    assert "deadline" in raised.value.message()
    assert client.infer("half_plus_two", [x], timeout=60_000_000).as_numpy("y").tolist() == [[2.0] * 3]


@pytest.fixture(scope="module")
def tabular_server():
    """breast_cancer (:classify) and diabetes (:regress), on tract."""
    server = Server(TABULAR)
    yield server
    server.stop()


@pytest.mark.parametrize("verb,model,width", [("classify", "breast_cancer", 30), ("regress", "diabetes", 10)])
def test_classify_and_regress_honour_the_timeout_header(tabular_server, verb, model, width):
    url = f"{tabular_server.url}/v1/models/{model}:{verb}"
    body = {"examples": [{"x": [0.5] * width}]}
    late = requests.post(url, json=body, headers={"X-Quiver-Timeout-Ms": "0"}, timeout=30)
    assert "deadline" in error_of(late, 504)
    on_time = requests.post(url, json=body, headers={"X-Quiver-Timeout-Ms": "60000"}, timeout=30)
    assert on_time.status_code == 200, on_time.text
    assert len(on_time.json()["results"]) == 1
    error_of(requests.post(url, json=body, headers={"X-Quiver-Timeout-Ms": "soon"}, timeout=30), 400)


@pytest.fixture(scope="module")
def processing_server(tmp_path_factory, shared_models, onnxruntime_library):
    """mobilenet_v2 (images) and MiniLM (embeddings) with their example configs."""
    server = start_server(tmp_path_factory.mktemp("deadline-repository"), shared_models,
                          ("mobilenet_v2", "all_minilm_l6_v2"))
    yield server
    server.stop()


def test_embeddings_honour_the_timeout_header(processing_server):
    url = f"{processing_server.url}/v1/embeddings"
    body = {"model": "all_minilm_l6_v2", "input": ["a sentence"]}
    late = requests.post(url, json=body, headers={"X-Quiver-Timeout-Ms": "0"}, timeout=60)
    assert late.status_code == 504, late.text
    error = late.json()["error"]  # OpenAI's error shape
    assert error["code"] == "timeout" and "deadline" in error["message"], error
    on_time = requests.post(url, json=body, headers={"X-Quiver-Timeout-Ms": "60000"}, timeout=60)
    assert on_time.status_code == 200, on_time.text
    assert len(on_time.json()["data"][0]["embedding"]) == 384


def test_the_image_route_honours_the_timeout_header(processing_server, shared_models):
    url = f"{processing_server.url}/v2/models/mobilenet_v2/infer/image"
    image = (shared_models / "images" / "chelsea.png").read_bytes()
    late = requests.post(url, data=image, headers={"Content-Type": "image/png", "X-Quiver-Timeout-Ms": "0"},
                         timeout=60)
    assert "deadline" in error_of(late, 504)
    on_time = requests.post(url, data=image, headers={"Content-Type": "image/png", "X-Quiver-Timeout-Ms": "60000"},
                            timeout=60)
    assert on_time.status_code == 200, on_time.text
