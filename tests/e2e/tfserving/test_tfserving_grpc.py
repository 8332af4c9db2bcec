"""TensorFlow Serving's gRPC API, driven by the official TF Serving API stubs."""
import grpc
import numpy as np
import pytest
from google.protobuf import wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)


@pytest.fixture(scope="module")
def channel(fixtures_server):
    with grpc.insecure_channel(fixtures_server.grpc) as channel:
        yield channel


def shape(*dims):
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims])


def to_numpy(proto):
    dtype = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
             types_pb2.DT_BOOL: np.bool_}[proto.dtype]
    dims = [d.size for d in proto.tensor_shape.dim]
    return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(dims)


def test_predict_typed_and_packed(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape(2, 3),
                                                        float_val=[1, 2, 3, -2, 0, 10]))
    response = stub.Predict(request, timeout=30)
    assert response.model_spec.name == "half_plus_two"
    assert response.model_spec.version.value == 1
    np.testing.assert_array_equal(to_numpy(response.outputs["y"]), [[2.5, 3, 3.5], [1, 2, 7]])

    packed = predict_pb2.PredictRequest()
    packed.model_spec.name = "multi_io"
    packed.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=1))
    a = np.array([[1.5, 2.0], [-1.0, 0.25]], dtype=np.float32)
    packed.inputs["a"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape(2, 2),
                                                       tensor_content=a.tobytes()))
    packed.inputs["b"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_INT32, tensor_shape=shape(2),
                                                       int_val=[3, -4]))
    packed.output_filter.append("sum")
    packed.output_filter.append("positive")
    response = stub.Predict(packed, timeout=30)
    assert sorted(response.outputs) == ["positive", "sum"]
    np.testing.assert_array_equal(to_numpy(response.outputs["sum"]), [3.5, -0.75])
    np.testing.assert_array_equal(to_numpy(response.outputs["positive"]), [True, False])


def test_strings(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "echo_bytes"
    text = [b"a", "ünï".encode(), b""]
    request.inputs["text"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape(3),
                                                           string_val=text))
    response = stub.Predict(request, timeout=30)
    assert list(response.outputs["echo"].string_val) == text
    # tract holds strings as text: other bytes are refused with a clear error, not mangled.
    request.inputs["text"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape(1),
                                                           string_val=[b"\xff\x00"]))
    assert code_of(stub.Predict, request) == grpc.StatusCode.INVALID_ARGUMENT


def test_metadata_and_status(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "multi_io"
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert signature.inputs["a"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in signature.inputs["a"].tensor_shape.dim] == [-1, 2]
    assert signature.outputs["positive"].dtype == types_pb2.DT_BOOL

    status = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "int_affine"
    response = status.GetModelStatus(request, timeout=30)
    [version] = response.model_version_status
    assert version.version == 1
    assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert version.status.error_code == 0


def code_of(call, request):
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value.code()


def test_errors(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    good = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape(1, 3), float_val=[1, 2, 3])

    def predict(name="half_plus_two", tensor=good, **spec):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        for key, value in spec.items():
            if key == "version":
                request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=value))
            else:
                setattr(request.model_spec, key, value)
        request.inputs["x"].CopyFrom(tensor)
        return request

    assert code_of(stub.Predict, predict(name="nope")) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.Predict, predict(version=3)) == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.Predict, predict(version_label="stable")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(stub.Predict, predict(signature_name="other")) == grpc.StatusCode.INVALID_ARGUMENT
    wrong_type = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_shape=shape(1, 3), int64_val=[1, 2, 3])
    assert code_of(stub.Predict, predict(tensor=wrong_type)) == grpc.StatusCode.INVALID_ARGUMENT
    too_few = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape(1, 3), float_val=[1])
    assert code_of(stub.Predict, predict(tensor=too_few)) == grpc.StatusCode.INVALID_ARGUMENT
    absurd = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape(2**40, 2**40, 2**40),
                                    tensor_content=b"\0" * 12)
    assert code_of(stub.Predict, predict(tensor=absurd)) == grpc.StatusCode.INVALID_ARGUMENT
    unsupported = tensor_pb2.TensorProto(dtype=types_pb2.DT_COMPLEX64, tensor_shape=shape(1))
    assert code_of(stub.Predict, predict(tensor=unsupported)) == grpc.StatusCode.INVALID_ARGUMENT
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["other"])
    request.model_spec.name = "half_plus_two"
    assert code_of(stub.GetModelMetadata, request) == grpc.StatusCode.INVALID_ARGUMENT
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    with pytest.raises(grpc.RpcError) as raised:
        raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Classify on a model without a classification output (three outputs, none declared):
    # TF Serving's INVALID_ARGUMENT.
    classify = channel.unary_unary("/tensorflow.serving.PredictionService/Classify")
    with pytest.raises(grpc.RpcError) as raised:
        classify(b"\x0a\x0a\x0a\x08multi_io", timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "classification" in raised.value.details()
    multi = channel.unary_unary("/tensorflow.serving.PredictionService/MultiInference")
    with pytest.raises(grpc.RpcError) as raised:
        multi(b"", timeout=30)
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # Still serving.
    assert stub.Predict(predict(), timeout=30).outputs["y"].tensor_content


def test_predict_is_counted_in_the_metrics(channel, fixtures_server):
    """TF Serving gRPC calls appear in /metrics under protocol="tfserving_grpc"."""
    import urllib.request

    def count():
        text = urllib.request.urlopen(fixtures_server.url + "/metrics", timeout=10).read().decode()
        key = 'quiver_requests_total{model="half_plus_two",version="1",protocol="tfserving_grpc",outcome="ok"} '
        line = next(line for line in text.splitlines() if line.startswith(key))
        return float(line.split()[-1])

    before = count()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape(1, 3),
                                                        float_val=[1, 2, 3]))
    for _ in range(3):
        stub.Predict(request, timeout=30)
    assert count() == before + 3
