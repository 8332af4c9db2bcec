#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and end-to-end tests, then the
# Python end-to-end tests (real clients against the real binary). Installs what it needs: the
# Python packages go into a virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "Python end-to-end tests"
venv=target/venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
# The binary `cargo test` just built: no second (release) compile.
QUIVER_BIN="$PWD/target/debug/quiver" "$venv/bin/python" -m pytest -q tests/e2e "$@"
