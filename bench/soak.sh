#!/usr/bin/env bash
# A soak: mixed traffic on every protocol for DURATION seconds (TF Serving REST and gRPC, KServe
# V2 HTTP JSON and binary, V2 gRPC, ~1% malformed requests, a version rolled in every minute, a
# model loaded and unloaded through the API), sampling the server's resident memory, file
# descriptors and threads every 10 s; prints the table and a verdict, and exits 1 when it fails
# (memory grew more than 10% after the warm-up, descriptors or threads did not come back to their
# baseline, any request failed or got a 5xx, the server crashed or panicked). bench/soak.py has
# the details.
#
#   bench/soak.sh DURATION [BINARY]     (default binary: target/release/quiver)
#
# Runs on tract (the fixture models are tiny) with the test virtualenvs scripts/test.sh makes:
# target/venv (tritonclient, requests) and target/venv-tfserving (the TF Serving API stubs).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:?usage: bench/soak.sh DURATION [BINARY]}
binary=${2:-${QUIVER_BIN:-target/release/quiver}}
for python in target/venv/bin/python target/venv-tfserving/bin/python; do
    [ -x "$python" ] || { echo "$python is missing: run scripts/test.sh once (it makes the virtualenvs)" >&2; exit 2; }
done
[ -x "$binary" ] || { echo "no quiver binary at $binary (cargo build --release)" >&2; exit 2; }
exec target/venv/bin/python bench/soak.py --duration "$duration" --binary "$binary" \
    --tfserving-python target/venv-tfserving/bin/python
