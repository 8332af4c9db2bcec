"""Model lifecycle end to end: version policies, labels, the control modes and Triton's
repository API (tritonclient.http and tritonclient.grpc), corrupt versions, warm-up, roll-over,
readiness and the drain on SIGTERM.

Every version of a test model is half_plus_two's file with its constant changed, so that
version N answers 0.5 * x + N: which version served a request shows in the numbers themselves,
TF Serving REST included (its predict response names no version).
"""
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import FIXTURE_MODELS, POLL_LOG, ROOT, Server, half_plus_model, wait_for_polls, wait_until

X = [0.0, 2.0, 4.0]  # version N answers [N, N + 1, N + 2]


def answer(version):
    return [0.5 * x + version for x in X]


@pytest.fixture
def start():
    """Starts servers; stops them at the end of the test (their logs are printed, which pytest
    shows when the test fails)."""
    servers = []

    def start(repository, *args, **kwargs):
        server = Server(repository, *args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
        print(f"---- server log ({' '.join(server.process.args[2:])}) ----")
        print("".join(server.log))


def add_version(repo, name, version, model_bytes=None, warmup=None):
    """Puts REPO/NAME/VERSION/model.onnx (by default the model answering 0.5 * x + VERSION) in
    place in one rename, so that a polling server never sees it half written."""
    staging = repo.parent / f".staging-{name}-{version}-{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    data = model_bytes if model_bytes is not None else half_plus_model(version)
    (staging / "model.onnx").write_bytes(data)
    for file_name, sample in (warmup or {}).items():
        (staging / "warmup").mkdir(exist_ok=True)
        text = sample if isinstance(sample, str) else json.dumps(sample)
        (staging / "warmup" / file_name).write_text(text)
    (repo / name).mkdir(parents=True, exist_ok=True)
    os.rename(staging, repo / name / str(version))


def write_atomic(path, text):
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    os.replace(staging, path)


def held_version(repo, name, version):
    """Adds a version whose warm-up sample is a named pipe: loading it blocks on reading the
    sample until the test calls release() on the returned path, which holds the version in
    LOADING for as long as a test needs."""
    staging = repo.parent / f".staging-{name}-{version}-{time.monotonic_ns()}"
    (staging / "warmup").mkdir(parents=True)
    (staging / "model.onnx").write_bytes(half_plus_model(version))
    os.mkfifo(staging / "warmup" / "sample.json")
    (repo / name).mkdir(parents=True, exist_ok=True)
    os.rename(staging, repo / name / str(version))
    return repo / name / str(version) / "warmup" / "sample.json"


def release(fifo, sample=None, timeout=15.0):
    """Writes the warm-up sample into a held version's pipe once the server reads it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:  # ENXIO: the server is not reading it (yet)
            if time.monotonic() > deadline:
                pytest.fail(f"the server never read {fifo}")
            time.sleep(0.02)
    with os.fdopen(fd, "w") as pipe:
        os.set_blocking(fd, True)
        pipe.write(json.dumps(sample or GOOD_SAMPLE))


@pytest.fixture
def releaser():
    """release() for the pipes a test holds, also at the end of a test that failed first, so
    that no server is left blocked."""
    held = []

    def hold(fifo):
        held.append(fifo)
        return fifo

    yield hold
    for fifo in held:
        release_now(fifo)


def release_now(fifo):
    """release() if the server is reading the pipe now; else nothing."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.write(fd, json.dumps(GOOD_SAMPLE).encode())
    os.close(fd)


def model(repo, name, versions, config_toml=None, config_pbtxt=None):
    for version in versions:
        add_version(repo, name, version)
    if config_toml is not None:
        (repo / name / "config.toml").write_text(config_toml)
    if config_pbtxt is not None:
        (repo / name / "config.pbtxt").write_text(config_pbtxt)


def fixture_model(repo, name):
    shutil.copytree(FIXTURE_MODELS / name, repo / name)


# --- HTTP helpers (requests) ---------------------------------------------------------------

def index(server, ready=None):
    """The repository index as {(name, version): row}."""
    body = None if ready is None else {"ready": ready}
    response = requests.post(f"{server.url}/v2/repository/index", json=body, timeout=30)
    assert response.status_code == 200, response.text
    rows = response.json()
    assert isinstance(rows, list)
    return {(row["name"], row.get("version")): row for row in rows}


def ready_versions(server, name):
    return {int(v) for (n, v), row in index(server).items() if n == name and row["state"] == "READY"}


def tf_status(server, name, label=None, version=None):
    path = f"/v1/models/{name}" + (f"/labels/{label}" if label else "") + (
        f"/versions/{version}" if version else "")
    return requests.get(server.url + path, timeout=30)


def tf_states(server, name):
    """TF Serving REST status as {version: (state, error_code, error_message)}."""
    response = tf_status(server, name)
    assert response.status_code == 200, response.text
    return {int(v["version"]): (v["state"], v["status"]["error_code"], v["status"]["error_message"])
            for v in response.json()["model_version_status"]}


def tf_predict(server, name, version=None, label=None, x=X):
    path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "") + (
        f"/labels/{label}" if label else "") + ":predict"
    return requests.post(server.url + path, json={"instances": [x]}, timeout=30)


def v2_infer(server, name, version=None, session=requests, timeout=30):
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]}
    return session.post(server.url + path, json=body, timeout=timeout)


def served_by(response):
    """The version whose answer a successful V2 response holds, checked against model_version."""
    assert response.status_code == 200, response.text
    body = response.json()
    [output] = body["outputs"]
    version = int(body["model_version"])
    assert output["data"] == answer(version), f"version {version} answered {output['data']}"
    return version


def v2_version_ready(server, name, version):
    return requests.get(f"{server.url}/v2/models/{name}/versions/{version}/ready", timeout=30).status_code


def assert_error(response, status, *fragments):
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) == {"error"}, body
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return body["error"]


# --- version policies ------------------------------------------------------------------------

