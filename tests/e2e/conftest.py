"""Starts the real `quiver` binary for the end-to-end tests.

QUIVER_BIN names the binary (scripts/test.sh passes the one `cargo test` built);
QUIVER_SHARED_MODELS the shared real models (default ../shared/models beside the workspace);
QUIVER_ONNXRUNTIME_LIB ONNX Runtime's library, which only servers started with
`onnxruntime=True` see: the others run as the README's command does, on tract.
"""
import os
import pathlib
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
REST_READY = "REST API listening on "  # then http:// or https://, HOST:PORT
FIXTURE_MODELS = ROOT / "crates" / "test-support" / "fixtures" / "models"
GRPC_READY = "gRPC API listening on "


class Server:
    def __init__(self, repository, *args, onnxruntime=False, env=None, script=None, rest_port=0,
                 grpc_port=0):
        """`repository` None leaves --model-repository out (for --model-config-file); `env`
        adds to the environment the server inherits; `script` starts the server through a
        script of the project's that takes `quiver serve`'s flags and QUIVER_BIN (such as
        scripts/serve-example.sh) instead of the binary itself; `rest_port` and `grpc_port` (0:
        any free port) to start again on a stopped server's ports."""
        env_arg = env
        binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
        if not os.path.exists(binary):
            pytest.fail(f"no quiver binary at {binary}: build it (cargo build) or set QUIVER_BIN")
        launcher = [str(script)] if script else [binary, "serve"]
        command = [*launcher, "--host", "127.0.0.1", "--rest-port", str(rest_port),
                   "--grpc-port", str(grpc_port),
                   *([] if repository is None else ["--model-repository", str(repository)]), *args]
        env = dict(os.environ, NO_COLOR="1", QUIVER_BIN=binary, **(env or {}))
        # Its own data directory (the default metadata store lives there) unless the test gave
        # one: servers of different tests never share policies or labels.
        self._data_dir = None
        if "QUIVER_DATA_DIR" not in (env_arg or {}) and not any(
                a in ("--data-dir", "--metadata-store") for a in args):
            self._data_dir = tempfile.TemporaryDirectory(prefix="quiver-data-")
            env["QUIVER_DATA_DIR"] = self._data_dir.name
        if not onnxruntime:
            env.pop("QUIVER_ONNXRUNTIME_LIB", None)
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                        text=True, env=env)
        self.log = []
        ready = threading.Event()
        self.url = None  # http://HOST:PORT (https:// with TLS) of the REST API
        self.grpc = None  # HOST:PORT of the gRPC services

        def pump():
            for line in self.process.stderr:
                self.log.append(line)
                if self.url is None and REST_READY in line:
                    self.url = line.split(REST_READY, 1)[1].strip()
                if self.grpc is None and GRPC_READY in line:
                    self.grpc = line.split(GRPC_READY, 1)[1].strip()
                if self.url and self.grpc:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, daemon=True).start()
        ready.wait(timeout=120)
        if self.url is None or self.grpc is None:
            self.stop()
            pytest.fail("the server did not start:\n" + "".join(self.log))

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._data_dir is not None:
            self._data_dir.cleanup()
            self._data_dir = None


def wait_until(predicate, what, timeout=15.0, every=0.05):
    """Polls `predicate` until it returns something true, and returns that; fails the test
    naming `what` (or what `what()` returns then) after `timeout` seconds. For waiting on a
    condition instead of sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(every)


# QUIVER_LOG for a server whose test counts its repository polls (see wait_for_polls).
POLL_LOG = {"QUIVER_LOG": "info,ort=warn,quiver::poll=debug"}


def wait_for_polls(server, n, timeout=15.0):
    """Waits until a server started with env=POLL_LOG has run `n` whole polls of its repository
    since the call, so that anything changed before the call has been seen `n` times. (n + 1
    polls end: the first may have begun before the call.)"""
    def polls():
        return sum("repository polled" in line for line in list(server.log))

    target = polls() + n + 1
    wait_until(lambda: polls() >= target, f"{n} repository polls", timeout=timeout)


def half_plus_model(n):
    """half_plus_two's ONNX file changed to compute 0.5 * x + n (its constant 2.0 replaced), so
    that versions of one model tell themselves apart by their answers."""
    data = (FIXTURE_MODELS / "half_plus_two" / "1" / "model.onnx").read_bytes()
    two = struct.pack("<f", 2.0)
    assert data.count(two) == 1, "half_plus_two's model file no longer holds one float 2.0"
    return data.replace(two, struct.pack("<f", float(n)))


@pytest.fixture(scope="session")
def examples_server():
    """The server on the example repository, as the README runs it."""
    server = Server(ROOT / "examples" / "models")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fixtures_server():
    """The server on the tiny fixture models (exact answers)."""
    server = Server(ROOT / "crates" / "test-support" / "fixtures" / "models")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def onnxruntime_library():
    """ONNX Runtime's library (QUIVER_ONNXRUNTIME_LIB); skips loudly when absent, unless
    QUIVER_REQUIRE_ONNXRUNTIME=1 (as CI sets it)."""
    path = os.environ.get("QUIVER_ONNXRUNTIME_LIB", "")
    if path and os.path.exists(path):
        return path
    message = f"ONNX Runtime's library not found (QUIVER_ONNXRUNTIME_LIB={path!r}); run scripts/fetch-onnxruntime.sh"
    if os.environ.get("QUIVER_REQUIRE_ONNXRUNTIME") == "1":
        pytest.fail(message + "; it is required (QUIVER_REQUIRE_ONNXRUNTIME=1)")
    print(f"\n!!! SKIPPED: {message} !!!\n", file=sys.stderr)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_models():
    path = pathlib.Path(os.environ.get("QUIVER_SHARED_MODELS", ROOT.parent / "shared" / "models"))
    if (path / "README.md").is_file():
        return path
    message = f"shared models not found at {path} (set QUIVER_SHARED_MODELS)"
    if os.environ.get("QUIVER_REQUIRE_SHARED_MODELS") == "1":
        pytest.fail(message + "; they are required (QUIVER_REQUIRE_SHARED_MODELS=1)")
    print(f"\n!!! SKIPPED: {message} !!!\n", file=sys.stderr)
    pytest.skip(message)
