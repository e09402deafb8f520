#!/usr/bin/env bash
# Messaging benchmarks (issue 15), on SQLite and on PostgreSQL, server and load generator on this machine:
#  0. ceiling: GET /v1/context, the cheapest authenticated request, in the same run;
#  1. accept: POST /v1/messages (body text) to a sandbox channel, 64 connections (wrk): every 201 means
#     the message row and its dispatch event were committed; the dispatcher (role all) runs beside it
#     and delivers them.
#  2. history (8 connections, HISTORY_CONNECTIONS=…): GET /v1/messages?limit=50 with ROWS messages in the table (default 1,000,000; seeded in
#     SQL by copying a real message row), the first page and a deep page continued by `cursor=`.
#
#   benches/messages.sh [sqlite|postgres|both] [seconds] [rows]
#   BENCH_BIN=/path/to/turumba benches/messages.sh ...   # a binary built elsewhere
#   BENCH_ROLE=api AMQP_URL=amqp://… benches/messages.sh postgres 15 1   # the accept path alone: no relay
#     or dispatcher in the process (rows and outbox events pile up; nothing is delivered)
#
# Needs: wrk, curl, jq, sqlite3 (SQLite seeding), psql. Prints figures only; nothing here is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH="${1:-both}"
SECS="${2:-15}"
ROWS="${3:-1000000}"
PG_BASE="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
for tool in wrk curl jq sqlite3 psql; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  cargo build --release --quiet
  BIN="${CARGO_TARGET_DIR:-target}/release/turumba"
fi

