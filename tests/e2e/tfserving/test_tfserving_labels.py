"""TF Serving's version labels and --model-config-file over gRPC, driven by the official TF
Serving API stubs.

Version N of a test model is half_plus_two's file computing 0.5 * x + N, so an answer shows
which version computed it, besides the response's model_spec.version.
"""
import os

import grpc
import numpy as np
import pytest
from google.protobuf import wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from conftest import Server, half_plus_model, wait_until

X = [0.0, 2.0, 4.0]
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END
# What an unknown label gets: INVALID_ARGUMENT, as TF Serving answers it ("Unrecognized servable
# version label").
UNKNOWN_LABEL = grpc.StatusCode.INVALID_ARGUMENT


def add_versions(model_dir, versions):
    for version in versions:
        (model_dir / str(version)).mkdir(parents=True)
        (model_dir / str(version) / "model.onnx").write_bytes(half_plus_model(version))


def spec(request, name, version=None, label=None):
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    if label is not None:
        request.model_spec.version_label = label
    return request


def predict(channel, name, version=None, label=None):
    """(answering version, y) of a Predict."""
    request = spec(predict_pb2.PredictRequest(), name, version, label)
    shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, 3)])
    request.inputs["x"].CopyFrom(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape, float_val=X))
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert response.model_spec.name == name
    y = response.outputs["y"]
    values = np.frombuffer(y.tensor_content, dtype=np.float32) if y.tensor_content else np.array(y.float_val)
    return response.model_spec.version.value, values.tolist()


def answer(version):
    return [0.5 * x + version for x in X]


def status(channel, name, version=None, label=None):
    """{version: (state, error_code, error_message)} of GetModelStatus."""
    request = spec(get_model_status_pb2.GetModelStatusRequest(), name, version, label)
    response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    return {v.version: (v.state, v.status.error_code, v.status.error_message) for v in response.model_version_status}