POLICIES = {
    "latest2": ("version_policy = { latest = 2 }\n", None, {2, 3}),
    "all": ('version_policy = "all"\n', None, {1, 2, 3}),
    "specific": ("version_policy = { specific = [1, 3] }\n", None, {1, 3}),
    "default": (None, None, {3}),
    "pbtxt_specific": (None, 'name: "m"\nbackend: "onnxruntime"\n'
                             "version_policy: { specific: { versions: [2] } }\n", {2}),
    "pbtxt_all": (None, 'platform: "onnxruntime_onnx"\nversion_policy: { all: {} }\n', {1, 2, 3}),
    "pbtxt_latest": (None, "version_policy: { latest: { num_versions: 2 } }\n", {2, 3}),
}


@pytest.mark.parametrize("policy", POLICIES)
def test_version_policy(start, tmp_path, policy):
    toml, pbtxt, served = POLICIES[policy]
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2, 3], config_toml=toml, config_pbtxt=pbtxt)
    server = start(repo)

    for version in (1, 2, 3):
        expected = 200 if version in served else 404
        assert v2_version_ready(server, "m", version) == expected, f"version {version}"
    # The index: exactly the served versions READY; the others never loaded.
    rows = index(server)
    assert {int(v) for (n, v), row in rows.items() if row["state"] == "READY"} == served, rows
    assert {int(v) for (n, v) in rows if v is not None} == served, rows
    assert {int(v) for (n, v) in index(server, ready=True)} == served
    # TF Serving's status lists the served versions, all AVAILABLE, newest first.
    response = tf_status(server, "m")
    assert response.status_code == 200, response.text
    listed = response.json()["model_version_status"]
    assert [int(v["version"]) for v in listed] == sorted(served, reverse=True)
    assert all(v["state"] == "AVAILABLE" and v["status"]["error_code"] == "OK" for v in listed), listed
    assert "version_labels" not in response.json()
    # Each served version answers with its own numbers; the latest one by default.
    for version in served:
        assert served_by(v2_infer(server, "m", version)) == version
        predicted = tf_predict(server, "m", version=version)
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == [answer(version)]
    assert served_by(v2_infer(server, "m")) == max(served)
    assert tf_predict(server, "m").json()["predictions"] == [answer(max(served))]
    for version in {1, 2, 3} - served:
        assert_error(v2_infer(server, "m", version), 404, "version")
        assert_error(tf_predict(server, "m", version=version), 404)
    # The model's metadata lists the versions it serves.
    meta = requests.get(f"{server.url}/v2/models/m", timeout=30).json()
    assert sorted(int(v) for v in meta["versions"]) == sorted(served)


def test_bad_version_policy_is_reported(start, tmp_path):
    """A config that cannot be used: the server starts, the model shows why it is unavailable."""
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2], config_toml="version_policy = { newest = 2 }\n")
    fixture_model(repo, "half_plus_two")
    server = start(repo)
    rows = index(server)
    bad = [row for (name, _), row in rows.items() if name == "m"]
    assert bad and all(row["state"] == "UNAVAILABLE" for row in bad), rows
    assert any("config.toml" in row.get("reason", "") for row in bad), bad
    assert rows[("half_plus_two", "1")]["state"] == "READY"
    assert_error(v2_infer(server, "m"), 404)


# --- labels (TF Serving REST) ----------------------------------------------------------------

LABELS_TOML = 'version_policy = "all"\n[labels]\nstable = 1\ncanary = 2\n'


def test_labels_rest(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2, 3], config_toml=LABELS_TOML.replace('"all"', "{ specific = [1, 2] }"))
    server = start(repo)

    for label, version in (("stable", 1), ("canary", 2)):
        predicted = tf_predict(server, "m", label=label)
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["predictions"] == [answer(version)]
        status = tf_status(server, "m", label=label)
        assert status.status_code == 200, status.text
        [only] = status.json()["model_version_status"]
        assert (only["version"], only["state"]) == (str(version), "AVAILABLE")
        meta = requests.get(f"{server.url}/v1/models/m/labels/{label}/metadata", timeout=30)
        assert meta.status_code == 200, meta.text
        assert meta.json()["model_spec"]["version"] == str(version)
    status = tf_status(server, "m").json()
    assert status["version_labels"] == {"stable": "1", "canary": "2"}
    assert [v["version"] for v in status["model_version_status"]] == ["2", "1"]

    # Unknown labels, and labels of an unknown model: errors, never a fallback to some version.
    # (TF Serving itself answers an unknown label with 400 "Unrecognized servable version label".)
    for call in (lambda: tf_predict(server, "m", label="nope"), lambda: tf_status(server, "m", label="nope"),
                 lambda: requests.get(f"{server.url}/v1/models/m/labels/nope/metadata", timeout=30)):
        assert_error(call(), UNKNOWN_LABEL_HTTP, "nope")
    assert_error(tf_predict(server, "nope", label="stable"), 404, "nope")
    assert_error(tf_status(server, "nope", label="stable"), 404, "nope")
    # A label is a path segment of its own: these are malformed paths, not labels.
    assert requests.post(f"{server.url}/v1/models/m/labels/:predict", json={"instances": [X]},
                         timeout=30).status_code in (400, 404)


UNKNOWN_LABEL_HTTP = 400  # as TF Serving: an unknown label is an invalid argument


@pytest.mark.parametrize("allow", [False, True])
def test_label_for_unavailable_version(start, tmp_path, allow):
    """`next = 3` names a version the policy does not serve: without the allow flag the label
    does not exist; with it, it exists and requests through it say the version is unavailable."""
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2, 3], config_toml='version_policy = { specific = [1, 2] }\n'
                                             '[labels]\nstable = 1\nnext = 3\n')
    server = start(repo, "--allow-version-labels-for-unavailable-models", str(allow).lower())
    labels = tf_status(server, "m").json()["version_labels"]
    assert tf_predict(server, "m", label="stable").json()["predictions"] == [answer(1)]
    if allow:
        assert labels == {"stable": "1", "next": "3"}
        assert_error(tf_predict(server, "m", label="next"), 404, "3")
    else:
        assert labels == {"stable": "1"}
        assert_error(tf_predict(server, "m", label="next"), UNKNOWN_LABEL_HTTP, "next")