wrk_line() { # label file
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$2")
  p50=$(awk '$1=="50%" {print $2}' "$2")
  p99=$(awk '$1=="99%" {print $2}' "$2")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$2")
  printf '%-34s %10s req/s   p50 %-8s p99 %-8s non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

sql() { # backend url statement
  if [ "$1" = sqlite ]; then sqlite3 "${2#sqlite://}" "$3"; else psql "$2" -qAtc "$3"; fi
}

run() {
  local backend="$1" url dir port=18700 pid db=""
  dir=$(mktemp -d)
  if [ "$backend" = sqlite ]; then
    url="sqlite://$dir/turumba.db"
  else
    db="turumba_bench_msg_$$"
    psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db" && psql "$PG_BASE" -qc "CREATE DATABASE $db"
    url="${PG_BASE%/*}/$db"
  fi
  export DATABASE_URL="$url" TURUMBA_DATA_DIR="$dir" TURUMBA_PORT=$port TURUMBA_LOG=warn
  if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; then echo "port $port is taken by another server" >&2; exit 1; fi
  "$BIN" serve --role "${BENCH_ROLE:-all}" & pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  "$BIN" admin create-user --email bench@example.com --password 'bench password' --account-name Bench >/dev/null
  local api="http://127.0.0.1:$port" token channel
  token=$(curl -s "$api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"bench password"}' | jq -r .data.access_token)
  channel=$(curl -s "$api/v1/channels" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d '{"name":"bench","channel_type":"sandbox","credentials":{}}' | jq -r .data.id)
  echo "### $backend ($(nproc) cores, wrk -t2 -c64 -d${SECS}s, server and wrk on the same machine)"

  # The ceiling of the request path itself, same run: the cheapest authenticated request.
  wrk -t2 -c64 -d"${SECS}s" --latency -H "authorization: Bearer $token" "$api/v1/context" > "$dir/wrk.txt"
  wrk_line "GET /v1/context (ceiling)" "$dir/wrk.txt"

  cat > "$dir/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer $token"
wrk.body = '{"channel_id":"$channel","delivery_address":"+251911000001","message_body":"Selam! Your appointment is tomorrow at 10:00."}'
EOF
  wrk -t2 -c64 -d"${SECS}s" --latency -s "$dir/post.lua" "$api/v1/messages" > "$dir/wrk.txt"
  wrk_line "POST /v1/messages (accept)" "$dir/wrk.txt"
  local accepted delivered
  for _ in $(seq 1 120); do
    delivered=$(sql "$backend" "$url" "SELECT COUNT(*) FROM messages WHERE status = 'delivered'")
    accepted=$(sql "$backend" "$url" "SELECT COUNT(*) FROM messages")
    [ "$delivered" = "$accepted" ] || [ "${BENCH_ROLE:-all}" != all ] && break
    sleep 1
  done
  echo "accepted $accepted, delivered by the dispatcher $delivered"

  # Seed the history: ROWS copies of one real message, one second apart going back in time.
  local have need started
  have=$(sql "$backend" "$url" "SELECT COUNT(*) FROM messages")
  need=$((ROWS - have))
  started=$(date +%s)
  if [ "$need" -gt 0 ]; then
    local cols="account_id, channel_id, contact_id, sent_by_user_id, group_message_id, scheduled_message_id, template_id, channel_type, direction, status, delivery_address, message_body, original_template, attachments, scheduled_at, sent_at, delivered_at, read_at, failed_at, attempts, provider_message_id, metadata, error_details, updated_at, next_attempt_at, lease_until"
    if [ "$backend" = sqlite ]; then
      sqlite3 -cmd ".timeout 60000" "${url#sqlite://}" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $need)
        INSERT INTO messages (id, created_at, $cols)
        SELECT randomblob(16), strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (i + 60) || ' seconds'), $cols
        FROM n, (SELECT * FROM messages LIMIT 1)"
    else
      psql "$url" -qc "INSERT INTO messages (id, created_at, $cols)
        SELECT gen_random_uuid(), now() - make_interval(secs => g + 60), $cols
        FROM generate_series(1, $need) g, (SELECT * FROM messages LIMIT 1) t; ANALYZE messages"
    fi
  fi
  echo "history: $(sql "$backend" "$url" "SELECT COUNT(*) FROM messages") messages (seeded in $(( $(date +%s) - started )) s)"

  local auth="authorization: Bearer $token" deep cursor
  # Reads at 8 connections (a web app's pool; at 64 on two shared cores every request queues behind
  # 63 others, whatever it costs), with the cheapest authenticated request beside them.
  local c="${HISTORY_CONNECTIONS:-8}"
  echo "history reads: wrk -t2 -c$c"
  wrk -t2 -c"$c" -d"${SECS}s" --latency -H "$auth" "$api/v1/context" > "$dir/wrk.txt"
  wrk_line "GET /v1/context (ceiling)" "$dir/wrk.txt"
  wrk -t2 -c"$c" -d"${SECS}s" --latency -H "$auth" "$api/v1/messages?limit=50" > "$dir/wrk.txt"
  wrk_line "GET /v1/messages?limit=50 (first)" "$dir/wrk.txt"
  # A deep page: jump near the oldest end with a created_at filter, then continue by its cursor.
  deep=$(date -u -d "@$(( $(date +%s) - ROWS * 9 / 10 ))" +%Y-%m-%dT%H:%M:%SZ)
  cursor=$(curl -s "$api/v1/messages?limit=50&filter=created_at:lt:$deep" -H "$auth" | jq -r .meta.next_cursor)
  wrk -t2 -c"$c" -d"${SECS}s" --latency -H "$auth" "$api/v1/messages?limit=50&cursor=$cursor" > "$dir/wrk.txt"
  wrk_line "GET /v1/messages … cursor (deep)" "$dir/wrk.txt"
  echo "peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$pid/status)"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  if [ -n "$db" ]; then psql "$PG_BASE" -qc "DROP DATABASE IF EXISTS $db" || true; fi
  rm -rf "$dir"
}

case "$WHICH" in
  sqlite) run sqlite ;;
  postgres) run postgres ;;
  both) run sqlite; run postgres ;;
  *) echo "usage: $0 [sqlite|postgres|both] [seconds] [rows]" >&2; exit 2 ;;
esac
