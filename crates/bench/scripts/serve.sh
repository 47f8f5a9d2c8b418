# Sourced by the benchmark scripts: a fresh `fleetreg serve` to measure.
# Needs BIN (the binary) and PORT (its loopback port).

SPID=
# start_server DIR DATABASE-URL [serve flags…]: a fresh server working in DIR
# (emptied first), waited for until ready; sets SPID and exports FLEETREG_TOKEN.
start_server() {
  local dir=$1
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
# stop_server: SIGTERM to the running server, if any, and wait for it.
stop_server() { [[ -z $SPID ]] || { kill "$SPID" && wait "$SPID" 2>/dev/null || true; SPID=; }; }
trap 'stop_server' EXIT
