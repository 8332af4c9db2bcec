"""Request-rate limits per client (`--rate-limit`, `--rate-limit-burst`; docs/security.md): a
client gets its burst, then 429 with Retry-After (RESOURCE_EXHAUSTED with `retry-after` metadata
over gRPC) until its allowance comes back; health checks are exempt; with tokens each token has
an allowance of its own."""
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURE_MODELS, Server

TIMEOUT = 30
BODY = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}


def infer(server, headers=None):
    return requests.post(f"{server.url}/v2/models/half_plus_two/infer", json=BODY, headers=headers or {},
                         timeout=TIMEOUT)


def test_a_client_gets_its_burst_then_429_then_recovers(tmp_path):
    # 1 a second, 5 at once: the test's requests come far faster than one a second.
    server = Server(FIXTURE_MODELS, "--rate-limit", "1", "--rate-limit-burst", "5")
    try:
        codes = [infer(server).status_code for _ in range(5)]
        assert codes == [200] * 5
        refused = infer(server)
        assert refused.status_code == 429, refused.text
        retry = int(refused.headers["retry-after"])
        assert 1 <= retry <= 2
        assert "rate-limit" in refused.json()["error"]
        # Probes are never limited.
        assert all(requests.get(f"{server.url}/v2/health/ready", timeout=TIMEOUT).status_code == 200
                   for _ in range(20))
        # The same client over gRPC shares the allowance (it is keyed by address).
        with grpcclient.InferenceServerClient(server.grpc) as triton:
            x = grpcclient.InferInput("x", [1, 3], "FP32")
            x.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
            with pytest.raises(InferenceServerException) as raised:
                triton.infer("half_plus_two", [x])
            assert raised.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        time.sleep(retry)
        assert infer(server).status_code == 200
    finally:
        server.stop()


def test_each_token_has_its_own_allowance(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("token-a infer a\ntoken-b infer b\n")
    server = Server(FIXTURE_MODELS, "--rate-limit", "1", "--rate-limit-burst", "3",
                    "--auth-tokens-file", str(tokens))
    try:
        a, b = {"Authorization": "Bearer token-a"}, {"Authorization": "Bearer token-b"}
        assert [infer(server, a).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert [infer(server, b).status_code for _ in range(3)] == [200, 200, 200]
        # A request refused for its token is not counted against anyone.
        assert infer(server).status_code == 401
    finally:
        server.stop()
