#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time and fails on the
# first crash (docs/FUZZING.md).
#
#   scripts/fuzz.sh [seconds-per-target]     (default 20)
#
# Installs cargo-fuzz when missing. cargo-fuzz passes nightly-only flags to
# rustc; with the stable toolchain this sets RUSTC_BOOTSTRAP=1 so they are
# accepted. Built without a sanitizer (`-s none`: the targets are safe Rust)
# and with debug assertions (`-a`: integer overflow panics). New inputs go to
# fuzz/target/corpus/<target> (not committed); the seeds in fuzz/corpus are
# only read. A crash leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-20}"
cd "$(dirname "$0")/../fuzz"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
flags=(-s none -a)

cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list); do
    work="target/corpus/$target"
    mkdir -p "$work"
    echo "== $target: ${seconds}s"
    cargo fuzz run "${flags[@]}" "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
done
echo "fuzz: every target ran ${seconds}s without a crash"
