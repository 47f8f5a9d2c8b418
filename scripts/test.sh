#!/usr/bin/env bash
# The README's test command: `cargo test --workspace` (arguments are passed
# on, e.g. `scripts/test.sh -- --test-threads=4`), then how many tests skipped
# (some of) their work and why. cargo hides a passing test's output, so a test
# that returns early for want of PostgreSQL, Redis, prometheus, … would pass
# silently: every skip goes through fleetreg_testkit::skip, which appends its
# reason to a record of its own in this run's directory (FLEETREG_SKIP_DIR,
# under target/fleetreg-skips/), read back here. CI (.ci/run) runs this too,
# with FLEETREG_REQUIRE_* set, where a skip is a failure: it prints "0 tests
# skipped". The exit status is cargo's.
set -uo pipefail
cd "$(dirname "$0")/.."

skips_root="${CARGO_TARGET_DIR:-target}/fleetreg-skips"
mkdir -p "$skips_root"
# Runs that were killed leave their directory behind: drop those older than a day.
find "$skips_root" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null
# A directory of this run's own (absolute: tests run in their crate's directory),
# so that concurrent runs in one target directory do not count each other's skips.
FLEETREG_SKIP_DIR="$(realpath "$(mktemp -d "$skips_root/run.XXXXXX")")"
export FLEETREG_SKIP_DIR
trap 'rm -rf "$FLEETREG_SKIP_DIR"' EXIT

cargo test --workspace "$@"
status=$?

# One record per test binary and test (`<binary>.<test>.skip`), one reason per line.
shopt -s nullglob
records=("$FLEETREG_SKIP_DIR"/*.skip)
count=${#records[@]}
echo
if [ "$count" -eq 0 ]; then
  echo "0 tests skipped"
else
  [ "$count" -eq 1 ] && noun=test || noun=tests
  echo "$count $noun skipped:"
  # Grouped by reason, most frequent first, with up to three of the tests.
  for record in "${records[@]}"; do
    name="$(basename "$record" .skip)"
    while IFS= read -r reason; do
      printf '%s\t%s\n' "$reason" "$name"
    done < "$record"
  done | sort | awk -F '\t' '
    {
      if (!($1 in n)) { order[++k] = $1 }
      n[$1]++
      if (n[$1] <= 3) { tests[$1] = tests[$1] (n[$1] > 1 ? ", " : "") $2 }
    }
    END {
      for (i = 1; i <= k; i++) {
        r = order[i]
        more = n[r] > 3 ? sprintf(", and %d more", n[r] - 3) : ""
        printf "%d\t%s\t%s%s\n", n[r], r, tests[r], more
      }
    }' | sort -t "$(printf '\t')" -k1,1nr -k2 | awk -F '\t' '{ printf "  %d× %s\n      %s\n", $1, $2, $3 }'
  echo "(scripts/install-test-deps.sh installs what they need; FLEETREG_REQUIRE_…=1 makes a skip a failure)"
fi
exit "$status"
