#!/usr/bin/env bash
# Maximum sustained health checks per second of one `fleetreg serve` (SQLite),
# judged from the simulator's request log (docs/BENCHMARKS.md, "Health scheduler").
#
# Builds once, starts `fleetreg sim`, registers CLUSTERS simulated SPOKE clusters
# (4 HTTP calls per check) in a serve with the scheduler off, then for each
# interval in INTERVALS restarts serve on the same database with
# `health_check.spoke_interval_seconds: I` (so the first checks are spread over
# one interval) and runs `fleetreg bench --scenario scheduler`. The highest
# CLUSTERS / I whose window shows every check on time (0 missed, p99 lateness
# <= MAX_P99_MS) is the maximum sustained rate. Everything started here is
# stopped on exit; results go to OUT.
#
# Usage: crates/bench/scripts/scheduler-sweep.sh
# Environment (defaults): CLUSTERS=10000 INTERVALS="30 10 5 3"
#   WINDOW=90 (rounded down to a whole number of intervals)
#   MAX_P99_MS=1000 SIM_ADDR=127.0.0.1:19400 SERVE_ADDR=127.0.0.1:19401
#   OUT=target/scheduler-sweep NO_BUILD=0 (1: use the existing release binary)
#   BIN=target/release/fleetreg SERVE_BIN=$BIN (another build's serve, to compare)
set -euo pipefail

cd "$(dirname "$0")/../../.."
CLUSTERS=${CLUSTERS:-10000}
INTERVALS=${INTERVALS:-"30 10 5 3"}
WINDOW=${WINDOW:-90}
MAX_P99_MS=${MAX_P99_MS:-1000}
SIM_ADDR=${SIM_ADDR:-127.0.0.1:19400}
SERVE_ADDR=${SERVE_ADDR:-127.0.0.1:19401}
OUT=${OUT:-target/scheduler-sweep}
BIN=$(realpath "${BIN:-target/release/fleetreg}")
SERVE_BIN=$(realpath "${SERVE_BIN:-$BIN}")

if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release -p fleetreg
fi
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
work=$(mktemp -d)
# serve runs in $work (its master key, admin token and audit head files land
# there) with a preset admin token that the benchmark sends.
token="sweep-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
sim_pid=
serve_pid=

stop() { # pid: SIGTERM, then wait for it
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop "$serve_pid"
    stop "$sim_pid"
    rm -rf "$work"
}
trap cleanup EXIT

wait_http() { # url: until it answers 2xx (30 s at most)
    for _ in $(seq 1 150); do
        if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "no answer from $1" >&2
    return 1
}

start_serve() { # enabled interval
    local config="$work/config-$2.yaml"
    cat >"$config" <<YAML
cluster_registry:
  health_check:
    enabled: $1
    spoke_interval_seconds: $2
YAML
    (cd "$work" && FLEETREG_ADMIN_TOKEN="$token" exec "$SERVE_BIN" serve --config "$config" \
        --database-url "sqlite://$work/sched.db" --listen "$SERVE_ADDR") >>"$OUT/serve.log" 2>&1 &
    serve_pid=$!
    wait_http "http://$SERVE_ADDR/ready"
}

bench() {
    FLEETREG_TOKEN="$token" "$BIN" bench --server "http://$SERVE_ADDR" --server-pid "$serve_pid" \
        --scenario scheduler --sim "http://$SIM_ADDR" --sim-pid "$sim_pid" \
        --sched-clusters "$CLUSTERS" "$@"
}

: >"$OUT/serve.log"
"$BIN" sim --listen "$SIM_ADDR" >"$OUT/sim.log" 2>&1 &
sim_pid=$!
wait_http "http://$SIM_ADDR/admin/clock"

echo "== setup: $CLUSTERS clusters, scheduler off ($(uptime))"
start_serve false 30
bench --sched-setup-only 2>&1 | tee "$OUT/setup.txt"
stop "$serve_pid"

for interval in $INTERVALS; do
    echo "== spoke_interval_seconds $interval: $((CLUSTERS / interval)) checks/s expected ($(uptime))"
    start_serve true "$interval"
    { echo "uptime before: $(uptime)"; } >"$OUT/scheduler-$interval.txt"
    window=$(( WINDOW / interval * interval )) # a whole number of intervals
    [ "$window" -gt 0 ] || window=$interval
    bench --sched-interval-secs "$interval" --sched-window-secs "$window" \
        --sched-warmup-secs "$((interval + 5))" --sched-max-p99-ms "$MAX_P99_MS" \
        --json 2>>"$OUT/scheduler-$interval.txt" >"$OUT/scheduler-$interval.json"
    echo "uptime after: $(uptime)" >>"$OUT/scheduler-$interval.txt"
    grep -v '^uptime' "$OUT/scheduler-$interval.txt" | sed -n '/^== scheduler/,$p'
    stop "$serve_pid"
done

echo
echo "interval_s expected/s achieved/s p99_late_ms max_late_ms missed server_cpu_%core server_rss_MB sustained"
for interval in $INTERVALS; do
    jq -r --arg i "$interval" '.rows[0] as $r | $r.details as $d |
        [$i, ($d.schedule.expected_per_sec|floor), ($d.schedule.achieved_per_sec*10|floor/10),
         ($d.schedule.lateness.p99_ms // "-"), ($d.schedule.lateness.max_ms // "-"),
         $d.schedule.missed_intervals, (($d.cpu_percent_of_one_core.server // 0)|floor),
         ((($d.server_rss_bytes // 0)/1e6)|floor), $d.sustained] | @tsv' \
        "$OUT/scheduler-$interval.json"
done | column -t
echo "full output: $OUT/"
