"""What a replica behind a load balancer tells its clients and its autoscaler: which replica
answered (`x-quiver-replica`, `--replica-id`) and which model version did
(`x-quiver-model-version`), over HTTP (TF Serving REST and KServe V2) and gRPC; and the load
signal to scale on."""
import threading
import time

import grpc
import requests
from tritonclient.grpc import service_pb2

from conftest import FIXTURE_MODELS, ROOT, Server, half_plus_model, wait_until

X = [[1.0, 2.0, 5.0]]


def grpc_infer_metadata(server, model, version=""):
    """The response metadata of a KServe V2 gRPC ModelInfer call."""
    with grpc.insecure_channel(server.grpc) as channel:
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                    request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                    response_deserializer=service_pb2.ModelInferResponse.FromString)
        request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
        x = request.inputs.add(name="x", datatype="FP32", shape=[1, 3])
        x.contents.fp32_contents.extend(X[0])
        _, call = infer.with_call(request)
        return dict(call.initial_metadata())


def test_every_answer_names_its_replica_and_version(tmp_path):
    repository = tmp_path / "models"
    for version, constant in [(1, 2), (2, 7)]:
        (repository / "half" / str(version)).mkdir(parents=True)
        (repository / "half" / str(version) / "model.onnx").write_bytes(half_plus_model(constant))
    (repository / "half" / "config.toml").write_text('version_policy = "all"\n')
    server = Server(repository, "--replica-id", "replica-7")
    try:
        # TF Serving REST: the latest, then a version named.
        latest = requests.post(f"{server.url}/v1/models/half:predict", json={"instances": X}, timeout=30)
        assert latest.json() == {"predictions": [[7.5, 8.0, 9.5]]}
        assert latest.headers["x-quiver-model-version"] == "2"
        assert latest.headers["x-quiver-replica"] == "replica-7"
        pinned = requests.post(f"{server.url}/v1/models/half/versions/1:predict",
                               json={"instances": X}, timeout=30)
        assert pinned.headers["x-quiver-model-version"] == "1"
        # KServe V2 over HTTP: the header agrees with the body's model_version.
        body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X[0]}]}
        v2 = requests.post(f"{server.url}/v2/models/half/versions/1/infer", json=body, timeout=30)
        assert v2.json()["model_version"] == v2.headers["x-quiver-model-version"] == "1"
        # gRPC response metadata.
        metadata = grpc_infer_metadata(server, "half")
        assert metadata["x-quiver-model-version"] == "2"
        assert metadata["x-quiver-replica"] == "replica-7"
        assert grpc_infer_metadata(server, "half", "1")["x-quiver-model-version"] == "1"
        # What no version answered has no version header, and still names the replica.
        missing = requests.post(f"{server.url}/v1/models/nope:predict", json={"instances": X}, timeout=30)
        assert missing.status_code == 404
        assert "x-quiver-model-version" not in missing.headers
        assert missing.headers["x-quiver-replica"] == "replica-7"
        ready = requests.get(f"{server.url}/v2/health/ready", timeout=10)
        assert ready.headers["x-quiver-replica"] == "replica-7"
        # The metrics name the replica too.
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert 'quiver_build_info{version="' in metrics and 'replica="replica-7"' in metrics
    finally:
        server.stop()


def test_the_replica_defaults_to_the_host_name():
    server = Server(FIXTURE_MODELS)
    try:
        with open("/proc/sys/kernel/hostname") as f:
            host = f.read().strip()
        answer = requests.get(f"{server.url}/v2/health/live", timeout=10)
        assert answer.headers["x-quiver-replica"] == host
    finally:
        server.stop()


def inflight(server):
    for line in requests.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("quiver_server_inflight_requests "):
            return float(line.split()[1])
    return None


def test_the_autoscaling_signal_follows_the_load(tmp_path):
    """quiver_server_inflight_requests, what a HorizontalPodAutoscaler scales on, rises with the
    offered load in steps and falls back to 0 when it stops."""
    slow = ROOT / "crates" / "test-support" / "fixtures" / "conformance" / "slow.onnx"
    (tmp_path / "slow" / "1").mkdir(parents=True)
    (tmp_path / "slow" / "1" / "model.onnx").write_bytes(slow.read_bytes())
    (tmp_path / "slow" / "config.toml").write_text('engine = "tract"\n')
    server = Server(tmp_path, "--intra-op-threads", "1")
    body = {"instances": [[0.1] * 256]}
    stop = threading.Event()

    def client():
        session = requests.Session()
        while not stop.is_set():
            session.post(f"{server.url}/v1/models/slow:predict", json=body, timeout=30)

    try:
        assert inflight(server) == 0
        means, threads = [], []
        for clients in (1, 3, 6):
            while len(threads) < clients:
                threads.append(threading.Thread(target=client, daemon=True))
                threads[-1].start()
            time.sleep(0.5)  # the step settles
            samples = []
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                samples.append(inflight(server))
                time.sleep(0.02)
            means.append(sum(samples) / len(samples))
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        print(f"\nmean in flight at 1, 3, 6 clients: {means}")
        assert means[0] < means[1] < means[2], means
        assert means[2] > 3, means
        wait_until(lambda: inflight(server) == 0, "the signal back at 0")
    finally:
        stop.set()
        server.stop()
