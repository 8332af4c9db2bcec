"""`--grpc-max-concurrent-streams` (docs/security.md): one gRPC connection holds at most that many
calls at once; a client opening more waits for one to end. Shown with a model whose batches wait
a second for company: four calls on one connection with room for two take two such seconds
(two batches), where unbounded they would share one."""
import shutil
import struct
import time

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import FIXTURE_MODELS, Server

DELAY_S = 1.0


def request():
    tensor = service_pb2.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 64])
    return service_pb2.ModelInferRequest(model_name="slow", inputs=[tensor],
                                         raw_input_contents=[struct.pack("<64f", *([0.5] * 64))])


def test_a_connection_holds_at_most_its_streams(tmp_path):
    (tmp_path / "slow" / "1").mkdir(parents=True)
    shutil.copy(FIXTURE_MODELS / "dense" / "1" / "model.onnx", tmp_path / "slow" / "1" / "model.onnx")
    (tmp_path / "slow" / "config.toml").write_text(
        f"[batching]\nmax_batch_size = 64\nmax_queue_delay_us = {int(DELAY_S * 1e6)}\n")
    server = Server(tmp_path, "--grpc-max-concurrent-streams", "2")
    try:
        with grpc.insecure_channel(server.grpc) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(request(), timeout=30)  # the connection is up, the model warm
            started = time.monotonic()
            calls = [stub.ModelInfer.future(request(), timeout=30) for _ in range(4)]
            finished = []
            for call in calls:
                assert call.result().model_name == "slow"
                finished.append(time.monotonic() - started)
        # Two streams at a time: the first two share one batch window, the last two the next.
        assert sorted(finished)[1] < 1.8 * DELAY_S, finished
        assert max(finished) >= 1.8 * DELAY_S, finished
        # Another connection is not held up by this one's limit.
        with grpc.insecure_channel(server.grpc) as other:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(other)
            started = time.monotonic()
            calls = [stub.ModelInfer.future(request(), timeout=30) for _ in range(2)]
            for call in calls:
                call.result()
            assert time.monotonic() - started < 1.8 * DELAY_S
    finally:
        server.stop()
