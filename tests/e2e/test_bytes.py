"""BYTES elements are binary-safe: NUL, bytes that are not UTF-8 and long elements come back
exactly through KServe V2 over HTTP (binary data and JSON) and gRPC (raw_input_contents and
bytes_contents), on tract and on ONNX Runtime — or, where the engine cannot hold them (bytes that
are not UTF-8 on tract), are refused as the client's mistake, naming the input and the reason.

TF Serving's gRPC API: tfserving/test_tfserving_bytes.py (its stubs live in another venv).
"""
import base64
import struct

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.grpc.service_pb2 as pb
import tritonclient.grpc.service_pb2_grpc as pb_grpc
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from bytes_models import CASES, NOT_UTF8, UTF8, engine, model, start_server  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("bytes-repository"))
    yield server
    server.stop()


def as_array(elements):
    array = np.empty(len(elements), dtype=np.object_)
    array[:] = list(elements)
    return array


def assert_refused_as_not_utf8(error, status):
    """The client's mistake, saying which input, that it is not UTF-8, and the way out."""
    assert status in str(error.status()), error
    for needle in ["'text'", "UTF-8", "onnxruntime"]:
        assert needle in error.message(), error.message()


def http_infer(server, engine, elements, binary):
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    text = httpclient.InferInput("text", [len(elements)], "BYTES")
    text.set_data_from_numpy(as_array(elements), binary_data=binary)
    result = client.infer(model(engine), [text],
                          outputs=[httpclient.InferRequestedOutput("echo", binary_data=binary)])
    return list(result.as_numpy("echo"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_v2_http_binary_data_round_trips_every_byte(server, engine, name):
    sent = CASES[name]
    if engine == "tract" and name in NOT_UTF8:
        with pytest.raises(InferenceServerException) as refused:
            http_infer(server, engine, [sent], binary=True)
        assert_refused_as_not_utf8(refused.value, "400")
        return
    assert http_infer(server, engine, [sent], binary=True) == [sent]


def test_v2_http_binary_data_all_at_once(server, engine):
    elements = list(CASES.values() if engine == "onnxruntime" else UTF8.values())
    assert http_infer(server, engine, elements, binary=True) == elements


def test_v2_http_json_carries_any_utf8_text(server, engine):
    """JSON strings are Unicode text: every UTF-8 element, NUL included (as \\u0000), is exact."""
    elements = list(UTF8.values())
    echoed = http_infer(server, engine, elements, binary=False)
    assert [e.encode("utf-8") for e in echoed] == elements


def test_v2_http_json_other_bytes_travel_as_b64(server, engine):
    """Bytes that are not UTF-8 cannot be a JSON string: a request sends them as {"b64": …} and
    the JSON answer writes them so too (never a replacement character)."""
    sent = [b"plain", b"\xff\xfe\0", b"a\0b"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3],
                        "data": ["plain", {"b64": base64.b64encode(sent[1]).decode()}, "a\u0000b"]}]}
    response = requests.post(f"{server.url}/v2/models/{model(engine)}/infer", json=body, timeout=30)
    if engine == "tract":
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/json")
        message = response.json()["error"]
        assert "'text'" in message and "UTF-8" in message, message
        return
    assert response.status_code == 200, response.text
    data = response.json()["outputs"][0]["data"]
    assert data == ["plain", {"b64": base64.b64encode(sent[1]).decode()}, "a\u0000b"]


def test_v2_http_binary_in_json_out_and_back(server, engine):
    """Binary data in, JSON out (and the reverse) for the same text: the codecs agree."""
    elements = list(UTF8.values())
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    text = httpclient.InferInput("text", [len(elements)], "BYTES")
    text.set_data_from_numpy(as_array(elements), binary_data=True)
    result = client.infer(model(engine), [text],
                          outputs=[httpclient.InferRequestedOutput("echo", binary_data=False)])
    assert [e.encode("utf-8") for e in result.as_numpy("echo")] == elements


def grpc_infer(server, engine, elements):
    client = grpcclient.InferenceServerClient(server.grpc)
    text = grpcclient.InferInput("text", [len(elements)], "BYTES")
    text.set_data_from_numpy(as_array(elements))  # raw_input_contents
    return list(client.infer(model(engine), [text]).as_numpy("echo"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_v2_grpc_raw_contents_round_trip_every_byte(server, engine, name):
    sent = CASES[name]
    if engine == "tract" and name in NOT_UTF8:
        with pytest.raises(InferenceServerException) as refused:
            grpc_infer(server, engine, [sent])
        assert_refused_as_not_utf8(refused.value, "INVALID_ARGUMENT")
        return
    assert grpc_infer(server, engine, [sent]) == [sent]


def raw_elements(raw):
    """Elements of a BYTES raw_output_contents: each a 4-byte little-endian length, then bytes."""
    out = []
    while raw:
        (length,) = struct.unpack_from("<I", raw)
        out.append(raw[4:4 + length])
        raw = raw[4 + length:]
    return out


def test_v2_grpc_bytes_contents_round_trip(server, engine):
    """The typed `bytes_contents` field, as clients other than tritonclient send it."""
    elements = list(CASES.values() if engine == "onnxruntime" else UTF8.values())
    with grpc.insecure_channel(server.grpc, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name=model(engine))
        text = request.inputs.add(name="text", datatype="BYTES", shape=[len(elements)])
        text.contents.bytes_contents.extend(elements)
        response = stub.ModelInfer(request, timeout=60)
        assert [o.name for o in response.outputs] == ["echo"]
        assert list(response.outputs[0].shape) == [len(elements)]
        assert raw_elements(response.raw_output_contents[0]) == elements
        if engine == "tract":
            bad = pb.ModelInferRequest(model_name=model(engine))
            bad.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
                [b"fine", NOT_UTF8["not utf-8"]])
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(bad, timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "'text'" in refused.value.details() and "UTF-8" in refused.value.details()
