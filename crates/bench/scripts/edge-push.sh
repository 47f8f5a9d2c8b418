#!/usr/bin/env bash
# Issue 13's edge push (docs/BENCHMARKS.md, "Edge push"): `fleetreg bench
# --scenario edge-push` (1,000 simulated agents in the bench process, IP
# literals on loopback only) against a fresh release server per run, on
# SQLite and on PostgreSQL, then etcd's one-put-to-1,000-watchers in the same
# run for scale.
#
# Usage: crates/bench/scripts/edge-push.sh
#   env: NO_BUILD=1 (use target/release/fleetreg as is), RUNS=runs per engine (2),
#        ENGINES="sqlite postgres", PEER=dir of the etcd scripts (NO_ETCD=1 skips it),
#        PG_ADMIN=postgres admin URL, BIN=the binary to measure, OUT=output dir
# Output: target/edge-push/{sqlite,postgres}-N.txt and etcd.txt
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
PEER=${PEER:-$(cd ../shared/peers/etcd && pwd)}
RUNS=${RUNS:-2}
ENGINES=${ENGINES:-sqlite postgres}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432}
OUT=${OUT:-$ROOT/target/edge-push}
BIN=${BIN:-$ROOT/target/release/fleetreg}
PORT=18398
mkdir -p "$OUT"
[[ ${NO_BUILD:-} == 1 ]] || cargo build --release -p fleetreg

. "$ROOT/crates/bench/scripts/serve.sh"

for run in $(seq "$RUNS"); do
  for engine in $ENGINES; do
    dir=$OUT/$engine-$run.d
    case $engine in
      sqlite) url="sqlite://$dir/fleet.db" ;;
      postgres)
        psql "$PG_ADMIN/postgres" -qc 'DROP DATABASE IF EXISTS benchedge' -c 'CREATE DATABASE benchedge'
        url="$PG_ADMIN/benchedge" ;;
      *) echo "unknown engine $engine" >&2; exit 2 ;;
    esac
    echo "== $engine, run $run ($(uptime))"
    start_server "$dir" "$url"
    "$BIN" bench --server "http://127.0.0.1:$PORT" --token "$FLEETREG_TOKEN" \
      --server-pid "$SPID" --scenario edge-push | tee "$OUT/$engine-$run.txt"
    stop_server
  done
done
psql "$PG_ADMIN/postgres" -qc 'DROP DATABASE IF EXISTS benchedge' || true

if [[ ${NO_ETCD:-} != 1 ]]; then
  echo "== etcd: one put to 1,000 watchers"
  "$PEER/install.sh" >/dev/null
  "$PEER/watch_fanout.py" -W 1000 | tee "$OUT/etcd.txt"
fi
