"""Request ids, access lines and metrics for KServe V2 gRPC calls (the HTTP side is tested in
crates/quiver/tests/e2e/observability.rs): the id a client sends comes back as response metadata and
appears in the call's log lines; the exposition counts the calls under protocol="kserve_grpc"."""
import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import ROOT, Server, wait_until


@pytest.fixture(scope="module")
def server():
    server = Server(ROOT / "crates" / "test-support" / "fixtures" / "models", "--access-log", "true")
    yield server
    server.stop()


def log_line(server, needle):
    """The first access line holding `needle`, once the server's log writer has written it."""
    return wait_until(lambda: next((line for line in list(server.log)
                                    if needle in line and "quiver::access" in line), None),
                      lambda: f"an access line with {needle}:\n" + "".join(server.log), timeout=5)


def test_grpc_calls_carry_request_ids_into_logs_and_metrics(server):
    client = grpcclient.InferenceServerClient(server.grpc)
    x = np.array([[1, 2, 3]], dtype=np.float32)
    i = grpcclient.InferInput("x", list(x.shape), "FP32")
    i.set_data_from_numpy(x)
    for n in range(2):
        result = client.infer("half_plus_two", [i], headers={"x-request-id": f"grpc-call-{n}"})
        np.testing.assert_array_equal(result.as_numpy("y"), 0.5 * x + 2)
    with pytest.raises(InferenceServerException):
        client.infer("nope", [i], headers={"x-request-id": "grpc-missing"})

    # The id comes back as response metadata (raw stub: tritonclient does not expose it).
    with grpc.insecure_channel(server.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ServerLive.with_call(service_pb2.ServerLiveRequest(),
                                            metadata=[("x-request-id", "grpc-live")])
        assert ("x-request-id", "grpc-live") in call.initial_metadata()
        _, call = stub.ServerLive.with_call(service_pb2.ServerLiveRequest())
        generated = dict(call.initial_metadata())["x-request-id"]
        assert len(generated) == 36, generated

    ok = log_line(server, "grpc-call-1")
    for part in ['model="half_plus_two"', 'version="1"', "route=/inference.GRPCInferenceService/ModelInfer",
                 "grpc_status=0", "client=127.0.0.1:"]:
        assert part in ok, (part, ok)
    missing = log_line(server, "grpc-missing")
    assert "grpc_status=5" in missing, missing

    text = requests.get(server.url + "/metrics", timeout=10).text
    assert ('quiver_requests_total{model="half_plus_two",version="1",protocol="kserve_grpc",outcome="ok"} 2'
            in text), text
    assert 'quiver_requests_total{model="",version="",protocol="kserve_grpc",outcome="not_found"} 1' in text
    assert ('quiver_request_size_bytes_count{model="half_plus_two",version="1",protocol="kserve_grpc"} 2'
            in text)