def test_label_moves_on_poll_only_to_available_versions(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2], config_toml=LABELS_TOML.replace("canary = 2\n", ""))
    server = start(repo, "--repository-poll-secs", "0.2", env=POLL_LOG)
    assert tf_predict(server, "m", label="stable").json()["predictions"] == [answer(1)]

    write_atomic(repo / "m" / "config.toml", LABELS_TOML.replace("stable = 1", "stable = 2"))
    wait_until(lambda: tf_status(server, "m").json().get("version_labels") == {"stable": "2", "canary": "2"},
               "stable to move to version 2")
    assert tf_predict(server, "m", label="stable").json()["predictions"] == [answer(2)]

    # Version 7 does not exist: `stable` stays on 2, a new label naming 7 does not appear.
    write_atomic(repo / "m" / "config.toml", LABELS_TOML.replace("stable = 1", "stable = 7")
                 .replace("canary = 2", "canary = 2\nnew = 7"))
    wait_for_polls(server, 5)
    assert tf_status(server, "m").json()["version_labels"] == {"stable": "2", "canary": "2"}
    assert tf_predict(server, "m", label="stable").json()["predictions"] == [answer(2)]
    assert_error(tf_predict(server, "m", label="new"), UNKNOWN_LABEL_HTTP)

    # Version 7 arrives: the policy ("all") loads it and the labels follow.
    add_version(repo, "m", 7)
    wait_until(lambda: tf_status(server, "m").json().get("version_labels", {}).get("stable") == "7",
               "stable to move to version 7")
    assert tf_predict(server, "m", label="stable").json()["predictions"] == [answer(7)]
    assert tf_predict(server, "m", label="new").json()["predictions"] == [answer(7)]
    # A label removed from the config disappears.
    write_atomic(repo / "m" / "config.toml", 'version_policy = "all"\n[labels]\nstable = 1\n')
    wait_until(lambda: tf_status(server, "m").json().get("version_labels") == {"stable": "1"},
               "the labels to be stable = 1 only")
    assert_error(tf_predict(server, "m", label="canary"), UNKNOWN_LABEL_HTTP)


def test_moving_a_label_does_not_reload_the_versions(start, tmp_path):
    """A label is a name: moving it must not reload (and warm up) the model's versions, as in TF
    Serving, where version_labels changes only swap the label map."""
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2], config_toml=LABELS_TOML)
    server = start(repo, "--repository-poll-secs", "0.2", env=POLL_LOG)

    def loads():
        return sum("model version available" in line for line in server.log)

    assert loads() == 2
    write_atomic(repo / "m" / "config.toml", LABELS_TOML.replace("stable = 1", "stable = 2"))
    wait_until(lambda: tf_status(server, "m").json().get("version_labels", {}).get("stable") == "2",
               "stable to move to version 2")
    wait_for_polls(server, 2)
    assert loads() == 2, "".join(line for line in server.log if "model version available" in line)


# --- explicit model control via tritonclient -------------------------------------------------

class Http:
    """tritonclient.http with the checks the tests need."""
    not_found = {"404"}
    client_errors = {"400", "404"}
    refused = {"400"}

    def __init__(self, server):
        self.client = httpclient.InferenceServerClient(server.url[len("http://"):])

    def infer(self, name, version=""):
        x = np.array([X], dtype=np.float32)
        i = httpclient.InferInput("x", [1, 3], "FP32")
        i.set_data_from_numpy(x)
        result = self.client.infer(name, [i], model_version=version)
        return int(result.get_response()["model_version"]), result.as_numpy("y")

    def index(self, ready=False):
        return [(m["name"], m.get("version", ""), m["state"], m.get("reason", ""))
                for m in self.client.get_model_repository_index()
                if not ready or m["state"] == "READY"]


class Grpc(Http):
    not_found = {"StatusCode.NOT_FOUND"}
    client_errors = {"StatusCode.NOT_FOUND", "StatusCode.INVALID_ARGUMENT"}
    refused = {"StatusCode.INVALID_ARGUMENT", "StatusCode.FAILED_PRECONDITION"}

    def __init__(self, server):
        self.client = grpcclient.InferenceServerClient(server.grpc)

    def infer(self, name, version=""):
        i = grpcclient.InferInput("x", [1, 3], "FP32")
        i.set_data_from_numpy(np.array([X], dtype=np.float32))
        result = self.client.infer(name, [i], model_version=version)
        return int(result.get_response().model_version), result.as_numpy("y")

    def index(self, ready=False):
        response = self.client.get_model_repository_index(as_json=True)
        return [(m["name"], m.get("version", ""), m.get("state", ""), m.get("reason", ""))
                for m in response.get("models", []) if not ready or m.get("state") == "READY"]


PROTOCOLS = {"http": Http, "grpc": Grpc}


def error_of(call):
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value


