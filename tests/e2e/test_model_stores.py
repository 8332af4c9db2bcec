"""Model repositories in object stores: a real S3-compatible server (moto, from PyPI, in server
mode on a loopback port) holding the example and fixture repositories, uploaded with boto3,
served by Quiver and asked by real clients; and the same from a WebDAV server (wsgidav, from
PyPI) and from Azure Blob Storage's emulator (Azurite, from npm).
"""
import os
import pathlib
import re
import socket
import subprocess
import sys
import textwrap
import threading

import boto3
import numpy as np
import pytest
import requests
import tritonclient.http as triton

from conftest import (FIXTURE_MODELS, POLL_LOG, ROOT, Server, half_plus_model, wait_for_polls,
                      wait_until)

EXAMPLES = ROOT / "examples" / "models"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}
X = [[1.0, 2.0, 5.0]]

# Starts moto's server on a free loopback port and prints the port.
MOTO = textwrap.dedent("""
    import sys, threading
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()
    server.stop()
""")


class Moto:
    """A moto S3 server in a process of its own; `auth` makes it check credentials."""

    def __init__(self, auth=False):
        env = dict(os.environ)
        if auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        self.process = subprocess.Popen([sys.executable, "-c", MOTO], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True, env=env)
        port = self.process.stdout.readline().strip()
        assert port.isdigit(), "moto did not start"
        self.endpoint = f"http://127.0.0.1:{port}"
        self.client = boto3.client("s3", endpoint_url=self.endpoint, **{
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_REGION"]})

    def env(self, cache):
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint,
                "QUIVER_MODEL_CACHE_DIR": str(cache), **POLL_LOG}

    def bucket(self, name):
        self.client.create_bucket(Bucket=name)
        return name

    def upload(self, bucket, local_dir, prefix):
        """Uploads every file under `local_dir` to `prefix/…`, model files last (as a careful
        publisher does: a version counts once its model.onnx is there)."""
        files = sorted((p for p in pathlib.Path(local_dir).rglob("*") if p.is_file()),
                       key=lambda p: (p.name == "model.onnx", str(p)))
        for path in files:
            key = f"{prefix}/{path.relative_to(local_dir).as_posix()}"
            self.client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    def put(self, bucket, key, body):
        self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def delete_prefix(self, bucket, prefix):
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        for item in listed:
            self.client.delete_object(Bucket=bucket, Key=item["Key"])

    def stop(self):
        self.process.stdin.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def moto():
    server = Moto()
    yield server
    server.stop()


def metric(server, name, **labels):
    """The sum of a metric's samples whose labels include `labels`."""
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        shown = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(shown.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def check_documented_store_metrics(server):
    """Every quiver_store_ metric of docs/metrics.md is exposed, with its type and labels."""
    doc = (ROOT / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `(quiver_store_\w+)` \|([^|]*)\|([^|]*)\|", doc, re.MULTILINE)
    assert len(rows) >= 7, "docs/metrics.md's model-store table was not understood"
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for name, kind, labels in rows:
        assert f"# TYPE {name} {kind.strip()}" in text, f"{name} ({kind.strip()}) not exposed"
        wanted = set(re.findall(r"`(\w+)`", labels))
        samples = [line for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#")]
        assert samples, name
        for line in samples:
            shown = set(re.findall(r'(\w+)="', line.split("{", 1)[1])) if "{" in line else set()
            assert shown - {"le"} == wanted, f"{line}: docs/metrics.md says labels {wanted}"


def predict(server, name, version=None):
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + ":predict"
    response = requests.post(server.url + path, json={"instances": X}, timeout=30)
    return response


def ready(server, name):
    try:
        return requests.get(f"{server.url}/v2/models/{name}/ready", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def index(server):
    return requests.post(f"{server.url}/v2/repository/index", json={}, timeout=10).json()


def v2_half_plus(server, name):
    """The V2 answer of a half_plus model to X, and the version that gave it."""
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X[0]}]}
    response = requests.post(f"{server.url}/v2/models/{name}/infer", json=body, timeout=30)
    response.raise_for_status()
    answer = response.json()
    return answer["outputs"][0]["data"], answer["model_version"]


def test_repositories_in_s3_are_served_to_real_clients(moto, tmp_path):
    bucket = moto.bucket("served")
    moto.upload(bucket, EXAMPLES, "prod/models")
    moto.upload(bucket, FIXTURE_MODELS / "half_plus_two", "prod/models/half_plus_two")
    moto.upload(bucket, FIXTURE_MODELS / "dense", "prod/models/dense")
    server = Server(f"s3://{bucket}/prod/models", env=moto.env(tmp_path / "cache"))
    try:
        wait_until(lambda: ready(server, "mobilenet_v2") and ready(server, "half_plus_two"),
                   lambda: "models ready:\n" + "".join(server.log), timeout=120)
        # TF Serving REST, exact answers.
        assert predict(server, "half_plus_two").json() == {"predictions": [[2.5, 3.0, 4.5]]}
        # KServe V2 through tritonclient.
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        x = np.linspace(-1, 1, 64, dtype=np.float32).reshape(1, 64)
        infer_input = triton.InferInput("x", [1, 64], "FP32")
        infer_input.set_data_from_numpy(x)
        probs = client.infer("dense", [infer_input]).as_numpy("probs")
        assert probs.shape == (1, 10) and abs(float(probs.sum()) - 1.0) < 1e-4
        # The README's client, on the example model from S3 (its config, labels and model).
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "client" / "predict_image.py"),
             str(ROOT / "examples" / "images" / "chelsea.png"), "--server", server.url],
            capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].startswith("Egyptian cat\t"), result.stdout
        # Downloads are counted; the store's URL is the label, with no credentials in it.
        store = f"s3://{bucket}/prod/models"
        assert metric(server, "quiver_store_downloads_total", store=store, outcome="ok") == 3
        assert metric(server, "quiver_store_download_bytes_total", store=store) > 10_000_000
        assert "testing" not in "".join(server.log)
        check_documented_store_metrics(server)
    finally:
        server.stop()


