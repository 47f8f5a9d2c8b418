#!/usr/bin/env bash
# Issue 10's speed table in ONE run on this machine: etcd 3.4 (Debian's
# etcd-server, driven by the peer scripts in ../shared/peers/etcd with wrk) and
# fleetreg (release build, `fleetreg bench`), one after the other, loopback only.
# Every registered URL is an IP literal on a loopback port where nothing listens
# (see `UNREACHABLE_API_SERVER` in crates/bench/src/scenarios.rs): no name is
# ever resolved.
#
# Usage: crates/bench/scripts/vs-etcd.sh
#   env: NO_BUILD=1 (use target/release/fleetreg as is), PEER=dir of the etcd
#        scripts, DUR=seconds per timed scenario (10), PG_ADMIN=postgres admin URL
# Output: target/vs-etcd/{etcd,sqlite-default,sqlite-nocheck,sqlite-reads,sqlite-reads-wrk,postgres}.txt
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
PEER=${PEER:-$(cd ../shared/peers/etcd && pwd)}
DUR=${DUR:-10}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432}
OUT=$ROOT/target/vs-etcd
BIN=$ROOT/target/release/fleetreg
PORT=18181
mkdir -p "$OUT"
[[ ${NO_BUILD:-} == 1 ]] || cargo build --release -p fleetreg
"$PEER/install.sh" >/dev/null

echo "== etcd (same document shape, wrk over the JSON gateway)"
"$PEER/bench.sh" 23790 "${DUR}s" | tee "$OUT/etcd.txt"

. "$ROOT/crates/bench/scripts/serve.sh"
bench() { "$BIN" bench --server "http://127.0.0.1:$PORT" --server-pid "$SPID" --duration-secs "$DUR" "$@"; }

echo "== fleetreg, SQLite, default configuration (health checks and discovery on)"
start_server "$OUT/sqlite-default" "sqlite://$OUT/sqlite-default/fleet.db"
bench --scenario register-64,register-1 --clusters 10000000 | tee "$OUT/sqlite-default.txt"
stop_server

echo "== fleetreg, SQLite, --no-health-checks"
start_server "$OUT/sqlite-nocheck" "sqlite://$OUT/sqlite-nocheck/fleet.db" --no-health-checks
bench --scenario register-64,register-1 --clusters 10000000 | tee "$OUT/sqlite-nocheck.txt"
stop_server

echo "== fleetreg, SQLite, reads at 100k clusters (--no-health-checks: 100k unreachable clusters would otherwise be checked throughout)"
start_server "$OUT/sqlite-reads" "sqlite://$OUT/sqlite-reads/fleet.db" --no-health-checks
bench --scenario seed,get,list,rss,fanout,rss --clusters 100000 --read-concurrency 64 | tee "$OUT/sqlite-reads.txt"
echo "== fleetreg, SQLite, the same reads driven by wrk (etcd's load generator)"
"$ROOT/crates/bench/scripts/wrk-reads.sh" "http://127.0.0.1:$PORT" "$SPID" "${DUR}s" | tee "$OUT/sqlite-reads-wrk.txt"
stop_server

echo "== fleetreg, PostgreSQL, default configuration"
DB=fleetreg_vs_etcd
psql "$PG_ADMIN/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
start_server "$OUT/postgres" "$PG_ADMIN/$DB"
bench --scenario register-64,register-1 --clusters 10000000 | tee "$OUT/postgres.txt"
stop_server
psql "$PG_ADMIN/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
echo "results in $OUT"