def check_infer(api, name, version, expect_version):
    answered, y = api.infer(name, version)
    assert answered == expect_version
    np.testing.assert_array_equal(y, [answer(expect_version)])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_explicit_load_unload(start, tmp_path, protocol):
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2, 3])
    fixture_model(repo, "dense")
    server = start(repo, "--model-control-mode", "explicit")
    api = PROTOCOLS[protocol](server)

    assert api.client.is_server_ready()
    assert api.index(ready=True) == []
    # As in Triton, the index lists the repository's models that are not loaded, with no version.
    rows = api.index()
    assert [row[:3] for row in rows] == [("dense", "", "UNAVAILABLE"), ("m", "", "UNAVAILABLE")], rows
    assert all(reason for (_, _, _, reason) in rows), rows
    assert not api.client.is_model_ready("m")
    assert str(error_of(lambda: api.infer("m")).status()) in api.not_found

    api.client.load_model("m")
    assert api.client.is_model_ready("m")
    assert api.index(ready=True) == [("m", "3", "READY", "")]
    check_infer(api, "m", "", 3)

    api.client.unload_model("m")
    assert not api.client.is_model_ready("m")
    error = error_of(lambda: api.infer("m"))
    assert str(error.status()) in api.not_found, error
    assert api.index(ready=True) == []
    [(name, version, state, reason)] = [row for row in api.index() if row[0] == "m"]
    assert (name, version, state) == ("m", "3", "UNAVAILABLE")
    assert reason  # "unloaded"

    api.client.load_model("m")
    check_infer(api, "m", "", 3)
    check_infer(api, "m", "3", 3)
    # Loading what is loaded is fine; other models stay unloaded.
    api.client.load_model("m")
    check_infer(api, "m", "", 3)
    assert not api.client.is_model_ready("dense")

    # A model that is not in the repository: a client error, never a 500.
    error = error_of(lambda: api.client.load_model("nope"))
    assert str(error.status()) in api.client_errors, error
    assert "nope" in error.message()
    assert not api.client.is_model_ready("nope")

    # parameters.config replaces config.toml for this load: all versions.
    api.client.load_model("m", config=json.dumps({"version_policy": "all"}))
    assert sorted(v for (n, v, s, _) in api.index(ready=True) if n == "m") == ["1", "2", "3"]
    for version in (1, 2, 3):
        check_infer(api, "m", str(version), version)
    # ... and labels, over TF Serving REST.
    api.client.load_model("m", config=json.dumps({"version_policy": {"specific": [1, 2]},
                                                  "labels": {"stable": 1}}))
    wait_until(lambda: ready_versions(server, "m") == {1, 2}, "version 3 to leave")
    assert tf_predict(server, "m", label="stable").json()["predictions"] == [answer(1)]
    check_infer(api, "m", "", 2)
    # Triton's own JSON model configuration works too, as Triton clients send it.
    api.client.load_model("m", config=json.dumps({"name": "m", "backend": "onnxruntime",
                                                  "version_policy": {"specific": {"versions": [1, 3]}}}))
    wait_until(lambda: ready_versions(server, "m") == {1, 3}, "versions 1 and 3 to serve")
    check_infer(api, "m", "1", 1)
    error = error_of(lambda: api.client.load_model("m", config=json.dumps({"name": "other"})))
    assert str(error.status()) in {"400", "StatusCode.INVALID_ARGUMENT"}, error
    # Its declared tensors are checked against the model, as a config.pbtxt's are.
    wrong_input = {"input": [{"name": "not_x", "data_type": "TYPE_FP32", "dims": [3]}]}
    error = error_of(lambda: api.client.load_model("m", config=json.dumps(wrong_input)))
    assert str(error.status()) in {"400", "StatusCode.INVALID_ARGUMENT"}, error
    assert "not_x" in error.message(), error
    check_infer(api, "m", "3", 3)
    # A load without config goes back to the model's own (no config.toml: the latest version).
    api.client.load_model("m")
    wait_until(lambda: ready_versions(server, "m") == {3}, "versions 1 and 2 to leave")
    check_infer(api, "m", "", 3)
    # A config that is not valid: refused, what serves keeps serving.
    for bad in ('{"version_polic": "all"}', "not json", '{"version_policy": {"latest": -1}}'):
        error = error_of(lambda: api.client.load_model("m", config=bad))
        assert str(error.status()) in {"400", "StatusCode.INVALID_ARGUMENT"}, (bad, error)
        check_infer(api, "m", "", 3)
    # The other model loads on its own.
    api.client.load_model("dense")
    assert api.client.is_model_ready("dense")
    assert {n for (n, _, _, _) in api.index(ready=True)} == {"m", "dense"}


def test_load_unload_under_traffic(start, tmp_path):
    """Requests racing loads and unloads get a right answer (from version 1 or 2) or a 404,
    never a 5xx, a wrong answer or a broken connection."""
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2])
    server = start(repo, "--model-control-mode", "explicit", "--load-model", "m")
    outcomes = []
    stop = threading.Event()

    def hammer():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = v2_infer(server, "m", session=session)
                    outcomes.append(served_by(response) if response.status_code == 200 else response.status_code)
                except (requests.RequestException, AssertionError) as e:
                    outcomes.append(repr(e))

    def answered_since(seen, what):
        # A request sent after the change (one already on its way when it came may end first).
        wait_until(lambda: len(outcomes) >= seen + 4, what)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    url = f"{server.url}/v2/repository/models/m"
    try:
        for cycle in range(8):
            config = json.dumps({"version_policy": {"specific": [1 + cycle % 2]}})
            assert requests.post(f"{url}/load", json={"parameters": {"config": config}}, timeout=60).status_code == 200
            answered_since(len(outcomes), "a request to the loaded model")
            assert requests.post(f"{url}/unload", timeout=60).status_code == 200
            answered_since(len(outcomes), "a request to the unloaded model")
        requests.post(f"{url}/load", timeout=60)
        answered_since(len(outcomes), "a request to the model loaded again")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert set(outcomes) == {1, 2, 404}, set(outcomes)
    assert served_by(v2_infer(server, "m")) == 2


def test_explicit_http_errors(start, tmp_path):
    """The repository API's error bodies over plain HTTP."""
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo, "--model-control-mode", "explicit")
    url = f"{server.url}/v2/repository/models"
    assert requests.post(f"{url}/m/load", timeout=30).json() == {}
    assert requests.post(f"{url}/m/load", json={}, timeout=30).json() == {}
    assert requests.post(f"{url}/m/load", json={"parameters": {}}, timeout=30).json() == {}
    assert_error(requests.post(f"{url}/nope/load", timeout=30), 404, "nope")
    assert_error(requests.post(f"{url}/m/load", json={"parameters": {"config": {"version_policy": "all"}}},
                               timeout=30), 400, "parameters.config")
    assert_error(requests.post(f"{url}/m/load", data="{", timeout=30), 400)
    assert_error(requests.post(f"{url}/m/load", json={"parameters": {"config": '{"bogus": 1}'}}, timeout=30),
                 400, "bogus")
    assert served_by(v2_infer(server, "m")) == 1
    assert requests.post(f"{url}/m/unload", timeout=30).json() == {}
    assert_error(v2_infer(server, "m"), 404)
    assert_error(requests.post(f"{url}/nope/unload", timeout=30), 404, "nope")


