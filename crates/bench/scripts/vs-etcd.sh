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
# Output: target/vs-etcd/{etcd,sqlite-default,sqlite-nocheck,sqlite-reads,postgres}.txt
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

SPID=
start() { # name database-url [serve flags…]: a fresh server in target/vs-etcd/NAME
  local dir=$OUT/$1
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && exec "$BIN" serve --database-url "$2" --listen "127.0.0.1:$PORT" "${@:3}" >serve.log 2>&1) &
  SPID=$!
  for _ in $(seq 150); do
    [[ -s $dir/fleetreg-admin.token ]] && curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break
    sleep 0.2
  done
  FLEETREG_TOKEN=$(cat "$dir/fleetreg-admin.token")
  export FLEETREG_TOKEN
}
stop() { kill "$SPID" && wait "$SPID" 2>/dev/null || true; }
trap 'stop' EXIT
bench() { "$BIN" bench --server "http://127.0.0.1:$PORT" --server-pid "$SPID" --duration-secs "$DUR" "$@"; }

echo "== fleetreg, SQLite, default configuration (health checks and discovery on)"
start sqlite-default "sqlite://$OUT/sqlite-default/fleet.db"
bench --scenario register-64,register-1 --clusters 10000000 | tee "$OUT/sqlite-default.txt"
stop

echo "== fleetreg, SQLite, --no-health-checks"
start sqlite-nocheck "sqlite://$OUT/sqlite-nocheck/fleet.db" --no-health-checks
bench --scenario register-64,register-1 --clusters 10000000 | tee "$OUT/sqlite-nocheck.txt"
stop

echo "== fleetreg, SQLite, reads at 100k clusters (--no-health-checks: 100k unreachable clusters would otherwise be checked throughout)"
start sqlite-reads "sqlite://$OUT/sqlite-reads/fleet.db" --no-health-checks
bench --scenario seed,get,list,rss,fanout,rss --clusters 100000 --read-concurrency 64 | tee "$OUT/sqlite-reads.txt"
stop

echo "== fleetreg, PostgreSQL, default configuration"
DB=fleetreg_vs_etcd
psql "$PG_ADMIN/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
start postgres "$PG_ADMIN/$DB"
bench --scenario register-64,register-1 --clusters 10000000 | tee "$OUT/postgres.txt"
stop
psql "$PG_ADMIN/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null
echo "results in $OUT"
