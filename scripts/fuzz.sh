#!/usr/bin/env bash
# Runs every libFuzzer target in fuzz/ for a bounded time and fails on the
# first crash (docs/FUZZING.md).
#
#   scripts/fuzz.sh [seconds-per-target] [profile]     (default: 20 release)
#
# `.ci/run` calls `scripts/fuzz.sh 10 fuzz-ci`: the `fuzz-ci` profile
# (fuzz/Cargo.toml) builds in about half the time of `release` and runs
# slower, which suits a short smoke run; long runs use `release`.
#
# Builds with plain cargo and the flags cargo-fuzz passes (sanitizer-coverage
# instrumentation, `--cfg fuzzing`, debug assertions and overflow checks; no
# sanitizer: the targets are safe Rust), so nothing needs installing and the
# stable toolchain is enough. `--target` keeps the instrumentation off build
# scripts and proc macros. New inputs go to fuzz/target/corpus/<target> (not
# committed); the seeds in fuzz/corpus are only read. A crash leaves its input
# in fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-20}"
profile="${2:-release}"
cd "$(dirname "$0")/../fuzz"

host="$(rustc -vV | sed -n 's/^host: //p')"
coverage=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
)
# Not --locked: a dependency added to the main workspace joins fuzz/Cargo.lock
# here, with every version already in it kept.
RUSTFLAGS="${coverage[*]}" cargo build --bins --profile "$profile" --target "$host"

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^fleetreg-fuzz$')
for target in $targets; do
    work="target/corpus/$target"
    artifacts="artifacts/$target/"
    mkdir -p "$work" "$artifacts"
    echo "== $target: ${seconds}s"
    "target/$host/$profile/$target" "$work" "corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$artifacts" -print_final_stats=1
done
echo "fuzz: every target ran ${seconds}s without a crash"