@pytest.mark.parametrize("mode", ["poll", "none"])
def test_load_unload_refused_outside_explicit_mode(start, tmp_path, mode):
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo, "--model-control-mode", mode)
    url = f"{server.url}/v2/repository/models"
    for action in ("load", "unload"):
        assert_error(requests.post(f"{url}/m/{action}", timeout=30), 400, "--model-control-mode explicit")
    for api in (Http(server), Grpc(server)):
        for call in (lambda: api.client.load_model("m"), lambda: api.client.unload_model("m")):
            error = error_of(call)
            assert str(error.status()) in api.refused, error
            assert "explicit" in error.message()
    # Nothing changed.
    assert served_by(v2_infer(server, "m")) == 1
    assert ready_versions(server, "m") == {1}


def test_none_mode_does_not_poll(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo, "--model-control-mode", "none", "--repository-poll-secs", "0.1")
    add_version(repo, "m", 2)
    # A fixed wait on purpose: with no poller there is no event to wait for; what is checked is
    # that nothing happens in ten poll intervals.
    time.sleep(1.0)
    assert served_by(v2_infer(server, "m")) == 1
    assert ready_versions(server, "m") == {1}


@pytest.mark.parametrize("load, ready", [
    (["half_plus_two"], {"half_plus_two"}),
    (["half_plus_two,dense"], {"half_plus_two", "dense"}),
    (["half_plus_two", "--load-model", "int_affine"], {"half_plus_two", "int_affine"}),
    (["*"], {"half_plus_two", "dense", "int_affine"}),
])
def test_load_model_at_startup(start, tmp_path, load, ready):
    repo = tmp_path / "repo"
    for name in ("half_plus_two", "dense", "int_affine"):
        fixture_model(repo, name)
    server = start(repo, "--model-control-mode", "explicit", "--load-model", *load)
    assert {name for (name, _) in index(server, ready=True)} == ready
    client = httpclient.InferenceServerClient(server.url[len("http://"):])
    for name in ("half_plus_two", "dense", "int_affine"):
        assert client.is_model_ready(name) == (name in ready), name
    client.load_model("dense")
    assert client.is_model_ready("dense")


def test_load_model_at_startup_unknown_model_stops_the_server(tmp_path):
    repo = tmp_path / "repo"
    fixture_model(repo, "half_plus_two")
    binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
    result = subprocess.run(
        [binary, "serve", "--host", "127.0.0.1", "--rest-port", "0", "--grpc-port", "0",
         "--model-repository", str(repo), "--model-control-mode", "explicit", "--load-model", "nope"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ, NO_COLOR="1"))
    assert result.returncode != 0, result.stderr
    assert "nope" in result.stderr
    assert "listening" not in result.stderr


# --- a version that fails to load ------------------------------------------------------------

def test_corrupt_version_keeps_the_previous_one_serving(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo, "--repository-poll-secs", "0.2", env=POLL_LOG)
    assert tf_predict(server, "m").json()["predictions"] == [answer(1)]

    add_version(repo, "m", 2, model_bytes=b"this is not an ONNX model \x00\xff" * 10)
    row = wait_until(lambda: (r := index(server).get(("m", "2"))) and r["state"] != "LOADING" and r,
                     "version 2 to finish loading")
    assert row["state"] == "UNAVAILABLE" and row.get("reason"), row
    states = tf_states(server, "m")
    assert states[1] == ("AVAILABLE", "OK", "")
    state, code, message = states[2]
    assert state == "END" and code == "DATA_LOSS" and message, states[2]
    assert message == row["reason"]
    assert row["error_kind"] == "corrupt_model", row
    assert index(server)[("m", "1")]["state"] == "READY"
    # Version 1 keeps answering, by default and by number; version 2 does not.
    assert tf_predict(server, "m").json()["predictions"] == [answer(1)]
    assert served_by(v2_infer(server, "m")) == 1
    assert_error(tf_predict(server, "m", version=2), 404, "2")
    assert v2_version_ready(server, "m", 2) != 200
    # It is not retried at every poll while the file is unchanged.
    wait_for_polls(server, 5)
    failures = [line for line in server.log if "failed to load" in line and "version=2" in line]
    assert len(failures) == 1, failures

    # A good file for version 2: it loads, and version 1 is retired.
    staging = tmp_path / "good.onnx"
    staging.write_bytes(half_plus_model(2))
    os.replace(staging, repo / "m" / "2" / "model.onnx")
    wait_until(lambda: ready_versions(server, "m") == {2}, "version 2 alone to serve")
    assert tf_predict(server, "m").json()["predictions"] == [answer(2)]
    wait_until(lambda: tf_states(server, "m").get(1, ("",))[0] == "END", "version 1 to end")
    assert tf_states(server, "m")[2] == ("AVAILABLE", "OK", "")

    # Version 2's directory goes: version 1 is the latest again and serves again.
    shutil.rmtree(repo / "m" / "2")
    wait_until(lambda: ready_versions(server, "m") == {1}, "version 1 to serve again")
    assert served_by(v2_infer(server, "m")) == 1


def test_corrupt_version_fails_an_explicit_load(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    add_version(repo, "m", 2, model_bytes=b"\x08\x07garbage")
    fixture_model(repo, "half_plus_two")
    server = start(repo, "--model-control-mode", "explicit", "--load-model", "half_plus_two")
    response = requests.post(f"{server.url}/v2/repository/models/m/load", timeout=60)
    assert_error(response, 400, "version 2")
    row = index(server)[("m", "2")]
    assert row["state"] == "UNAVAILABLE" and row["reason"], row
    assert ("m", "1") not in index(server)  # latest-1 policy: version 1 was never wanted
    assert_error(v2_infer(server, "m"), 404)
    # The rest of the server is fine.
    assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
    assert requests.get(f"{server.url}/v2/models/half_plus_two/ready", timeout=30).status_code == 200


# --- warm-up -------------------------------------------------------------------------------

GOOD_SAMPLE = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
BROKEN_SAMPLES = {
    "not_json": "{\"inputs\": [",
    "wrong_datatype": {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]},
    "wrong_input": {"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
    "data_does_not_fit_shape": {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1]}]},
    "wrong_width": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
}


