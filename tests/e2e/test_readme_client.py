"""The README's client, run exactly as the README shows, against the example repository."""
import subprocess
import sys

from conftest import ROOT


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