def metadata_version(channel, name, label):
    request = spec(get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"]), name, label=label)
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(request, timeout=30)
    return response.model_spec.version.value


def code_of(call):
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Model m: versions 1, 2, 3 on disk, 1 and 2 served, stable = 1, canary = 2."""
    repo = tmp_path_factory.mktemp("labels") / "repo"
    add_versions(repo / "m", [1, 2, 3])
    (repo / "m" / "config.toml").write_text(
        'version_policy = { specific = [1, 2] }\n[labels]\nstable = 1\ncanary = 2\n')
    server = Server(repo)
    with grpc.insecure_channel(server.grpc) as channel:
        yield channel
    server.stop()


@pytest.mark.parametrize("label, version", [("stable", 1), ("canary", 2)])
def test_predict_by_label(labelled, label, version):
    assert predict(labelled, "m", label=label) == (version, answer(version))
    assert metadata_version(labelled, "m", label) == version


def test_predict_without_label_or_by_number(labelled):
    assert predict(labelled, "m") == (2, answer(2))
    assert predict(labelled, "m", version=1) == (1, answer(1))
    code, details = code_of(lambda: predict(labelled, "m", version=3))
    assert code == grpc.StatusCode.NOT_FOUND, details


def test_status_by_label(labelled):
    assert status(labelled, "m", label="stable") == {1: (AVAILABLE, 0, "")}
    assert status(labelled, "m", label="canary") == {2: (AVAILABLE, 0, "")}
    assert status(labelled, "m") == {1: (AVAILABLE, 0, ""), 2: (AVAILABLE, 0, "")}


def test_unknown_label(labelled):
    for call in (lambda: predict(labelled, "m", label="nope"), lambda: status(labelled, "m", label="nope"),
                 lambda: metadata_version(labelled, "m", "nope")):
        code, details = code_of(call)
        assert code == UNKNOWN_LABEL, details
        assert "nope" in details
    for call in (lambda: predict(labelled, "other", label="stable"),
                 lambda: status(labelled, "other", label="stable")):
        code, details = code_of(call)
        assert code == grpc.StatusCode.NOT_FOUND, details
        assert "other" in details


def model_config(entries):
    """A model_config_list text proto; entries: (name, base_path, policy text, {label: version})."""
    text = "model_config_list {\n"
    for name, base_path, policy, labels in entries:
        text += f'  config {{\n    name: "{name}"\n    base_path: "{base_path}"\n    model_platform: "tensorflow"\n'
        if policy:
            text += f"    model_version_policy {{ {policy} }}\n"
        for label, version in labels.items():
            text += f'    version_labels {{ key: "{label}" value: {version} }}\n'
        text += "  }\n"
    return text + "}\n"


def write_atomic(path, text):
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    os.replace(staging, path)


def test_model_config_file(tmp_path):
    models = tmp_path / "models"
    add_versions(models / "resnet", [1, 2, 3])
    add_versions(models / "other", [4, 5])
    # A config.toml beside the versions: the config file's policy and labels win over its own.
    (models / "resnet" / "config.toml").write_text('version_policy = "all"\n[labels]\nstable = 3\n')
    config = tmp_path / "conf" / "models.config"
    config.parent.mkdir()
    config.write_text(model_config([
        ("resnet", models / "resnet", "specific { versions: 1 versions: 2 }", {"stable": 1, "canary": 2}),
        ("other", "../models/other", None, {}),  # relative to the config file; latest version
    ]))
    server = Server(None, "--model-config-file", str(config), "--repository-poll-secs", "0.2")
    try:
        with grpc.insecure_channel(server.grpc) as channel:
            assert status(channel, "resnet") == {1: (AVAILABLE, 0, ""), 2: (AVAILABLE, 0, "")}
            assert predict(channel, "resnet", label="stable") == (1, answer(1))
            assert predict(channel, "resnet", label="canary") == (2, answer(2))
            assert status(channel, "resnet", label="stable") == {1: (AVAILABLE, 0, "")}
            assert predict(channel, "resnet") == (2, answer(2))
            code, details = code_of(lambda: predict(channel, "resnet", version=3))
            assert code == grpc.StatusCode.NOT_FOUND, details
            assert status(channel, "other") == {5: (AVAILABLE, 0, "")}
            assert predict(channel, "other") == (5, answer(5))
            code, details = code_of(lambda: predict(channel, "other", label="stable"))
            assert code == UNKNOWN_LABEL, details

            # The file is read again at every poll: serve version 3 too and move stable to it.
            write_atomic(config, model_config([
                ("resnet", models / "resnet", "specific { versions: 2 versions: 3 }", {"stable": 3, "canary": 2}),
            ]))
            wait_until(lambda: status(channel, "resnet").get(3, (None,))[0] == AVAILABLE, "version 3")
            wait_until(lambda: predict(channel, "resnet", label="stable") == (3, answer(3)), "stable to move to 3")
            wait_until(lambda: status(channel, "resnet").get(1, (None,))[0] == END, "version 1 to end")
            assert predict(channel, "resnet", label="canary") == (2, answer(2))
            # "other" left the file: it is unloaded.
            wait_until(lambda: status(channel, "other")[5][0] == END, "other to be unloaded")
            code, details = code_of(lambda: predict(channel, "other"))
            assert code == grpc.StatusCode.NOT_FOUND, details
    finally:
        server.stop()
    log = "".join(server.log)
    assert "ERROR" not in log, log


def test_model_config_file_errors(tmp_path):
    """A model config file that cannot be read stops the server at start, with a reason."""
    import subprocess

    from conftest import ROOT
    binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
    config = tmp_path / "models.config"
    for text, fragment in [
        ('model_config_list { config { name: "m" base_path: "/x" bogus: 1 } }', "bogus"),
        ('model_config_list { config { name: "m" } }', "base_path"),
        ("model_config_list {", ""),
    ]:
        config.write_text(text)
        result = subprocess.run([binary, "serve", "--host", "127.0.0.1", "--rest-port", "0", "--grpc-port", "0",
                                 "--model-config-file", str(config)],
                                capture_output=True, text=True, timeout=60, env=dict(os.environ, NO_COLOR="1"))
        assert result.returncode != 0, (text, result.stderr)
        assert fragment in result.stderr, (text, result.stderr)
        assert "listening" not in result.stderr
    # It is one or the other.
    config.write_text("model_config_list { }")
    result = subprocess.run([binary, "serve", "--model-config-file", str(config), "--model-repository", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--model-repository" in result.stderr, result.stderr
