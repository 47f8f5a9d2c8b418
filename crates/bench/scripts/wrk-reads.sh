#!/usr/bin/env bash
# `GET` by id and the filtered list of a running server, driven by wrk (etcd's
# load generator in ../shared/peers/etcd) instead of `fleetreg bench`: on two
# cores the load generator's own CPU is part of every figure, and wrk uses less
# per request than `fleetreg bench`'s reqwest workers. Prints one line per
# scenario: req/s, p50 and p99 ms, requests, errors, and CPU in % of one core
# (server / whole machine), measured as the etcd peer's script does.
#
# Usage: crates/bench/scripts/wrk-reads.sh URL SERVER_PID [duration=8s]
#   env: FLEETREG_TOKEN (a token that may read clusters), CONNECTIONS (64)
# The server must hold the `seed` scenario's fleet (`fleetreg bench --scenario seed`).
set -euo pipefail
cd "$(dirname "$0")"
URL=$1; SPID=$2; DUR=${3:-8s}; C=${CONNECTIONS:-64}
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }
IDS=$(mktemp); trap 'rm -f "$IDS"' EXIT
python3 - "$URL" "$FLEETREG_TOKEN" "$IDS" <<'PY'
import json, sys, urllib.request
url, token, out = sys.argv[1:]
ids, page = [], 1
while True:
    req = urllib.request.Request(f"{url}/api/v1/clusters?page_size=100&page={page}",
                                 headers={"Authorization": f"Bearer {token}"})
    items = json.load(urllib.request.urlopen(req, timeout=30))["items"]
    ids += [item["id"] for item in items]
    if len(items) < 100: break
    page += 1
open(out, "w").write("\n".join(ids) + "\n")
print(f"{len(ids)} cluster ids collected", file=sys.stderr)
PY
ticks() { echo "$(awk '{print $14 + $15}' "/proc/$SPID/stat") $(awk 'NR==1{print $2+$3+$4+$7+$8+$9}' /proc/stat) $(date +%s%N)"; }
printf '%-22s %9s %8s %8s %9s %6s %14s\n' scenario req/s p50_ms p99_ms requests errors cpu%server/all
for mode in get list; do
  read -r s0 a0 w0 < <(ticks)
  read -r rps p50 p99 n e_status e_sock < <(wrk -t2 -c"$C" -d"$DUR" -s wrk-reads.lua "$URL" -- "$mode" "$IDS" "$FLEETREG_TOKEN" | tail -1)
  read -r s1 a1 w1 < <(ticks)
  hz=$(getconf CLK_TCK)
  cpu=$(( (s1 - s0) * 100 * 10**9 / (hz * (w1 - w0)) ))/$(( (a1 - a0) * 100 * 10**9 / (hz * (w1 - w0)) ))
  printf '%-22s %9s %8s %8s %9s %6s %14s\n' "wrk $mode c=$C" "$rps" "$p50" "$p99" "$n" "$((e_status + e_sock))" "$cpu"
done
