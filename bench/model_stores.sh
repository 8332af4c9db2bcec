#!/usr/bin/env bash
# Cold start from S3 (moto on loopback) vs. a local directory, and the warm restart from the
# model cache (issue 19): bench/model_stores.py in the tests' virtualenv.
#
#   bench/model_stores.sh [ROUNDS] [BINARY]      (defaults: 3, target/release/quiver)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/venv/bin/python ] || { python3 -m venv target/venv; }
target/venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
exec target/venv/bin/python bench/model_stores.py --rounds "${1:-3}" --binary "${2:-target/release/quiver}"
