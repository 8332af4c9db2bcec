"""Experiments through TF Serving's own gRPC stubs and Quiver's gRPC admin service
(`quiver.admin.AdminService`, stubs generated here from proto/quiver/admin.proto): a policy set
over gRPC splits TF Serving Predict calls, a sticky key in the call's metadata keeps a user on
one version, pins bypass the split, and the response metadata names the version that answered.
"""
import importlib
import subprocess
import sys

import grpc
import pytest
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conftest import ROOT, Server, half_plus_model
from test_tfserving_labels import answer, predict, spec

X = [0.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def admin_stubs(tmp_path_factory):
    out = tmp_path_factory.mktemp("admin_stubs")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    str(ROOT / "proto" / "quiver" / "admin.proto")], check=True)
    (out / "quiver" / "__init__.py").touch()
    sys.path.insert(0, str(out))
    try:
        yield (importlib.import_module("quiver.admin_pb2"),
               importlib.import_module("quiver.admin_pb2_grpc"))
    finally:
        sys.path.remove(str(out))


@pytest.fixture
def server(tmp_path):
    for version in (1, 2, 3):
        (tmp_path / "m" / str(version)).mkdir(parents=True)
        (tmp_path / "m" / str(version) / "model.onnx").write_bytes(half_plus_model(version))
    (tmp_path / "m" / "config.toml").write_text('version_policy = "all"\n')
    server = Server(tmp_path)
    yield server
    server.stop()


def test_a_policy_set_over_grpc_routes_tf_serving_predict(server, admin_stubs):
    pb, pb_grpc = admin_stubs
    with grpc.insecure_channel(server.grpc) as channel:
        admin = pb_grpc.AdminServiceStub(channel)
        policy = '{"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}], "sticky_key": "x-user-id"}'
        reply = admin.SetTraffic(pb.SetTrafficRequest(model="m", policy_json=policy), timeout=30)
        assert reply.source == "api" and '"sticky_key":"x-user-id"' in reply.policy_json

        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = spec(predict_pb2.PredictRequest(), "m")
        shape = tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, 3)])
        request.inputs["x"].CopyFrom(
            tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=X))
        placed = {}
        for user in (f"user-{i}" for i in range(60)):
            seen = set()
            for _ in range(3):
                response, call = stub.Predict.with_call(request, metadata=[("x-user-id", user)], timeout=30)
                version = response.model_spec.version.value
                assert dict(call.initial_metadata())["x-quiver-model-version"] == str(version)
                seen.add(version)
            assert len(seen) == 1, (user, seen)
            placed[user] = seen.pop()
        assert set(placed.values()) == {1, 2}
        # A pinned version bypasses the split.
        assert predict(channel, "m", version=3) == (3, answer(3))

        # Bad policies: INVALID_ARGUMENT naming the model.
        with pytest.raises(grpc.RpcError) as refused:
            admin.SetTraffic(pb.SetTrafficRequest(
                model="m", policy_json='{"split": [{"version": 1, "weight": 99}]}'), timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model 'm'" in refused.value.details()
        with pytest.raises(grpc.RpcError) as refused:
            admin.GetTraffic(pb.GetTrafficRequest(model="absent"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND

        labels = admin.SetLabel(pb.SetLabelRequest(model="m", label="canary", version=2), timeout=30)
        assert dict(labels.labels) == {"canary": 2}
        assert predict(channel, "m", label="canary") == (2, answer(2))

        reply = admin.DeleteTraffic(pb.DeleteTrafficRequest(model="m"), timeout=30)
        assert reply.source == "" and reply.policy_json == ""
        assert predict(channel, "m") == (3, answer(3))

        audit = admin.ListAudit(pb.ListAuditRequest(), timeout=30)
        assert [e.action for e in audit.entries] == ["traffic.put", "label.put", "traffic.delete"]
        assert audit.entries[0].before_json == "null" and "x-user-id" in audit.entries[0].after_json
        assert audit.entries[2].after_json == "null"
