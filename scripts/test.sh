#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, Rust unit and end-to-end tests, then the
# Python end-to-end tests (real clients against the real binary). Installs what it needs: the
# Python packages go into a virtualenv under target/. Ends with a bounded run of every fuzz target
# (scripts/fuzz.sh: the nightly toolchain and cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "ONNX Runtime's library (for the onnxruntime engine's tests)"
# From the onnxruntime wheel on PyPI, into target/onnxruntime (kept between runs).
QUIVER_ONNXRUNTIME_LIB=$(scripts/fetch-onnxruntime.sh | tail -n 1)
export QUIVER_ONNXRUNTIME_LIB
echo "$QUIVER_ONNXRUNTIME_LIB"
# A release too old for Quiver, to test that it is refused with both versions named.
QUIVER_OLD_ONNXRUNTIME_LIB=$(ONNXRUNTIME_VERSION=1.22.0 scripts/fetch-onnxruntime.sh target/onnxruntime-1.22 | tail -n 1)
export QUIVER_OLD_ONNXRUNTIME_LIB

step "PostgreSQL (for the metadata store's tests)"
# crates/metadata/tests/postgres.rs and tests/e2e/postgres.py start a real PostgreSQL (initdb and
# pg_ctl from Debian's postgresql package) on a free port, so this comes before `cargo test`. A
# cluster the package itself may start (on 5432) is in nobody's way.
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
    $sudo_cmd apt-get install -y -q --no-install-recommends postgresql >/dev/null || {
        $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q --no-install-recommends postgresql >/dev/null
    }
fi

step "cargo test"
# --include-ignored: also the slow tests scripts/quick.sh leaves out.
cargo test --workspace --locked --no-fail-fast -- --include-ignored

step "Python end-to-end tests"
# perf_analyzer (from the tritonclient wheel) needs libb64 from Debian.
if ! dpkg -s libb64-0d >/dev/null 2>&1; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
    $sudo_cmd apt-get install -y -q libb64-0d >/dev/null || {
        $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q libb64-0d >/dev/null
    }
fi
# The monitoring tests (test_monitoring.py) run promtool and a real Prometheus, from Debian's
# prometheus package. They start their own Prometheus on a free port, so a prometheus service the
# package may start (on 9090) is in nobody's way.
if ! dpkg -s prometheus >/dev/null 2>&1; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
    $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null || {
        $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null
    }
fi
# The load-balancer tests run Debian's nginx in front of three replicas
# (test_load_balancer.py), and check the HAProxy config with haproxy -c (test_deploy.py).
if ! { [ -x /usr/sbin/nginx ] && [ -x /usr/sbin/haproxy ]; }; then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd=sudo; fi
    $sudo_cmd apt-get install -y -q --no-install-recommends nginx-light haproxy >/dev/null || {
        $sudo_cmd apt-get update -q >/dev/null && $sudo_cmd apt-get install -y -q --no-install-recommends nginx-light haproxy >/dev/null
    }
fi
# Makes (once) and fills a virtualenv under target/: venv DIR REQUIREMENTS [NO-DEPS REQUIREMENTS]
venv() {
    local dir=$1
    if [ ! -x "$dir/bin/python" ]; then
        python3 -m venv "$dir"
    fi
    local pip=("$dir/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" -r "$2"
    if [ -n "${3:-}" ]; then
        "${pip[@]}" --no-deps -r "$3"
    fi
}
venv target/venv tests/e2e/requirements.txt
venv target/venv-tfserving tests/e2e/tfserving/requirements.txt tests/e2e/tfserving/requirements-nodeps.txt
# The error-code modules the TF Serving API stubs import, which no light wheel ships.
site_packages=$(target/venv-tfserving/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
target/venv-tfserving/bin/python -m grpc_tools.protoc -I tests/e2e/protos --python_out="$site_packages" \
    tests/e2e/protos/xla/tsl/protobuf/error_codes.proto tests/e2e/protos/tensorflow/core/protobuf/error_codes.proto

# Azurite, Azure Blob Storage's emulator (npm), for the model-store tests.
if [ ! -x target/azurite/node_modules/.bin/azurite-blob ] && command -v npm >/dev/null; then
    npm install --prefix target/azurite --no-audit --no-fund --silent azurite@3.37.0
fi

# The binary `cargo test` just built: no second (release) compile.
export QUIVER_BIN="$PWD/target/debug/quiver"
target/venv/bin/python -m pytest -q tests/e2e --ignore=tests/e2e/tfserving "$@"
target/venv-tfserving/bin/python -m pytest -q tests/e2e/tfserving "$@"

step "Fuzz smoke: every decoder's cargo-fuzz target, bounded (fuzz/README.md)"
scripts/fuzz.sh "${QUIVER_FUZZ_SECONDS:-15}"
