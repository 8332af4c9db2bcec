"""The metadata store shared through a real PostgreSQL (Debian's package, started by the test on
a loopback port in a temporary directory; tests/e2e/postgres.py): three Quiver replicas on one
store apply a traffic policy or a label set through any of them, route every sticky user to the
same version, keep serving the last known state when the store is lost (and say so), catch up
when it is back; a store unreachable at start stops the server with a clear error.

Version N of the test model is half_plus_two's file computing 0.5 * x + N.
"""
import os
import socket
import subprocess

import requests

from conftest import ROOT, Server, half_plus_model, wait_until
from postgres import postgres_server

X = [0.0, 2.0, 4.0]


def make_repo(root):
    for version in (1, 2, 3):
        (root / "m" / str(version)).mkdir(parents=True)
        (root / "m" / str(version) / "model.onnx").write_bytes(half_plus_model(version))
    (root / "m" / "config.toml").write_text('version_policy = "all"\n')
    return root


def served(server, headers=None):
    r = requests.post(f"{server.url}/v2/models/m/infer", headers=headers or {}, timeout=30, json={
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]})
    assert r.status_code == 200, r.text
    version = int(r.headers["x-quiver-model-version"])
    assert r.json()["outputs"][0]["data"] == [0.5 * x + version for x in X]
    return version


def policy_of(server):
    return requests.get(f"{server.url}/admin/models/m/traffic", timeout=30).json()["policy"]


def status(server):
    return requests.get(f"{server.url}/admin/metadata", timeout=30).json()


def metric(server, name):
    for line in requests.get(f"{server.url}/metrics", timeout=30).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_three_replicas_share_policies_labels_and_sticky_routing(tmp_path):
    repo = make_repo(tmp_path / "repo")
    with postgres_server() as pg:
        replicas = []
        try:
            for i in range(3):
                replicas.append(Server(repo, "--metadata-store", pg.url, "--metadata-poll-secs", "1",
                                       "--replica-id", f"r{i}"))
            a, b, c = replicas
            assert status(a)["kind"] == "postgres" and "127.0.0.1" in status(a)["location"]
            policy = {"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
                      "sticky_key": "x-user-id"}
            r = requests.put(f"{a.url}/admin/models/m/traffic", json=policy, timeout=30)
            assert r.status_code == 200, r.text
            for replica in (b, c):
                wait_until(lambda: policy_of(replica) == policy, "the policy to reach every replica", timeout=10)
            # Every replica places every user on the same version, with no coordination.
            for user in (f"user-{i}" for i in range(60)):
                seen = {served(replica, {"x-user-id": user}) for replica in replicas}
                assert len(seen) == 1, (user, seen)

            # A label set through one is in force on the others.
            r = requests.put(f"{b.url}/admin/models/m/labels/canary", json={"version": 3}, timeout=30)
            assert r.status_code == 200, r.text
            wait_until(lambda: requests.get(f"{c.url}/v1/models/m/labels/canary", timeout=30).status_code == 200,
                       "the label to reach replica c", timeout=10)

            # Removed through the third: the latest answers everywhere again.
            assert requests.delete(f"{c.url}/admin/models/m/traffic", timeout=30).status_code == 200
            for replica in (a, b):
                wait_until(lambda: policy_of(replica) is None, "the removal to reach every replica", timeout=10)
            assert {served(replica) for replica in replicas} == {3}

            # One audit log, whichever replica is asked; every replica's loads in the history.
            entries = requests.get(f"{a.url}/admin/audit", timeout=30).json()["entries"]
            assert [e["action"] for e in entries] == ["traffic.put", "label.put", "traffic.delete"]
            assert requests.get(f"{c.url}/admin/audit", timeout=30).json()["entries"] == entries
            events = requests.get(f"{b.url}/admin/models/m/history", timeout=30).json()["events"]
            assert {e["replica"] for e in events if e["event"] == "loaded"} == {"r0", "r1", "r2"}
            revisions = {status(replica)["revision"] for replica in replicas}
            assert len(revisions) == 1, revisions
        finally:
            for replica in replicas:
                replica.stop()


def test_a_lost_store_keeps_the_last_state_serving_and_says_so(tmp_path):
    repo = make_repo(tmp_path / "repo")
    with postgres_server() as pg:
        server = Server(repo, "--metadata-store", pg.url, "--metadata-poll-secs", "0.2")
        try:
            policy = {"split": [{"version": 1, "weight": 100}]}
            assert requests.put(f"{server.url}/admin/models/m/traffic", json=policy, timeout=30).status_code == 200
            assert metric(server, "quiver_metadata_store_up") == 1
            pg.stop()
            wait_until(lambda: not status(server)["healthy"], "the replica to notice the store is gone", timeout=30)
            assert status(server)["error"]
            assert metric(server, "quiver_metadata_store_up") == 0
            assert any("metadata store unreachable" in line for line in server.log)
            # The last known policy keeps serving; changes are refused, not applied half-way.
            assert {served(server) for _ in range(10)} == {1}
            r = requests.put(f"{server.url}/admin/models/m/traffic",
                             json={"split": [{"version": 2, "weight": 100}]}, timeout=60)
            assert r.status_code == 503, r.text
            assert "nothing was changed" in r.json()["error"]
            assert {served(server) for _ in range(10)} == {1}
            assert requests.get(f"{server.url}/v2/health/ready", timeout=30).status_code == 200
            details = requests.get(f"{server.url}/v2/health/ready?verbose", timeout=30)
            assert details.status_code == 200
            assert "[!] metadata-store" in details.text and "cannot be reached" in details.text, details.text

            pg.start()
            wait_until(lambda: status(server)["healthy"], "the replica to see the store again", timeout=30)
            assert "[+] metadata-store" in requests.get(f"{server.url}/v2/health/ready?verbose", timeout=30).text
            assert metric(server, "quiver_metadata_store_up") == 1
            r = requests.put(f"{server.url}/admin/models/m/traffic",
                             json={"split": [{"version": 2, "weight": 100}]}, timeout=30)
            assert r.status_code == 200, r.text
            assert {served(server) for _ in range(10)} == {2}
        finally:
            server.stop()


def test_a_store_unreachable_at_start_stops_the_server(tmp_path):
    repo = make_repo(tmp_path / "repo")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
    url = f"postgres://quiver:s3cret@127.0.0.1:{port}/quiver"
    result = subprocess.run([binary, "serve", "--model-repository", str(repo), "--host", "127.0.0.1",
                             "--rest-port", "0", "--grpc-port", "0", "--metadata-store", url],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "metadata store" in result.stderr and f"127.0.0.1:{port}" in result.stderr, result.stderr
    assert "s3cret" not in result.stderr
    assert "panicked" not in result.stderr
