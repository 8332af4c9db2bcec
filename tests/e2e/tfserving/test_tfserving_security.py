"""The official TF Serving API stubs over `grpc.secure_channel` to a server with TLS and tokens
(docs/security.md): Predict and GetModelStatus need an `infer` token in the `authorization`
metadata, HandleReloadConfigRequest an `admin` one; without TLS trust the channel never opens."""
import grpc
import numpy as np
import pytest
import trustme
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from conftest import FIXTURE_MODELS, Server


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tf-security")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, tokens = directory / "server.pem", directory / "server.key", directory / "tokens"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    tokens.write_text("infer-s3cret infer app\nadmin-s3cret admin ops\n")
    server = Server(FIXTURE_MODELS, "--tls-cert", str(cert), "--tls-key", str(key),
                    "--auth-tokens-file", str(tokens))
    credentials = grpc.ssl_channel_credentials(ca.cert_pem.bytes())
    with grpc.secure_channel(server.grpc, credentials) as channel:
        yield channel, server
    server.stop()


def token(secret):
    return [("authorization", f"Bearer {secret}")]


def predict_request():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, 3)]
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                                        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims),
                                                        float_val=[1, 2, 3]))
    return request


def code_of(call):
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def test_predict_needs_an_infer_token(secured):
    channel, _ = secured
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    assert code_of(lambda: stub.Predict(predict_request(), timeout=30)) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: stub.Predict(predict_request(), timeout=30, metadata=token("admin-s3cret"))) \
        == grpc.StatusCode.PERMISSION_DENIED
    response = stub.Predict(predict_request(), timeout=30, metadata=token("infer-s3cret"))
    assert np.frombuffer(response.outputs["y"].tensor_content, dtype=np.float32).tolist() == [2.5, 3.0, 3.5]


def test_model_service_scopes(secured):
    channel, _ = secured
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "half_plus_two"
    assert code_of(lambda: stub.GetModelStatus(status, timeout=30)) == grpc.StatusCode.UNAUTHENTICATED
    answer = stub.GetModelStatus(status, timeout=30, metadata=token("infer-s3cret"))
    assert answer.model_version_status[0].version == 1
    reload = model_management_pb2.ReloadConfigRequest()
    assert code_of(lambda: stub.HandleReloadConfigRequest(reload, timeout=30, metadata=token("infer-s3cret"))) \
        == grpc.StatusCode.PERMISSION_DENIED


def test_a_client_that_does_not_trust_the_certificate_cannot_connect(secured):
    _, server = secured
    stranger = grpc.ssl_channel_credentials(trustme.CA().cert_pem.bytes())
    with grpc.secure_channel(server.grpc, stranger) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert code_of(lambda: stub.Predict(predict_request(), timeout=10, metadata=token("infer-s3cret"))) \
            == grpc.StatusCode.UNAVAILABLE
