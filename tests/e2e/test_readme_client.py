"""The README's client, run exactly as the README shows, against the example repository."""
import subprocess
import sys

import requests

from conftest import ROOT, Server, wait_until


def test_readme_client_labels_the_cat(examples_server):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "client" / "predict_image.py"),
         str(ROOT / "examples" / "images" / "chelsea.png"), "--server", examples_server.url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 5, result.stdout
    label, probability = lines[0].split("\t")
    assert label == "Egyptian cat", result.stdout
    assert abs(float(probability) - 0.714) < 0.05, result.stdout


def test_the_readme_command_serves_the_example_on_onnx_runtime():
    """scripts/serve-example.sh, the README's first command (with the binary the tests built
    instead of a release build): it fetches ONNX Runtime's library with the project's own script
    and serves the example on it, and the README client gets its answer."""
    server = Server(None, script=ROOT / "scripts" / "serve-example.sh")
    try:
        wait_until(lambda: requests.get(f"{server.url}/v2/models/mobilenet_v2/ready", timeout=10).status_code == 200,
                   lambda: "mobilenet_v2 ready:\n" + "".join(server.log), timeout=120)
        log = "".join(server.log)
        assert "ONNX Runtime loaded" in log, log
        assert requests.get(f"{server.url}/v2/models/mobilenet_v2/config", timeout=10).json()["backend"] \
            == "onnxruntime", log
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "client" / "predict_image.py"),
             str(ROOT / "examples" / "images" / "chelsea.png"), "--server", server.url],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].startswith("Egyptian cat\t"), result.stdout
    finally:
        server.stop()
