"""KServe V2 over gRPC, driven by Triton's own Python client (tritonclient.grpc) and raw grpcio."""
import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import ROOT, Server


@pytest.fixture(scope="module")
def client(fixtures_server):
    return grpcclient.InferenceServerClient(fixtures_server.grpc)


def infer_input(name, array):
    i = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    i.set_data_from_numpy(array)
    return i


def test_health_and_metadata(client, fixtures_server):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("multi_io")
    assert not client.is_model_ready("nope")
    assert client.get_server_metadata().name == "quiver"
    meta = client.get_model_metadata("multi_io", as_json=True)
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "tract_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("a", "FP32", ["-1", "2"]), ("b", "INT32", ["-1"])]
    config = client.get_model_config("dense", as_json=True)["config"]
    assert config["input"][0]["data_type"] == "TYPE_FP32"
    assert config["input"][0]["dims"] == ["-1", "64"]
    with grpc.insecure_channel(fixtures_server.grpc) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
        answer = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_infer(client):
    x = np.array([[1, 2, 3], [-2, 0, 10]], dtype=np.float32)
    result = client.infer("half_plus_two", [infer_input("x", x)], request_id="g1")
    np.testing.assert_array_equal(result.as_numpy("y"), 0.5 * x + 2)
    assert result.get_response().id == "g1"
    a = np.array([[1, 2]], dtype=np.int64)
    result = client.infer("int_affine", [infer_input("a", a)], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("y"), [[2, 5]])
    a = np.array([[1.5, 2.0]], dtype=np.float32)
    b = np.array([-3], dtype=np.int32)
    result = client.infer("multi_io", [infer_input("a", a), infer_input("b", b)],
                          outputs=[grpcclient.InferRequestedOutput("b_doubled")])
    assert [o.name for o in result.get_response().outputs] == ["b_doubled"]
    np.testing.assert_array_equal(result.as_numpy("b_doubled"), [-6])


def test_typed_contents(fixtures_server):
    """Inputs in InferTensorContents instead of raw_input_contents."""
    with grpc.insecure_channel(fixtures_server.grpc) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                    response_deserializer=service_pb2.ModelInferResponse.FromString)
        request = service_pb2.ModelInferRequest(model_name="multi_io")
        a = request.inputs.add(name="a", datatype="FP32", shape=[1, 2])
        a.contents.fp32_contents.extend([1.0, 2.0])
        b = request.inputs.add(name="b", datatype="INT32", shape=[1])
        b.contents.int_contents.append(5)
        response = infer(request)
        outputs = {o.name: (o, raw) for o, raw in zip(response.outputs, response.raw_output_contents)}
        assert np.frombuffer(outputs["sum"][1], dtype=np.float32).tolist() == [3.0]
        assert np.frombuffer(outputs["b_doubled"][1], dtype=np.int32).tolist() == [10]


def test_bytes(client):
    text = np.array([b"hello", "wörld".encode(), b""], dtype=np.object_)
    echoed = client.infer("echo_bytes", [infer_input("text", text)]).as_numpy("echo")
    assert list(echoed) == list(text)


def test_async_and_streaming(client):
    results = queue.Queue()
    for i in range(6):
        x = np.full((1, 3), i, dtype=np.float32)
        client.async_infer("half_plus_two", [infer_input("x", x)],
                           callback=lambda result, error, i=i: results.put((i, result, error)))
    for _ in range(6):
        i, result, error = results.get(timeout=30)
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("y"), np.full((1, 3), 0.5 * i + 2))

    streamed = queue.Queue()
    client.start_stream(callback=lambda result, error: streamed.put((result, error)))
    try:
        for i in range(4):
            client.async_stream_infer("half_plus_two", [infer_input("x", np.full((1, 3), i, np.float32))],
                                      request_id=str(i))
        client.async_stream_infer("nope", [infer_input("x", np.zeros((1, 3), np.float32))])
        answers = [streamed.get(timeout=30) for _ in range(5)]
    finally:
        client.stop_stream()
    for i, (result, error) in enumerate(answers[:4]):
        assert error is None
        assert result.get_response().id == str(i)
        np.testing.assert_array_equal(result.as_numpy("y"), np.full((1, 3), 0.5 * i + 2))
    assert answers[4][1] is not None and "nope" in str(answers[4][1])


def status_of(call):
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status()


def test_errors_have_the_right_codes(client, fixtures_server):
    x = np.zeros((1, 3), dtype=np.float32)
    assert status_of(lambda: client.infer("nope", [infer_input("x", x)])) == "StatusCode.NOT_FOUND"
    assert status_of(lambda: client.infer("half_plus_two", [infer_input("x", x)], model_version="4")) \
        == "StatusCode.NOT_FOUND"
    assert status_of(lambda: client.infer("half_plus_two", [infer_input("x", np.zeros((1, 4), np.float32))])) \
        == "StatusCode.INVALID_ARGUMENT"
    assert status_of(lambda: client.get_model_metadata("nope")) == "StatusCode.NOT_FOUND"
    with grpc.insecure_channel(fixtures_server.grpc) as channel:
        raw_infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as raised:
            raw_infer(b"\xff\xff\xff\xff garbage")
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                    response_deserializer=service_pb2.ModelInferResponse.FromString)
        cases = []
        r = service_pb2.ModelInferRequest(model_name="half_plus_two")
        r.inputs.add(name="x", datatype="FP32", shape=[1, 3])
        r.raw_input_contents.append(b"\0" * 8)  # 8 bytes for 12 needed
        cases.append(r)
        r = service_pb2.ModelInferRequest(model_name="half_plus_two")
        r.inputs.add(name="x", datatype="FP32", shape=[2**40, 2**40, 2**40])
        r.raw_input_contents.append(b"\0" * 12)
        cases.append(r)
        r = service_pb2.ModelInferRequest(model_name="half_plus_two")
        r.inputs.add(name="x", datatype="FP32", shape=[-1, 3])
        cases.append(r)
        r = service_pb2.ModelInferRequest(model_name="half_plus_two", model_version="x")
        cases.append(r)
        for request in cases:
            with pytest.raises(grpc.RpcError) as raised:
                infer(request)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    # Still serving.
    np.testing.assert_array_equal(client.infer("half_plus_two", [infer_input("x", x)]).as_numpy("y"),
                                  np.full((1, 3), 2.0))


def test_message_limit_is_resource_exhausted():
    server = Server(ROOT / "crates" / "test-support" / "fixtures" / "models", "--grpc-max-message-bytes", "4096")
    try:
        client = grpcclient.InferenceServerClient(server.grpc)
        x = np.zeros((1000, 3), dtype=np.float32)
        with pytest.raises(InferenceServerException) as raised:
            client.infer("half_plus_two", [infer_input("x", x)])
        assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "--grpc-max-message-bytes" in raised.value.message()
        small = np.zeros((2, 3), dtype=np.float32)
        assert client.infer("half_plus_two", [infer_input("x", small)]).as_numpy("y").shape == (2, 3)
    finally:
        server.stop()
