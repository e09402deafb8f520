#!/usr/bin/env bash
# The 100,000-recipient group message (issue 16), from the API's accept until every message is `sent`,
# to a Telegram channel pointed at a local Telegram-format server (its own process, one worker):
#   sqlite:   one `turumba serve` (role all) on an embedded SQLite file;
#   postgres: one `--role api` and one `--role worker` process on PostgreSQL and RabbitMQ.
# Prints the fan-out's own time, the whole send's time and rate, each server process's peak RSS, and,
# in the same run, the adapter alone against the same kind of server (`turumba-bench adapters`: the
# ceiling of the sending part on these cores).
#
#   benches/groups.sh [sqlite|postgres|both] [recipients]
#   BENCH_BIN=… BENCH_TOOL=… benches/groups.sh …   # binaries built elsewhere
#
# Needs: curl, psql; RabbitMQ at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f) for postgres.
# Prints figures only; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
N="${2:-100000}"
PG_BASE="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
AMQP="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"; TOOL="${BENCH_TOOL:?give BENCH_TOOL with BENCH_BIN}"
else
  cargo build --release --quiet --bin turumba --bin turumba-bench
  BIN="${CARGO_TARGET_DIR:-target}/release/turumba"; TOOL="${CARGO_TARGET_DIR:-target}/release/turumba-bench"
fi
PROVIDER_PORT=18900 API_PORT=18800 WORKER_PORT=18801
for port in $PROVIDER_PORT $API_PORT $WORKER_PORT; do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then echo "port $port is taken" >&2; exit 1; fi
done

wait_up() { for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done; echo "no server on $1" >&2; exit 1; }

run() {
  local backend="$1" dir pids=() names=() db="" url
  dir=$(mktemp -d)
  "$TOOL" telegram-server --port $PROVIDER_PORT > /dev/null & local provider=$!
  if [ "$backend" = sqlite ]; then
    url="sqlite://$dir/turumba.db"
    DATABASE_URL="$url" TURUMBA_DATA_DIR="$dir" TURUMBA_PORT=$API_PORT TURUMBA_LOG=warn "$BIN" serve --role all &
    pids+=($!); names+=(all)
  else
    db="turumba_bench_groups_$$"
    psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db" && psql "$PG_BASE" -qc "CREATE DATABASE $db"
    url="${PG_BASE%/*}/$db"
    local prefix="bench_groups_$$_"
    DATABASE_URL="$url" AMQP_URL="$AMQP" TURUMBA_EVENTS__AMQP_PREFIX="$prefix" TURUMBA_DATA_DIR="$dir" TURUMBA_PORT=$API_PORT \
      TURUMBA_LOG=warn "$BIN" serve --role api &
    pids+=($!); names+=(api)
    wait_up $API_PORT
    DATABASE_URL="$url" AMQP_URL="$AMQP" TURUMBA_EVENTS__AMQP_PREFIX="$prefix" TURUMBA_DATA_DIR="$dir" TURUMBA_PORT=$WORKER_PORT \
      TURUMBA_LOG=warn "$BIN" serve --role worker &
    pids+=($!); names+=(worker)
    wait_up $WORKER_PORT
  fi
  wait_up $API_PORT
  DATABASE_URL="$url" TURUMBA_DATA_DIR="$dir" "$BIN" admin create-user --email bench@example.com \
    --password 'bench password' --account-name Bench >/dev/null
  local list="" i
  for i in "${!pids[@]}"; do list="$list${names[$i]}=${pids[$i]},"; done
  echo "### $backend ($(nproc) cores; server processes, provider and client on the same machine)"
  "$TOOL" group-send --api "http://127.0.0.1:$API_PORT" --provider "http://127.0.0.1:$PROVIDER_PORT" \
    --recipients "$N" --pids "$list"
  for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  kill $provider; wait $provider 2>/dev/null || true
  if [ -n "$db" ]; then
    psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    # The worker's consumer queues under this run's prefix (needs rabbitmqctl's rights; else left).
    { rabbitmqctl list_queues -q name 2>/dev/null | grep "^bench_groups_$$_" \
      | while read -r q; do rabbitmqctl delete_queue "$q" >/dev/null; done; } || true
  fi
  rm -rf "$dir"
}

case "$WHICH" in
  sqlite) run sqlite ;;
  postgres) run postgres ;;
  both) run sqlite; run postgres ;;
  *) echo "usage: $0 [sqlite|postgres|both] [recipients]" >&2; exit 2 ;;
esac
echo "### the adapter alone, same machine (the sending part's ceiling)"
"$TOOL" adapters --sends 20000 --concurrency 8
