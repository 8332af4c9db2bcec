"""Tokens with scopes (`--auth-tokens-file`, docs/security.md): every route and RPC family with no
token, a token lacking the scope and the right token — 401 / UNAUTHENTICATED, 403 /
PERMISSION_DENIED and success — through requests and tritonclient (HTTP and gRPC); health checks
stay open; a changed file is read again; the access log names the token, never its secret."""
import os
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURE_MODELS, Server, wait_until

TOKENS = "# token scopes name\ninfer-s3cret infer app\nadmin-s3cret admin ops\nmetrics-s3cret metrics prom\n"
SECRET_OF = {"infer": "infer-s3cret", "admin": "admin-s3cret", "metrics": "metrics-s3cret"}
TIMEOUT = 30


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(TOKENS)
    return path


@pytest.fixture(scope="module")
def server(tokens_file):
    server = Server(FIXTURE_MODELS, "--auth-tokens-file", str(tokens_file), "--access-log", "true")
    yield server
    server.stop()


def bearer(scope):
    return {"Authorization": f"Bearer {SECRET_OF[scope]}"} if scope else {}


def metadata(scope):
    """The token as gRPC metadata (keys are lower-case there)."""
    return {"authorization": f"Bearer {SECRET_OF[scope]}"}


V2_BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
# (method, path, body, scope it needs)
ROUTES = [
    ("POST", "/v2/models/half_plus_two/infer", V2_BODY, "infer"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [[1, 2, 3]]}, "infer"),
    ("GET", "/v2/models/half_plus_two", None, "infer"),
    ("GET", "/v1/models/half_plus_two", None, "infer"),
    ("POST", "/v2/repository/index", {}, "admin"),
    ("GET", "/metrics", None, "metrics"),
]


def call(server, method, path, body, scope):
    return requests.request(method, server.url + path, json=body, headers=bearer(scope), timeout=TIMEOUT)


@pytest.mark.parametrize("method,path,body,needs", ROUTES, ids=[r[1] for r in ROUTES])
def test_http_routes_need_their_scope(server, method, path, body, needs):
    missing = call(server, method, path, body, None)
    assert missing.status_code == 401, missing.text
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "token" in missing.json()["error"]
    wrong = {"infer": "admin", "admin": "metrics", "metrics": "infer"}[needs]
    forbidden = call(server, method, path, body, wrong)
    assert forbidden.status_code == 403, forbidden.text
    assert needs in forbidden.json()["error"]
    unknown = requests.request(method, server.url + path, json=body, timeout=TIMEOUT,
                               headers={"Authorization": "Bearer not-a-token"})
    assert unknown.status_code == 401
    allowed = call(server, method, path, body, needs)
    assert allowed.status_code == 200, allowed.text


def test_health_checks_stay_open(server):
    for path in ("/v2/health/ready", "/v2/health/live"):
        assert requests.get(server.url + path, timeout=TIMEOUT).status_code == 200
    with grpcclient.InferenceServerClient(server.grpc) as triton:
        assert triton.is_server_ready() and triton.is_server_live()


def infer_grpc(server, headers):
    with grpcclient.InferenceServerClient(server.grpc) as triton:
        x = grpcclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
        return triton.infer("half_plus_two", [x], headers=headers).as_numpy("y")


def grpc_status(call):
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status()


def test_grpc_methods_need_their_scope(server):
    assert "UNAUTHENTICATED" in grpc_status(lambda: infer_grpc(server, {}))
    assert "PERMISSION_DENIED" in grpc_status(lambda: infer_grpc(server, metadata("metrics")))
    assert infer_grpc(server, metadata("infer")).tolist() == [[2.5, 3.0, 3.5]]

    def index(headers):
        with grpcclient.InferenceServerClient(server.grpc) as triton:
            return triton.get_model_repository_index(headers=headers)

    assert "UNAUTHENTICATED" in grpc_status(lambda: index({}))
    assert "PERMISSION_DENIED" in grpc_status(lambda: index(metadata("infer")))
    assert index(metadata("admin")).models


def test_tritonclient_http_sends_the_token(server):
    with httpclient.InferenceServerClient(server.url.removeprefix("http://")) as triton:
        x = httpclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
        with pytest.raises(InferenceServerException) as raised:
            triton.infer("half_plus_two", [x])
        assert "401" in str(raised.value.status()) or "token" in str(raised.value)
        result = triton.infer("half_plus_two", [x], headers=bearer("infer"))
        assert result.as_numpy("y").tolist() == [[2.5, 3.0, 3.5]]


def test_the_access_log_names_the_token_never_the_secret(server):
    call(server, "POST", "/v2/models/half_plus_two/infer", V2_BODY, "infer")
    wait_until(lambda: any('token="app"' in line or '"token":"app"' in line for line in server.log),
               "an access line naming the token")
    assert not any("s3cret" in line for line in server.log), "a secret reached the log"


def test_a_changed_file_is_read_again(server, tokens_file):
    tokens_file.write_text(TOKENS.replace("infer-s3cret", "rotated-s3cret"))
    # A later modification time, whatever the file system's resolution.
    later = time.time() + 2
    os.utime(tokens_file, (later, later))
    rotated = {"Authorization": "Bearer rotated-s3cret"}
    wait_until(lambda: requests.get(server.url + "/v2/models/half_plus_two", headers=rotated,
                                    timeout=TIMEOUT).status_code == 200, "the new token to work")
    assert call(server, "GET", "/v2/models/half_plus_two", None, "infer").status_code == 401
    # A broken file keeps the tokens in force.
    tokens_file.write_text("broken-line-without-scope\n")
    later += 2
    os.utime(tokens_file, (later, later))
    wait_until(lambda: any("tokens read before stay in force" in line for line in server.log),
               "the broken file to be noticed")
    assert requests.get(server.url + "/v2/models/half_plus_two", headers=rotated,
                        timeout=TIMEOUT).status_code == 200


def test_a_bad_tokens_file_stops_start_up(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("tok write\n")
    with pytest.raises(BaseException) as failed:
        Server(FIXTURE_MODELS, "--auth-tokens-file", str(path))
    assert "unknown scope 'write'" in str(failed.value) and str(path) in str(failed.value)
