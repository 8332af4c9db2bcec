"""`quiver bench TARGET` (README "Measure a model"): against a repository it serves itself and
against a running server, it prints a row per concurrency with throughput and p50 <= p90 <= p99,
shows progress on stderr, and fails with the server's reason when every request fails."""
import os
import subprocess

from conftest import FIXTURE_MODELS, ROOT

BINARY = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))


def bench(*args, timeout=300):
    return subprocess.run([BINARY, "bench", *args], capture_output=True, text=True, timeout=timeout)


def rows(stdout):
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["model", "concurrency", "requests"], stdout
    return [line.split() for line in lines[1:]]


def check(row, model, concurrency):
    name, c, requests, throughput, p50, p90, p99, errors = row
    assert (name, int(c), int(errors)) == (model, concurrency, 0), row
    assert int(requests) > 0 and float(throughput) > 0
    assert 0 < float(p50) <= float(p90) <= float(p99), row


def test_a_repository_is_served_for_the_run():
    result = bench(str(FIXTURE_MODELS), "--model", "half_plus_two", "--concurrency", "1,2",
                   "--duration-secs", "1.5")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert len(table) == 2
    check(table[0], "half_plus_two", 1)
    check(table[1], "half_plus_two", 2)
    assert "concurrency 2:" in result.stderr and "requests" in result.stderr


def test_a_running_server_and_its_first_ready_model(fixtures_server):
    result = bench(fixtures_server.url, "--concurrency", "3", "--duration-secs", "1")
    assert result.returncode == 0, result.stderr
    (row,) = rows(result.stdout)
    # The index lists models by name: the first ready one is `dense`.
    check(row, "dense", 3)


def test_a_request_the_model_refuses_fails_the_run_with_the_reason(fixtures_server, tmp_path):
    body = tmp_path / "bad.json"
    body.write_text('{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}')
    result = bench(fixtures_server.url, "--model", "half_plus_two", "--request", str(body),
                   "--concurrency", "1", "--duration-secs", "0.5")
    assert result.returncode != 0
    assert "400" in result.stderr and "shape" in result.stderr, result.stderr
