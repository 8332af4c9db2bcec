#!/usr/bin/env bash
# The quick inner loop: formatting, lints and the Rust tests (unit and end-to-end), as
# scripts/test.sh runs them, without what makes the full run long: no download (ONNX Runtime's
# tests run if scripts/fetch-onnxruntime.sh has fetched its library once, or
# QUIVER_ONNXRUNTIME_LIB names one), no Python clients or Python end-to-end tests, and no tests
# marked #[ignore] (the slow ones, such as 50 load/unload cycles; scripts/test.sh runs them).
# A few minutes on a warm build. Arguments go to the test binaries (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked -- "$@"