def test_versions_come_and_go_with_the_store(moto, tmp_path):
    bucket = moto.bucket("versions")
    moto.put(bucket, "repo/half/1/model.onnx", half_plus_model(2))
    server = Server(f"s3://{bucket}/repo", "--repository-poll-secs", "0.2",
                    env=moto.env(tmp_path / "cache"))
    try:
        wait_until(lambda: ready(server, "half"), "half ready")
        assert v2_half_plus(server, "half") == ([2.5, 3.0, 4.5], "1")
        # A new version uploaded is served within a poll or two.
        moto.put(bucket, "repo/half/2/model.onnx", half_plus_model(7))
        wait_until(lambda: v2_half_plus(server, "half")[1] == "2",
                   lambda: "version 2:\n" + "".join(server.log))
        assert v2_half_plus(server, "half") == ([7.5, 8.0, 9.5], "2")
        # A corrupt upload: that version fails, the one serving keeps serving.
        moto.put(bucket, "repo/half/3/model.onnx", b"not an onnx model")
        wait_until(lambda: {row.get("version"): row for row in index(server)
                            if row["name"] == "half"}.get("3", {}).get("state") == "UNAVAILABLE",
                   lambda: f"version 3 failed: {index(server)}")
        rows = {row.get("version"): row for row in index(server) if row["name"] == "half"}
        assert "model" in rows["3"]["reason"].lower() or "onnx" in rows["3"]["reason"].lower(), rows
        assert v2_half_plus(server, "half") == ([7.5, 8.0, 9.5], "2")
        # Deleted from the store: retired, and the version before serves again (from the
        # cache: nothing downloaded for it).
        downloads = metric(server, "quiver_store_downloads_total", outcome="ok")
        moto.delete_prefix(bucket, "repo/half/3/")
        moto.delete_prefix(bucket, "repo/half/2/")
        wait_until(lambda: v2_half_plus(server, "half")[1] == "1",
                   lambda: "back to version 1:\n" + "".join(server.log))
        assert v2_half_plus(server, "half") == ([2.5, 3.0, 4.5], "1")
        assert metric(server, "quiver_store_downloads_total", outcome="ok") == downloads
        assert not list((tmp_path / "cache").glob("*/half/2")), "a deleted version left the cache"
    finally:
        server.stop()


