#!/usr/bin/env bash
# HTTP benchmark of the platform core (issue 2): authenticated GET /v1/context and GET /v1/roles?limit=50
# at 64 connections with wrk, on SQLite and on PostgreSQL, plus the server's peak RSS.
#
#   benches/http.sh [sqlite|postgres|both] [seconds]
#   BENCH_BIN=/path/to/turumba benches/http.sh ...   # a binary built elsewhere (A/B runs of two commits)
#
# Needs: wrk (apt-get install wrk), curl, jq; for postgres a server at $BENCH_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/test; a fresh database is created and dropped).
# Prints figures only; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
SECS="${2:-15}"
PG_BASE="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
for tool in wrk curl jq; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  cargo build --release --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/turumba"
fi

run() {
  local backend="$1" url dir port=18600 pid
  dir=$(mktemp -d)
  if [ "$backend" = sqlite ]; then
    url="sqlite://$dir/turumba.db"
  else
    local db="turumba_bench_$$"
    psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db" && psql "$PG_BASE" -qc "CREATE DATABASE $db"
    url="${PG_BASE%/*}/$db"
  fi
  export DATABASE_URL="$url" TURUMBA_DATA_DIR="$dir" TURUMBA_PORT=$port TURUMBA_LOG=warn
  "$BIN" serve & pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  "$BIN" admin create-user --email bench@example.com --password 'bench password' --account-name Bench >/dev/null
  local api="http://127.0.0.1:$port" token
  token=$(curl -s "$api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password"}' | jq -r .data.access_token)
  for i in $(seq 1 47); do
    curl -s "$api/v1/roles" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"name\":\"role-$i\",\"permissions\":{\"contacts:read\":true}}" >/dev/null
  done
  echo "### $backend ($(nproc) cores, wrk -t2 -c64 -d${SECS}s, server and wrk on the same machine)"
  for path in /v1/context "/v1/roles?limit=50"; do
    wrk -t2 -c64 -d"${SECS}s" --latency -H "authorization: Bearer $token" "$api$path" > "$dir/wrk.txt"
    local rps p50 p99 non2xx
    rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.txt")
    p50=$(awk '$1=="50%" {print $2}' "$dir/wrk.txt")
    p99=$(awk '$1=="99%" {print $2}' "$dir/wrk.txt")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$dir/wrk.txt")
    printf '%-22s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "GET $path" "$rps" "$p50" "$p99" "${non2xx:-0}"
  done
  echo "peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ "$backend" = postgres ]; then psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS turumba_bench_$$" || true; fi
  rm -rf "$dir"
}

case "$WHICH" in
  sqlite|postgres) run "$WHICH" ;;
  both) run sqlite; run postgres ;;
  *) echo "usage: $0 [sqlite|postgres|both] [seconds]" >&2; exit 2 ;;
esac