@pytest.mark.parametrize("broken", BROKEN_SAMPLES)
def test_warmup(start, tmp_path, broken):
    repo = tmp_path / "repo"
    add_version(repo, "good", 1, warmup={"a.json": GOOD_SAMPLE, "b.json": GOOD_SAMPLE, "notes.txt": "ignored"})
    add_version(repo, "bad", 1, warmup={"a.json": GOOD_SAMPLE, "b.json": BROKEN_SAMPLES[broken]})
    add_version(repo, "off", 1, warmup={"a.json": BROKEN_SAMPLES[broken]})
    (repo / "off" / "config.toml").write_text('[lifecycle]\nwarmup = "none"\n')
    server = start(repo)

    rows = index(server)
    assert rows[("good", "1")]["state"] == "READY", rows
    assert rows[("off", "1")]["state"] == "READY", rows  # warm-up off: the sample is never read
    assert rows[("bad", "1")]["state"] == "UNAVAILABLE", rows
    reason = rows[("bad", "1")]["reason"]
    assert "warm-up" in reason, reason
    assert rows[("bad", "1")]["error_kind"] == "warmup", rows
    assert tf_states(server, "bad")[1][2] == reason
    assert_error(v2_infer(server, "bad"), 404)
    assert served_by(v2_infer(server, "good")) == 1
    assert served_by(v2_infer(server, "off")) == 1
    warmed = [line for line in server.log if "warmed up" in line and "model=good" in line]
    assert warmed and "requests=2" in warmed[0], warmed


def test_warmup_failure_answers_explicit_load(start, tmp_path):
    repo = tmp_path / "repo"
    add_version(repo, "bad", 1, warmup={"a.json": BROKEN_SAMPLES["wrong_datatype"]})
    server = start(repo, "--model-control-mode", "explicit")
    error = assert_error(requests.post(f"{server.url}/v2/repository/models/bad/load", timeout=60), 400, "warm-up")
    assert "INT64" in error
    # Turning warm-up off for this load (parameters.config) lets it load.
    response = requests.post(f"{server.url}/v2/repository/models/bad/load",
                             json={"parameters": {"config": json.dumps({"lifecycle": {"warmup": "none"}})}},
                             timeout=60)
    assert response.status_code == 200, response.text
    assert served_by(v2_infer(server, "bad")) == 1


# --- roll-over -----------------------------------------------------------------------------

@pytest.mark.parametrize("rollover", ["load_first", "unload_first"])
def test_rollover(start, releaser, tmp_path, rollover):
    """Version 2 replaces version 1. While version 2 loads (held), load_first keeps version 1
    serving and unload_first has already retired it; with load_first no request fails."""
    repo = tmp_path / "repo"
    model(repo, "m", [1], config_toml=f'[lifecycle]\nrollover = "{rollover}"\n')
    server = start(repo, "--repository-poll-secs", "0.2")
    results = []
    stop = threading.Event()

    def hammer():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = v2_infer(server, "m", session=session)
                    results.append(served_by(response) if response.status_code == 200 else response.status_code)
                except (requests.RequestException, AssertionError) as e:
                    results.append(repr(e))
                # Pacing, not waiting: a client that leaves the server's two cores some room.
                time.sleep(0.005)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        wait_until(lambda: len(results) > 20, "requests to flow")
        fifo = releaser(held_version(repo, "m", 2))
        wait_until(lambda: tf_states(server, "m").get(2, ("",))[0] == "LOADING", "version 2 to be loading")
        # Answers to requests sent while version 2 loads (the first may have been on its way).
        seen = len(results)
        wait_until(lambda: len(results) >= seen + 3, "requests during the load")
        states = tf_states(server, "m")
        if rollover == "load_first":
            assert states[1] == ("AVAILABLE", "OK", ""), states
            assert results[-1] == 1
            assert served_by(v2_infer(server, "m")) == 1
        else:
            assert states[1][0] in ("UNLOADING", "END"), states
            assert results[-1] == 404
            assert_error(v2_infer(server, "m"), 404)
        assert index(server)[("m", "2")]["state"] == "LOADING"
        assert v2_version_ready(server, "m", 2) == 404
        release(fifo)
        wait_until(lambda: results[-1] == 2, "version 2 to answer")
        wait_until(lambda: tf_states(server, "m").get(1, ("",))[0] == "END", "version 1 to end")
        seen = len(results)
        wait_until(lambda: len(results) >= seen + 3, "requests after version 1 ended")
    finally:
        stop.set()
        thread.join()
    assert tf_states(server, "m")[2] == ("AVAILABLE", "OK", "")
    first_two = results.index(2)
    assert set(results[first_two:]) == {2}, "a request went back to version 1 after version 2 answered"
    if rollover == "load_first":
        assert set(results) == {1, 2}, f"requests failed during a load-first swap: {set(results)}"
    else:
        assert set(results) == {1, 404, 2}, set(results)


# --- the control modes, more -----------------------------------------------------------------

