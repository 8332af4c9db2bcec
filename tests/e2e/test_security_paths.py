"""Model names and versions from requests and the repository API never reach outside the model
repository (docs/security.md): `..`, absolute paths, encoded separators and the like, over REST
and gRPC, load nothing and answer 400/404 (INVALID_ARGUMENT/NOT_FOUND) — a model directory beside
the repository stays unloaded."""
import shutil
import urllib.parse

import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURE_MODELS, Server

TIMEOUT = 30
NAMES = ["../outside", "..", "/tmp", "%2e%2e/outside", "..\\outside", "m/../../outside", "./m", "m/1",
         "outside\x00", "*"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    for name in ("repository/m", "outside"):
        (root / name / "1").mkdir(parents=True)
        shutil.copy(FIXTURE_MODELS / "half_plus_two" / "1" / "model.onnx", root / name / "1" / "model.onnx")
    server = Server(root / "repository", "--model-control-mode", "explicit", "--load-model", "m")
    yield server
    server.stop()


def loaded(server):
    rows = requests.post(f"{server.url}/v2/repository/index", json={}, timeout=TIMEOUT).json()
    return sorted({row["name"] for row in rows})


@pytest.mark.parametrize("name", NAMES)
def test_rest_names_never_leave_the_repository(server, name):
    quoted = urllib.parse.quote(name, safe="")
    for method, path, body in [
        ("POST", f"/v2/repository/models/{quoted}/load", {}),
        ("POST", f"/v2/repository/models/{quoted}/unload", {}),
        ("POST", f"/v2/models/{quoted}/infer", {"inputs": []}),
        ("GET", f"/v2/models/{quoted}", None),
        ("POST", f"/v1/models/{quoted}:predict", {"instances": [[1, 2, 3]]}),
        ("GET", f"/v1/models/{quoted}/versions/1", None),
    ]:
        answer = requests.request(method, server.url + path, json=body, timeout=TIMEOUT)
        assert answer.status_code in (400, 404), (method, path, answer.status_code, answer.text)
        assert "error" in answer.json()
    assert loaded(server) == ["m"]


@pytest.mark.parametrize("name", NAMES)
def test_grpc_names_never_leave_the_repository(server, name):
    with grpcclient.InferenceServerClient(server.grpc) as triton:
        with pytest.raises(InferenceServerException) as raised:
            triton.load_model(name)
        assert raised.value.status() in ("StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT"), raised.value
        with pytest.raises(InferenceServerException):
            triton.get_model_metadata(name)
    assert loaded(server) == ["m"]


def test_a_version_is_a_number_and_nothing_else(server):
    for version in ["../1", "1/../../outside", "-1", "0", "1e3", "%2e%2e"]:
        quoted = urllib.parse.quote(version, safe="")
        answer = requests.post(f"{server.url}/v2/models/m/versions/{quoted}/infer", json={"inputs": []},
                               timeout=TIMEOUT)
        assert answer.status_code in (400, 404), (version, answer.text)
    ok = requests.post(f"{server.url}/v2/models/m/versions/1/infer", timeout=TIMEOUT,
                       json={"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    assert ok.status_code == 200, ok.text
