"""Experiments (issue 18): weighted splits, sticky assignment, shadow traffic and the admin API
that sets them, kept in the metadata store — through real clients (requests, tritonclient over
HTTP and gRPC) against the real binary.

Version N of a test model is half_plus_two's file computing 0.5 * x + N, so every answer says
which version computed it (and `x-quiver-model-version` / `model_version` must agree).
Shares are checked against a binomial bound (five standard deviations: a false failure about
once in two million runs), never a fixed band.
"""
import concurrent.futures
import math
import shutil
import statistics
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient

from conftest import ROOT, Server, half_plus_model, wait_until

X = [0.0, 2.0, 4.0]
CONFORMANCE = ROOT / "crates" / "test-support" / "fixtures" / "conformance"


def answer(version):
    return [0.5 * x + version for x in X]


def make_repo(root, name="m", versions=(1, 2, 3), config='version_policy = "all"\n'):
    for version in versions:
        (root / name / str(version)).mkdir(parents=True)
        (root / name / str(version) / "model.onnx").write_bytes(half_plus_model(version))
    (root / name / "config.toml").write_text(config)
    return root


def v2(server, name, session=requests, version=None, headers=None, parameters=None):
    """(version that answered, per header) of a V2 HTTP inference; checks the answer is that
    version's and that the body's model_version agrees."""
    path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]}
    if parameters:
        body["parameters"] = parameters
    r = session.post(server.url + path, json=body, headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    served = int(r.headers["x-quiver-model-version"])
    assert int(r.json()["model_version"]) == served
    assert r.json()["outputs"][0]["data"] == answer(served)
    return served


def tf_rest(server, name, session=requests, headers=None):
    r = session.post(f"{server.url}/v1/models/{name}:predict", json={"instances": [X]},
                     headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    served = int(r.headers["x-quiver-model-version"])
    assert r.json()["predictions"] == [answer(served)]
    return served


def put_policy(server, name, policy, headers=None):
    return requests.put(f"{server.url}/admin/models/{name}/traffic", json=policy,
                        headers=headers or {}, timeout=30)


def metric(server, family, **labels):
    """The sum of `family`'s samples whose labels include `labels`."""
    text = requests.get(f"{server.url}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(family + "{") and not line.startswith(family + " "):
            continue
        name_labels, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in name_labels for k, v in labels.items()):
            total += float(value)
    return total


def within_binomial(count, n, p, sigmas=5):
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return abs(count - mean) <= sigmas * sd, f"{count} of {n}, expected {mean:.0f} ± {sigmas * sd:.0f}"


@pytest.fixture
def servers():
    started = []

    def start(*args, **kwargs):
        server = Server(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_a_split_shares_requests_by_weight_and_pins_bypass_it(tmp_path, servers):
    server = servers(make_repo(tmp_path / "repo"))
    # Without a policy the latest answers.
    assert v2(server, "m") == 3
    r = put_policy(server, "m", {"split": [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"model": "m", "source": "api",
                        "policy": {"split": [{"version": 1, "weight": 80}, {"version": 2, "weight": 20}]}}
    n = 1500
    with requests.Session() as session:
        served = [v2(server, "m", session) for _ in range(n)]
        assert set(served) <= {1, 2}
        ok, why = within_binomial(served.count(2), n, 0.2)
        assert ok, why
        # TF Serving's REST API follows the same split.
        tf = [tf_rest(server, "m", session) for _ in range(300)]
        ok, why = within_binomial(tf.count(2), 300, 0.2)
        assert ok, why
        # Pins (a version, a label) bypass it.
        assert {v2(server, "m", session, version=3) for _ in range(20)} == {3}
    grpc = grpcclient.InferenceServerClient(server.grpc)
    try:
        x = grpcclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([X], dtype=np.float32))
        pinned = {int(grpc.infer("m", [x], model_version="3").get_response().model_version) for _ in range(20)}
        assert pinned == {3}
        routed = [int(grpc.infer("m", [x]).get_response().model_version) for _ in range(300)]
        assert set(routed) <= {1, 2}
        ok, why = within_binomial(routed.count(2), 300, 0.2)
        assert ok, why
    finally:
        grpc.close()
    assigned = metric(server, "quiver_traffic_assignments_total", model="m", reason="split")
    assert assigned == n + 300 + 300, assigned
    assert metric(server, "quiver_traffic_assignments_total", model="m", version="2") == \
        served.count(2) + tf.count(2) + routed.count(2)


def test_a_sticky_key_keeps_each_user_on_one_variant_and_users_spread_by_weight(tmp_path, servers):
    server = servers(make_repo(tmp_path / "repo", config='version_policy = "all"\n[labels]\ncanary = 2\n'))
    policy = {"split": [{"version": 1, "weight": 70}, {"label": "canary", "weight": 30}],
              "sticky_key": "x-user-id"}
    assert put_policy(server, "m", policy).status_code == 200
    users = [f"user-{i}" for i in range(300)]
    placed = {}
    with requests.Session() as session:
        for user in users:
            seen = {v2(server, "m", session, headers={"x-user-id": user}) for _ in range(3)}
            assert len(seen) == 1, f"{user} landed on {seen}"
            placed[user] = seen.pop()
        # The key as a V2 request parameter, and over TF Serving REST: the same variant.
        for user in users[:40]:
            assert v2(server, "m", session, parameters={"x-user-id": user}) == placed[user]
            assert tf_rest(server, "m", session, headers={"X-User-Id": user}) == placed[user]
    assert set(placed.values()) == {1, 2}
    ok, why = within_binomial(list(placed.values()).count(2), len(users), 0.3)
    assert ok, why
    # gRPC metadata: the same variant again (every front end hashes the same way).
    grpc = grpcclient.InferenceServerClient(server.grpc)
    try:
        x = grpcclient.InferInput("x", [1, 3], "FP32")
        x.set_data_from_numpy(np.array([X], dtype=np.float32))
        for user in users[:40]:
            got = grpc.infer("m", [x], headers={"x-user-id": user}).get_response().model_version
            assert int(got) == placed[user], user
    finally:
        grpc.close()
    assert metric(server, "quiver_traffic_assignments_total", model="m", reason="sticky") >= 900
    # Requests without the key are drawn by weight.
    with requests.Session() as session:
        assert {v2(server, "m", session) for _ in range(200)} == {1, 2}


def test_an_unavailable_variants_share_goes_to_the_others(tmp_path, servers):
    repo = make_repo(tmp_path / "repo")
    server = servers(repo, "--repository-poll-secs", "0.2")
    policy = {"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}], "sticky_key": "u"}
    assert put_policy(server, "m", policy).status_code == 200
    with requests.Session() as session:
        before = {f"k{i}": v2(server, "m", session, headers={"u": f"k{i}"}) for i in range(100)}
        shutil.rmtree(repo / "m" / "2")
        wait_until(lambda: requests.get(f"{server.url}/v2/models/m/versions/2/ready",
                                        timeout=5).status_code != 200, "version 2 to go")
        after = {k: v2(server, "m", session, headers={"u": k}) for k in before}
    assert set(after.values()) == {1}
    # Keys that were on version 1 stayed there.
    assert all(after[k] == 1 for k, v in before.items() if v == 1)
    assert metric(server, "quiver_traffic_assignments_total", model="m", reason="fallback") >= \
        list(before.values()).count(2)
    assert any("unavailable: its share goes to the others" in line for line in server.log)


def test_bad_policies_and_labels_are_refused_with_clear_errors(tmp_path, servers):
    server = servers(make_repo(tmp_path / "repo", versions=(1, 2)))
    cases = [
        ({"split": [{"version": 1, "weight": 60}, {"version": 2, "weight": 30}]}, "add up to 90"),
        ({"split": [{"version": 1, "weight": 50}, {"version": 9, "weight": 50}]}, "no version 9"),
        ({"split": [{"version": 1, "weight": 50}, {"label": "nope", "weight": 50}]}, "no label 'nope'"),
        ({"split": [{"version": 1, "weight": 50}, {"version": 1, "weight": 50}]}, "listed twice"),
        ({"split": [{"version": 1, "weight": 50.5}, {"version": 2, "weight": 49.5}]}, "model 'm'"),
        ({"split": [{"version": 1, "weight": -1}]}, "model 'm'"),
        ({"split": [{"version": 1, "weight": 100}], "shadow": {"version": 2, "percent": 150}}, "0 to 100"),
        ({"split": [{"version": 1, "weight": 100}], "colour": "red"}, "unknown field"),
    ]
    for policy, says in cases:
        r = put_policy(server, "m", policy)
        assert r.status_code == 400, (policy, r.status_code, r.text)
        assert says in r.json()["error"] and "'m'" in r.json()["error"], (policy, r.text)
    r = requests.put(f"{server.url}/admin/models/m/traffic", data=b"{not json", timeout=30)
    assert r.status_code == 400 and "model 'm'" in r.json()["error"]
    r = put_policy(server, "absent", {"split": [{"version": 1, "weight": 100}]})
    assert r.status_code == 404, r.text
    # Nothing bad got in.
    assert requests.get(f"{server.url}/admin/models/m/traffic", timeout=30).json()["policy"] is None
    assert requests.get(f"{server.url}/admin/audit", timeout=30).json()["entries"] == []
    # Labels: only available versions.
    r = requests.put(f"{server.url}/admin/models/m/labels/canary", json={"version": 7}, timeout=30)
    assert r.status_code == 400 and "version 7" in r.json()["error"], r.text
    r = requests.put(f"{server.url}/admin/models/m/labels/canary", json={"version": "two"}, timeout=30)
    assert r.status_code == 400, r.text


def test_a_slow_shadow_never_delays_answers_and_agrees(tmp_path, servers):
    repo = tmp_path / "repo"
    for version, source in ((1, "identity_float32.onnx"), (2, "slow_identity.onnx")):
        (repo / "s" / str(version)).mkdir(parents=True)
        shutil.copy(CONFORMANCE / source, repo / "s" / str(version) / "model.onnx")
    (repo / "s" / "config.toml").write_text('version_policy = "all"\n')
    server = servers(repo)
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -2.0]}]}

    def timed(path, session):
        started = time.perf_counter()
        r = session.post(server.url + path, json=body, timeout=60)
        took = time.perf_counter() - started
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [1.5, -2.0]
        return took, int(r.headers["x-quiver-model-version"])

    with requests.Session() as session:
        slow = [timed("/v2/models/s/versions/2/infer", session)[0] for _ in range(5)]
        fast = [timed("/v2/models/s/versions/1/infer", session)[0] for _ in range(20)]
        policy = {"split": [{"version": 1, "weight": 100}], "shadow": {"version": 2, "percent": 100}}
        assert put_policy(server, "s", policy).status_code == 200
        shadowed = [timed("/v2/models/s/infer", session) for _ in range(20)]
    assert {v for _, v in shadowed} == {1}
    shadowed = [t for t, _ in shadowed]
    # The shadow costs each request its own time; the client never waits for it.
    assert statistics.median(shadowed) < statistics.median(slow) / 2, (shadowed, slow, fast)
    wait_until(lambda: metric(server, "quiver_shadow_requests_total", model="s", version="2",
                              outcome="compared") >= 1, "a shadow comparison", timeout=60)
    assert metric(server, "quiver_shadow_disagreements_total", model="s", version="2") == 0


def test_a_failing_shadow_never_fails_a_request(tmp_path, servers):
    repo = make_repo(tmp_path / "repo", versions=(1,))
    # Version 2 takes x of 2 values, not 3: every shadow run fails.
    (repo / "m" / "2").mkdir()
    shutil.copy(CONFORMANCE / "identity_float32.onnx", repo / "m" / "2" / "model.onnx")
    server = servers(repo)
    policy = {"split": [{"version": 1, "weight": 100}], "shadow": {"version": 2, "percent": 100}}
    assert put_policy(server, "m", policy).status_code == 200
    with requests.Session() as session:
        assert {v2(server, "m", session) for _ in range(50)} == {1}
    wait_until(lambda: metric(server, "quiver_shadow_requests_total", model="m", version="2",
                              outcome="error") >= 1, "a failed shadow run to be counted")
    assert metric(server, "quiver_requests_total", model="m", outcome="ok") >= 50


def test_shadow_disagreements_are_counted_with_their_difference(tmp_path, servers):
    server = servers(make_repo(tmp_path / "repo", versions=(1, 3)))
    policy = {"split": [{"version": 1, "weight": 100}], "shadow": {"version": 3, "percent": 100}}
    assert put_policy(server, "m", policy).status_code == 200
    with requests.Session() as session:
        assert {v2(server, "m", session) for _ in range(30)} == {1}
    wait_until(lambda: metric(server, "quiver_shadow_disagreements_total", model="m", version="3") >= 1,
               "disagreements to be counted")
    # Version 3 answers 2 more than version 1: every difference is 2, above the 1.0 bucket.
    assert metric(server, "quiver_shadow_difference_bucket", model="m", version="3", le="1") == 0
    assert metric(server, "quiver_shadow_difference_count", model="m", version="3") >= 1


def test_policies_and_labels_survive_a_restart_and_are_audited(tmp_path, servers):
    repo = make_repo(tmp_path / "repo")
    store = f"sqlite:{tmp_path / 'meta' / 'quiver.sqlite3'}"
    server = servers(repo, "--metadata-store", store)
    policy = {"split": [{"version": 1, "weight": 100}], "sticky_key": "x-user-id"}
    assert put_policy(server, "m", policy).status_code == 200
    r = requests.put(f"{server.url}/admin/models/m/labels/stable", json={"version": 2}, timeout=30)
    assert r.status_code == 200 and r.json()["labels"]["stable"] == 2, r.text
    # A label set through the API serves TF Serving's label route at once.
    r = requests.post(f"{server.url}/v1/models/m/labels/stable:predict", json={"instances": [X]}, timeout=30)
    assert r.json()["predictions"] == [answer(2)]
    assert {v2(server, "m") for _ in range(10)} == {1}
    server.stop()

    server = servers(repo, "--metadata-store", store)
    view = requests.get(f"{server.url}/admin/models/m/traffic", timeout=30).json()
    assert view == {"model": "m", "source": "api", "policy": policy}
    assert {v2(server, "m") for _ in range(10)} == {1}
    assert requests.get(f"{server.url}/v1/models/m/labels/stable", timeout=30).status_code == 200
    r = requests.post(f"{server.url}/v1/models/m/labels/stable:predict", json={"instances": [X]}, timeout=30)
    assert r.json()["predictions"] == [answer(2)]

    assert requests.delete(f"{server.url}/admin/models/m/traffic", timeout=30).json()["policy"] is None
    assert v2(server, "m") == 3
    entries = requests.get(f"{server.url}/admin/audit", timeout=30).json()["entries"]
    assert [(e["action"], e["model"]) for e in entries] == [
        ("traffic.put", "m"), ("label.put", "m"), ("traffic.delete", "m")]
    assert entries[0]["before"] is None and entries[0]["after"] == policy
    assert entries[2]["before"] == policy and entries[2]["after"] is None
    assert entries[0]["actor"] == "127.0.0.1" and entries[0]["time"].endswith("Z")
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)
    since = requests.get(f"{server.url}/admin/audit?since={entries[0]['seq']}", timeout=30).json()
    assert [e["action"] for e in since["entries"]] == ["label.put", "traffic.delete"]
    # The load history: both runs loaded every version, the first stopped them.
    events = requests.get(f"{server.url}/admin/models/m/history", timeout=30).json()["events"]
    loaded = [e for e in events if e["event"] == "loaded"]
    assert len(loaded) == 6 and {e["version"] for e in loaded} == {1, 2, 3}, events
    status = requests.get(f"{server.url}/admin/metadata", timeout=30).json()
    assert status["kind"] == "sqlite" and status["healthy"] is True and status["error"] is None


def test_a_config_policy_serves_until_the_api_sets_one(tmp_path, servers):
    config = ('version_policy = "all"\n[traffic]\n[[traffic.split]]\nversion = 2\nweight = 100\n')
    server = servers(make_repo(tmp_path / "repo", config=config))
    view = requests.get(f"{server.url}/admin/models/m/traffic", timeout=30).json()
    assert view["source"] == "config" and view["policy"]["split"] == [{"version": 2, "weight": 100}]
    assert {v2(server, "m") for _ in range(10)} == {2}
    assert put_policy(server, "m", {"split": [{"version": 1, "weight": 100}]}).status_code == 200
    assert {v2(server, "m") for _ in range(10)} == {1}
    view = requests.delete(f"{server.url}/admin/models/m/traffic", timeout=30).json()
    assert view["source"] == "config"
    assert {v2(server, "m") for _ in range(10)} == {2}


def test_a_policy_change_is_atomic_for_concurrent_clients(tmp_path, servers):
    """Clients under load while the policy flips between versions: every request answers, with
    the answer of the version its header names."""
    server = servers(make_repo(tmp_path / "repo"))
    stop = time.monotonic() + 3

    def client():
        count = 0
        with requests.Session() as session:
            while time.monotonic() < stop:
                v2(server, "m", session)
                count += 1
        return count

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        running = [pool.submit(client) for _ in range(4)]
        flips = 0
        while time.monotonic() < stop:
            version = 1 + flips % 2
            assert put_policy(server, "m", {"split": [{"version": version, "weight": 100}]}).status_code == 200
            flips += 1
        assert sum(f.result() for f in running) > 0
    assert flips > 5