def test_poll_model_removed_and_back(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    fixture_model(repo, "half_plus_two")
    server = start(repo, "--repository-poll-secs", "0.2")
    assert served_by(v2_infer(server, "m")) == 1
    os.rename(repo / "m", tmp_path / "m-away")
    wait_until(lambda: v2_infer(server, "m").status_code == 404, "m to be unloaded")
    assert index(server)[("m", "1")]["state"] == "UNAVAILABLE"
    assert requests.get(f"{server.url}/v2/models/half_plus_two/ready", timeout=30).status_code == 200
    os.rename(tmp_path / "m-away", repo / "m")
    wait_until(lambda: v2_infer(server, "m").status_code == 200, "m to be back")
    assert served_by(v2_infer(server, "m")) == 1


def test_poll_broken_config_keeps_serving(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1, 2], config_toml='version_policy = "all"\n')
    server = start(repo, "--repository-poll-secs", "0.2")
    write_atomic(repo / "m" / "config.toml", "version_policy = [\n")
    wait_until(lambda: all(tf_states(server, "m")[v][2] for v in (1, 2)), "the error to show")
    states = tf_states(server, "m")
    assert all(state == "AVAILABLE" and "config.toml" in message for state, _, message in states.values()), states
    assert served_by(v2_infer(server, "m", 1)) == 1
    assert served_by(v2_infer(server, "m", 2)) == 2
    # Fixed, with another policy: it applies and the error goes.
    write_atomic(repo / "m" / "config.toml", "version_policy = { specific = [1] }\n")
    wait_until(lambda: ready_versions(server, "m") == {1}, "version 2 to leave")
    assert tf_states(server, "m")[1] == ("AVAILABLE", "OK", "")
    assert served_by(v2_infer(server, "m")) == 1


