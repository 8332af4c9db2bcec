"""DT_STRING elements are binary-safe through TF Serving's gRPC Predict (`string_val`), driven by
the official TF Serving API stubs: NUL, bytes that are not UTF-8 and long elements come back
exactly on ONNX Runtime; tract, which holds strings as text, takes NUL but refuses bytes that are
not UTF-8 with INVALID_ARGUMENT naming the input and the reason.
"""
import grpc
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bytes_models import CASES, NOT_UTF8, UTF8, engine, model, start_server  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("bytes-repository"))
    try:
        with grpc.insecure_channel(server.grpc, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
            yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    finally:
        server.stop()


def request_for(engine, elements):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model(engine)
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=len(elements))]
    request.inputs["text"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims),
        string_val=elements))
    return request


@pytest.mark.parametrize("name", sorted(CASES))
def test_string_val_round_trips_every_byte(stub, engine, name):
    sent = CASES[name]
    request = request_for(engine, [sent])
    if engine == "tract" and name in NOT_UTF8:
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request, timeout=60)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for needle in ["'text'", "UTF-8", "onnxruntime"]:
            assert needle in refused.value.details(), refused.value.details()
        return
    response = stub.Predict(request, timeout=60)
    echo = response.outputs["echo"]
    assert echo.dtype == types_pb2.DT_STRING
    assert [d.size for d in echo.tensor_shape.dim] == [1]
    assert list(echo.string_val) == [sent]


def test_string_val_all_at_once(stub, engine):
    elements = list(CASES.values() if engine == "onnxruntime" else UTF8.values())
    response = stub.Predict(request_for(engine, elements), timeout=60)
    assert list(response.outputs["echo"].string_val) == elements
    if engine == "tract":
        # One element it cannot hold refuses the request, naming the element.
        refused_at = len(elements)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Predict(request_for(engine, elements + [NOT_UTF8["not utf-8"]]), timeout=60)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"element {refused_at}" in refused.value.details(), refused.value.details()
