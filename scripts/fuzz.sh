#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time from its committed seed corpus, and
# replays every input in fuzz/regressions/ first (each once crashed a decoder). Fails on any
# crash, leak of the time bound or memory limit; libFuzzer's reproducer lands in
# fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET…]     (default 20 s each, every target)
#
# Needs the machine's nightly toolchain (libFuzzer's instrumentation takes -Z flags) and
# cargo-fuzz, which it installs from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-${QUIVER_FUZZ_SECONDS:-20}}
shift || true

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
fuzz=(cargo +nightly fuzz)

"${fuzz[@]}" build
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("${fuzz[@]}" list)
fi

for target in "${targets[@]}"; do
    echo "--- fuzz $target (${seconds}s)"
    if [ -d "fuzz/regressions/$target" ]; then
        # Directories given with -runs=0 are run once, input by input: the regression check.
        "${fuzz[@]}" run "$target" "fuzz/regressions/$target" -- -runs=0
    fi
    # New finds go to a scratch directory, so the committed corpus only changes on purpose.
    scratch=$(mktemp -d)
    log="$scratch.log"
    status=0
    "${fuzz[@]}" run "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$log" >&2
        echo "fuzz target $target failed (exit $status); reproducer in fuzz/artifacts/$target/" >&2
        exit "$status"
    fi
    rm -rf "$scratch" "$log"
done