def test_poll_new_labels_file_reloads(start, tmp_path):
    """A labels file (or tokenizer) the config names is part of what a version is loaded from:
    a new one is picked up by the next poll, though config.toml and model.onnx are unchanged."""
    repo = tmp_path / "repo"
    fixture_model(repo, "dense")
    (repo / "dense" / "config.toml").write_text('[outputs.probs]\ntop_k = 1\nlabels = "labels.txt"\n')
    write_atomic(repo / "dense" / "labels.txt", "".join(f"old{i}\n" for i in range(10)))
    server = start(repo, "--repository-poll-secs", "0.2")
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.1] * 64}]}

    def top_label():
        response = requests.post(f"{server.url}/v2/models/dense/infer", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()["outputs"][0]["data"][0].split(":", 2)[2]

    first = top_label()
    assert first.startswith("old"), first
    write_atomic(repo / "dense" / "labels.txt", "".join(f"new{i}\n" for i in range(10)))
    wait_until(lambda: top_label() == "new" + first[3:], "the new labels to be served")


def test_unload_during_a_load_does_not_stall_the_server(start, releaser, tmp_path):
    """An unload waits for a load of the same model to finish: it must wait off the async
    runtime, or a few such requests stall every other request (health checks included)."""
    repo = tmp_path / "repo"
    fifo = releaser(held_version(repo, "m", 1))
    server = start(repo, "--model-control-mode", "explicit")
    url = f"{server.url}/v2/repository/models/m"
    pool = [threading.Thread(target=requests.post, args=(f"{url}/load",), kwargs={"timeout": 60})]
    pool[0].start()
    wait_until(lambda: index(server).get(("m", "1"), {}).get("state") == "LOADING", "the load to start")
    unloads = []
    for _ in range((os.cpu_count() or 2) + 2):
        thread = threading.Thread(target=lambda: unloads.append(requests.post(f"{url}/unload", timeout=60)))
        thread.start()
        pool.append(thread)
    # A fixed wait on purpose: an unload waiting for the load shows nowhere (no log line, no
    # state), so the unloads get time to reach the server and block; the checks below fail
    # only if blocked unloads stall it.
    time.sleep(0.5)
    try:
        live = requests.get(f"{server.url}/v2/health/live", timeout=3).status_code
    except requests.RequestException as e:
        live = repr(e)
    grpc_client = grpcclient.InferenceServerClient(server.grpc)
    try:
        grpc_live = grpc_client.is_server_live(client_timeout=3)
    except InferenceServerException as e:
        grpc_live = str(e)
    grpc_client.close()
    release(fifo)
    for thread in pool:
        thread.join()
    assert [r.status_code for r in unloads] == [200] * len(unloads)
    assert (live, grpc_live) == (200, True), "the server stalled while unload requests waited for a load"


# --- readiness and shutdown ----------------------------------------------------------------

def listening_ports(pid):
    """The TCP ports process `pid` listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_not_ready_while_startup_models_load(releaser, tmp_path):
    """The listeners answer while the start-up models load: live, not ready; then ready."""
    repo = tmp_path / "repo"
    model(repo, "a", [1])
    fifo = releaser(held_version(repo, "slow", 1))
    binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
    process = subprocess.Popen(
        [binary, "serve", "--host", "127.0.0.1", "--rest-port", "0", "--grpc-port", "0",
         "--model-repository", str(repo)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=dict(os.environ, NO_COLOR="1"))
    log = []
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    try:
        ports = wait_until(lambda: len(listening_ports(process.pid)) == 2 and listening_ports(process.pid),
                           "the server to listen")
        rest = grpc_port = None
        for port in ports:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5).status_code == 200:
                    rest = port
                    continue
            except requests.RequestException:
                pass
            grpc_port = port
        assert rest and grpc_port, ports
        url = f"http://127.0.0.1:{rest}"
        wait_until(lambda: index_rows(url).get(("slow", "1"), {}).get("state") == "LOADING", "slow to be loading")
        assert requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 503
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        assert client.is_server_live()
        assert not client.is_server_ready()
        assert index_rows(url)[("a", "1")]["state"] == "READY"
        assert not any("listening" in line for line in log)
        release(fifo)
        wait_until(lambda: requests.get(f"{url}/v2/health/ready", timeout=5).status_code == 200, "ready")
        assert client.is_server_ready()
        client.close()
        assert index_rows(url)[("slow", "1")]["state"] == "READY"
    finally:
        release_now(fifo)
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(log)


def index_rows(url):
    return {(row["name"], row.get("version")): row
            for row in requests.post(f"{url}/v2/repository/index", timeout=5).json()}


def test_drain_finishes_an_inflight_request(start, releaser, tmp_path):
    """A request in flight at SIGTERM (a load, held) is answered before the server exits."""
    repo = tmp_path / "repo"
    fifo = releaser(held_version(repo, "m", 1))
    server = start(repo, "--model-control-mode", "explicit", "--exit-timeout-secs", "20")
    answers = []
    loader = threading.Thread(target=lambda: answers.append(
        requests.post(f"{server.url}/v2/repository/models/m/load", timeout=60)))
    loader.start()
    wait_until(lambda: index(server).get(("m", "1"), {}).get("state") == "LOADING", "the load to start")
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: any("finishing in-flight requests" in line for line in server.log), "the drain")
    # A fixed wait on purpose: what is checked is that the server does not exit in this time.
    time.sleep(0.5)
    assert server.process.poll() is None, "the server exited with a request in flight"
    release(fifo)
    loader.join()
    assert server.process.wait(timeout=10) == 0
    [answered] = answers
    assert answered.status_code == 200, answered.text


def test_exit_timeout_with_a_load_still_running(start, releaser, tmp_path):
    """--exit-timeout-secs bounds the exit even when a request (a load, held) never ends."""
    repo = tmp_path / "repo"
    fifo = releaser(held_version(repo, "m", 1))
    server = start(repo, "--model-control-mode", "explicit", "--exit-timeout-secs", "1")

    def load():
        try:
            requests.post(f"{server.url}/v2/repository/models/m/load", timeout=60)
        except requests.RequestException:
            pass  # the server went away: that is the point

    threading.Thread(target=load, daemon=True).start()
    wait_until(lambda: index(server).get(("m", "1"), {}).get("state") == "LOADING", "the load to start")
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        code = server.process.wait(timeout=8)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - signalled
    release_now(fifo)  # only a server that is still running reads it
    assert code == 0, f"still running {took:.1f}s after SIGTERM with --exit-timeout-secs 1"
    assert took < 8


def test_readiness_and_drain_on_sigterm(start, tmp_path):
    delay = 2.0
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo, "--shutdown-delay-secs", str(delay), "--exit-timeout-secs", "10")
    ready_url = f"{server.url}/v2/health/ready"
    assert requests.get(ready_url, timeout=30).status_code == 200
    grpc_client = grpcclient.InferenceServerClient(server.grpc)
    assert grpc_client.is_server_ready()

    records = []  # (started, finished, outcome)
    stop = threading.Event()

    def http_hammer():
        with requests.Session() as session:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    response = v2_infer(server, "m", session=session, timeout=10)
                    outcome = "ok" if response.status_code == 200 and response.json()["outputs"][0]["data"] == answer(
                        1) else f"HTTP {response.status_code}"
                except requests.RequestException as e:
                    outcome = repr(e)
                records.append((started, time.monotonic(), outcome))
                if outcome != "ok":
                    time.sleep(0.02)  # pacing: no busy loop of refused connections

    def grpc_hammer():
        client = grpcclient.InferenceServerClient(server.grpc)
        i = grpcclient.InferInput("x", [1, 3], "FP32")
        i.set_data_from_numpy(np.array([X], dtype=np.float32))
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    y = client.infer("m", [i], client_timeout=10).as_numpy("y")
                    outcome = "ok" if y.tolist() == [answer(1)] else f"gRPC answered {y}"
                except InferenceServerException as e:
                    outcome = f"gRPC {e.status()}: {e.message()}"
                records.append((started, time.monotonic(), outcome))
                if outcome != "ok":
                    time.sleep(0.02)  # pacing: no busy loop of refused connections
        finally:
            client.close()

    threads = [threading.Thread(target=hammer) for hammer in (http_hammer, http_hammer, grpc_hammer, grpc_hammer)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(1 for r in records if r[2] == "ok") >= 40, "requests to flow")
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # Not ready at once (well within the delay), over HTTP and gRPC ...
        not_ready = wait_until(lambda: requests.get(ready_url, timeout=5).status_code == 503 and time.monotonic(),
                               "/v2/health/ready to say 503", timeout=delay / 2)
        assert not grpc_client.is_server_ready()
        assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
        # ... while requests keep being answered during the delay (a fixed wait on purpose: the
        # delay is what is tested).
        time.sleep(delay / 2)
        assert server.process.poll() is None, "the server exited before --shutdown-delay-secs passed"
        code = server.process.wait(timeout=delay + 10)
        exited = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        grpc_client.close()
    assert code == 0, "".join(server.log)
    assert exited - signalled >= delay - 0.1, f"exited {exited - signalled:.2f}s after SIGTERM"
    assert not_ready - signalled < delay / 2
    # Every request that started before the listeners could close (SIGTERM + delay, with a
    # margin for the request to reach the server) succeeded; plenty of them during the delay.
    window = signalled + delay - 0.3
    early = [r for r in records if r[0] < window]
    failed = [r for r in early if r[2] != "ok"]
    assert not failed, f"{len(failed)} of {len(early)} requests failed before the drain window ended: {failed[:5]}"
    during = [r for r in early if r[0] >= signalled]
    assert len(during) >= 20, f"only {len(during)} requests during the shutdown delay"
    assert any("shutting down" in line for line in server.log)


def test_exit_timeout_with_a_stream_still_open(start, tmp_path):
    """An open gRPC stream holds the drain; the server exits 0 once --exit-timeout-secs pass."""
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo, "--exit-timeout-secs", "1")
    client = grpcclient.InferenceServerClient(server.grpc)
    answers = []
    client.start_stream(callback=lambda result, error: answers.append((result, error)))
    try:
        i = grpcclient.InferInput("x", [1, 3], "FP32")
        i.set_data_from_numpy(np.array([X], dtype=np.float32))
        client.async_stream_infer("m", [i])
        wait_until(lambda: answers, "the stream's answer")
        result, error = answers[0]
        assert error is None, error
        np.testing.assert_array_equal(result.as_numpy("y"), [answer(1)])
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=15)
        took = time.monotonic() - signalled
    finally:
        client.stop_stream(cancel_requests=True)
        client.close()
    assert code == 0, "".join(server.log)
    assert 0.8 <= took < 8, f"exited {took:.2f}s after SIGTERM"


def test_sigint_without_delay_exits_promptly(start, tmp_path):
    repo = tmp_path / "repo"
    model(repo, "m", [1])
    server = start(repo)
    assert served_by(v2_infer(server, "m")) == 1
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=10) == 0, "".join(server.log)
    assert time.monotonic() - signalled < 5