def test_a_model_is_a_whole_folder_not_a_prefix(moto, tmp_path):
    bucket = moto.bucket("prefixes")
    moto.put(bucket, "repo/resnet/1/model.onnx", half_plus_model(2))
    moto.put(bucket, "repo/resnet50/1/model.onnx", half_plus_model(50))
    moto.put(bucket, "repo/resnet50/7/model.onnx", half_plus_model(57))
    server = Server(f"s3://{bucket}/repo", env=moto.env(tmp_path / "cache"))
    try:
        wait_until(lambda: ready(server, "resnet") and ready(server, "resnet50"), "both ready")
        versions = sorted((row["name"], row.get("version")) for row in index(server))
        assert versions == [("resnet", "1"), ("resnet50", "7")], versions
        assert v2_half_plus(server, "resnet") == ([2.5, 3.0, 4.5], "1")
    finally:
        server.stop()
    # TF Serving's model config file, with the model's base path in the store: only its own
    # folder, not the one whose name it prefixes.
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "resnet" '
                      f'base_path: "s3://{bucket}/repo/resnet" '
                      'model_version_policy { all {} } } }')
    server = Server(None, "--model-config-file", str(config), env=moto.env(tmp_path / "cache2"))
    try:
        wait_until(lambda: ready(server, "resnet"), "resnet ready")
        assert [row.get("version") for row in index(server)] == ["1"]
        assert predict(server, "resnet").json() == {"predictions": [[2.5, 3.0, 4.5]]}
    finally:
        server.stop()


def test_a_restart_loads_from_the_cache_without_downloading(moto, tmp_path):
    bucket = moto.bucket("restart")
    moto.upload(bucket, EXAMPLES, "repo")
    moto.upload(bucket, FIXTURE_MODELS / "half_plus_two", "repo/half_plus_two")
    cache = tmp_path / "cache"
    for run, downloads in enumerate([2, 0]):
        server = Server(f"s3://{bucket}/repo", env=moto.env(cache))
        try:
            wait_until(lambda: ready(server, "mobilenet_v2") and ready(server, "half_plus_two"),
                       lambda: "models ready:\n" + "".join(server.log), timeout=120)
            assert metric(server, "quiver_store_downloads_total", outcome="ok") == downloads, run
            assert metric(server, "quiver_store_cache_hits_total") == 2 - downloads, run
            assert predict(server, "half_plus_two").json() == {"predictions": [[2.5, 3.0, 4.5]]}
        finally:
            server.stop()


