"""bench/soak.sh for two minutes (bench/RESULTS.md has a 30-minute run): mixed traffic on every
protocol with malformed requests, roll-overs and loads/unloads; memory grows at most 10% after the
warm-up, descriptors and threads come back to their baseline, no request fails, no 5xx, no crash."""
import os
import subprocess

from conftest import ROOT


def test_two_minute_soak():
    binary = os.environ.get("QUIVER_BIN", str(ROOT / "target" / "debug" / "quiver"))
    seconds = os.environ.get("QUIVER_SOAK_SECONDS", "120")
    run = subprocess.run([str(ROOT / "bench" / "soak.sh"), seconds, binary], capture_output=True, text=True,
                         timeout=int(float(seconds)) + 600)
    print(run.stdout, run.stderr[-3000:])
    assert "VERDICT: PASS" in run.stdout, run.stdout + run.stderr[-3000:]
    assert run.returncode == 0