def test_a_bounded_cache_keeps_what_serves(moto, tmp_path):
    bucket = moto.bucket("bounded")
    size = len(half_plus_model(2))
    for version in (1, 2, 3):
        moto.put(bucket, f"repo/half/{version}/model.onnx", half_plus_model(version))
    cache = tmp_path / "cache"
    # Room for two versions: serving `all` of them needs three, and all three stay.
    config = "version_policy = \"all\"\n"
    moto.put(bucket, "repo/half/config.toml", config.encode())
    server = Server(f"s3://{bucket}/repo", "--repository-poll-secs", "0.2",
                    "--model-cache-max-bytes", str(2 * size + size // 2),
                    env=moto.env(cache))
    try:
        wait_until(lambda: len([r for r in index(server) if r.get("state") == "READY"]) == 3,
                   lambda: f"3 versions ready: {index(server)}")
        assert sorted(p.name for p in cache.glob("*/half/[0-9]*")) == ["1", "2", "3"]
        # Only the latest served now: over the bound, an unused version goes (the least
        # recently used; equally recent ones by name), the served one stays.
        moto.put(bucket, "repo/half/config.toml", b"version_policy = { latest = 1 }\n")
        wait_until(lambda: sorted(p.name for p in cache.glob("*/half/[0-9]*")) == ["2", "3"],
                   lambda: f"cache trimmed: {sorted(p.name for p in cache.glob('*/half/*'))}")
        assert metric(server, "quiver_store_cache_evictions_total") == 1
        assert v2_half_plus(server, "half") == ([3.5, 4.0, 5.5], "3")
    finally:
        server.stop()


def test_wrong_credentials_are_a_clear_error(tmp_path):
    guarded = Moto(auth=True)
    try:
        env = {**guarded.env(tmp_path / "cache"), "AWS_ACCESS_KEY_ID": "wrong"}
        binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
        result = subprocess.run(
            [binary, "serve", "--host", "127.0.0.1", "--rest-port", "0", "--grpc-port", "0",
             "--model-repository", "s3://guarded/models"],
            env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode != 0
        assert "model store s3://guarded/models" in result.stderr, result.stderr
        assert "403" in result.stderr or "InvalidAccessKeyId" in result.stderr, result.stderr
        assert "panicked" not in result.stderr, result.stderr
        assert "testing" not in result.stderr, "a secret was logged"
    finally:
        guarded.stop()


def test_a_webdav_server_is_a_store(tmp_path):
    """object_store's HTTP store lists with WebDAV (PROPFIND): wsgidav, from PyPI."""
    root = tmp_path / "dav"
    (root / "repo" / "half" / "1").mkdir(parents=True)
    (root / "repo" / "half" / "1" / "model.onnx").write_bytes(half_plus_model(2))
    # wsgidav takes port 0 for "the default", so a free port is found for it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wsgidav = pathlib.Path(sys.executable).parent / "wsgidav"
    dav = subprocess.Popen(
        [str(wsgidav), "--host", "127.0.0.1", "--port", str(port), "--root", str(root),
         "--auth", "anonymous", "--no-config"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in dav.stdout:
            if "Serving on" in line:
                break
        else:
            pytest.fail("wsgidav did not start")
        threading.Thread(target=dav.stdout.read, daemon=True).start()
        server = Server(f"http://127.0.0.1:{port}/repo", "--repository-poll-secs", "0.2",
                        env={"QUIVER_MODEL_CACHE_DIR": str(tmp_path / "cache"), **POLL_LOG})
        try:
            wait_until(lambda: ready(server, "half"), lambda: "half ready:\n" + "".join(server.log))
            assert v2_half_plus(server, "half") == ([2.5, 3.0, 4.5], "1")
            (root / "repo" / "half" / "2").mkdir()
            (root / "repo" / "half" / "2" / "model.onnx").write_bytes(half_plus_model(4))
            wait_until(lambda: v2_half_plus(server, "half")[1] == "2", "version 2 from WebDAV")
            assert v2_half_plus(server, "half") == ([4.5, 5.0, 6.5], "2")
        finally:
            server.stop()
    finally:
        dav.terminate()
        dav.wait(timeout=30)


AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")  # Azurite's published development account key


def azurite_binary():
    """Azurite's blob service (npm's `azurite`, which scripts/test.sh installs into
    target/azurite); skips loudly when absent, unless QUIVER_REQUIRE_AZURITE=1 (as CI sets)."""
    path = pathlib.Path(os.environ.get(
        "QUIVER_AZURITE", ROOT / "target" / "azurite" / "node_modules" / ".bin" / "azurite-blob"))
    if path.exists():
        return path
    message = f"Azurite not found at {path}: npm install --prefix target/azurite azurite"
    if os.environ.get("QUIVER_REQUIRE_AZURITE") == "1":
        pytest.fail(message + "; it is required (QUIVER_REQUIRE_AZURITE=1)")
    print(f"\n!!! SKIPPED: {message} !!!\n", file=sys.stderr)
    pytest.skip(message)


def test_azure_blob_storage_through_azurite(tmp_path):
    from azure.storage.blob import BlobServiceClient

    binary = azurite_binary()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    azurite = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
         "--location", str(tmp_path / "azurite"), "--silent", "--skipApiVersionCheck", "--loose"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = BlobServiceClient.from_connection_string(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint}/devstoreaccount1;")

        def container():
            try:
                return client.create_container("models")
            except Exception:  # noqa: BLE001 - not listening yet
                return None

        models = wait_until(container, "Azurite up")
        models.upload_blob("repo/half/1/model.onnx", half_plus_model(2))
        models.upload_blob("repo/half50/1/model.onnx", half_plus_model(50))
        env = {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": endpoint,
               "QUIVER_MODEL_CACHE_DIR": str(tmp_path / "cache"), **POLL_LOG}
        server = Server("az://models/repo", "--repository-poll-secs", "0.2", env=env)
        try:
            wait_until(lambda: ready(server, "half") and ready(server, "half50"),
                       lambda: "models ready:\n" + "".join(server.log))
            assert v2_half_plus(server, "half") == ([2.5, 3.0, 4.5], "1")
            assert v2_half_plus(server, "half50") == ([50.5, 51.0, 52.5], "1")
            models.upload_blob("repo/half/2/model.onnx", half_plus_model(4))
            wait_until(lambda: v2_half_plus(server, "half")[1] == "2", "version 2 from Azure")
            assert v2_half_plus(server, "half") == ([4.5, 5.0, 6.5], "2")
        finally:
            server.stop()
    finally:
        # Azurite takes half a minute to stop on SIGTERM; its data is a temporary directory.
        azurite.kill()
        azurite.wait(timeout=30)
