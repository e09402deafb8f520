#!/usr/bin/env bash
# HTTP intake → SMPP, Jasmin 0.11 beside Turumba, on this machine (issue 15's fourth benchmark).
#
#   bench/peers/jasmin_vs_turumba.sh [messages] [clients]        # defaults: 5000 messages, 32 clients
#   BENCH_BIN=/path/turumba BENCH_TOOL=/path/turumba-bench bench/peers/jasmin_vs_turumba.sh
#   BENCH_ONLY=jasmin …   # Jasmin alone (`turumba-bench scenario --jasmin` runs Turumba's side itself)
#
# Both gateways send to the same minimal SMSC (`turumba-bench smsc`: any bind accepted, every submit_sm
# answered at once and counted). Each run posts `messages` send requests from `clients` concurrent
# keep-alive clients (`turumba-bench http-load`) and measures from the first request to the SMSC
# having received the last submit_sm.
#   Jasmin: installed from PyPI (jasmin==0.11.1) into $HOME/.cache/turumba/jasmin-venv (nothing of it is
#   committed); jasmind with its HTTP API, its own vhost on the machine's RabbitMQ and a Redis database
#   of its own; one SMPP connector with `submit_throughput 0` (no throttle), a user, a default MT route;
#   requests are `GET /send?username&password&to&content`.
#   Turumba: `turumba serve` (role all, SQLite in a temp dir, or PostgreSQL with TURUMBA_BENCH_PG=url),
#   an SMPP channel; requests are `POST /v1/messages`.
# Needs: rabbitmqctl, redis-cli, python3 (3.11 or 3.12: jcli is driven over telnet). Prints figures only.
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-5000}"
C="${2:-32}"
SMSC_PORT=27750
JASMIN_HTTP=14010
JCLI=18990
TURUMBA_PORT=18710
if [ -z "${BENCH_BIN:-}" ] || [ -z "${BENCH_TOOL:-}" ]; then
  cargo build --release --quiet --bins
  BENCH_BIN="${CARGO_TARGET_DIR:-target}/release/turumba"
  BENCH_TOOL="${CARGO_TARGET_DIR:-target}/release/turumba-bench"
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The SMSC, restarted for each gateway so its count starts at zero. Its output goes to $WORK/smsc.out.
start_smsc() {
  "$BENCH_TOOL" smsc --port "$SMSC_PORT" > "$WORK/smsc.out" &
  PIDS+=($!)
  SMSC_PID=$!
  for _ in $(seq 1 50); do grep -q listening "$WORK/smsc.out" 2>/dev/null && return; sleep 0.1; done
  echo "the SMSC did not start" >&2; exit 1
}
stop_smsc() { kill "$SMSC_PID" 2>/dev/null || true; wait "$SMSC_PID" 2>/dev/null || true; }

# Waits until the SMSC has `want` submit_sm; prints the unix ms of the one that made it.
wait_submits() {
  local want="$1"
  for _ in $(seq 1 1200); do
    local line
    line=$(awk -v w="$want" '$1=="submits" && $2>=w {print $3; exit}' "$WORK/smsc.out")
    if [ -n "$line" ]; then echo "$line"; return; fi
    sleep 0.1
  done
  echo "the SMSC got $(awk '$1=="submits" {n=$2} END {print n+0}' "$WORK/smsc.out") of $want" >&2
  exit 1
}

report() { # label load-output done-ms
  local start rate
  start=$(awk '$1=="start" {print $2}' "$2")
  rate=$(awk -v n="$N" -v s="$start" -v e="$3" 'BEGIN {printf "%.0f", n / ((e - s) / 1000)}')
  printf '%-10s %s messages, %s clients: all at the SMSC after %.2f s = %s messages/s   (%s)\n' \
    "$1" "$N" "$C" "$(awk -v s="$start" -v e="$3" 'BEGIN {print (e - s) / 1000}')" "$rate" \
    "$(grep '^http-load' "$2" | sed 's/^http-load: //')"
}

# ---------------------------------------------------------------- Jasmin
VENV="$HOME/.cache/turumba/jasmin-venv"
if ! "$VENV/bin/python" -c "import jasmin" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "jasmin==0.11.1"
fi
SPEC=$("$VENV/bin/python" -c "import txamqp, os; print(os.path.join(os.path.dirname(txamqp.__file__), 'specs/standard/amqp0-9-1.stripped.xml'))")
rabbitmqctl -q add_vhost jasmin_bench 2>/dev/null || true
rabbitmqctl -q set_permissions -p jasmin_bench guest ".*" ".*" ".*" >/dev/null
redis-cli -n 7 flushdb >/dev/null
mkdir -p "$WORK/jasmin/etc/jasmin/store" "$WORK/jasmin/var/log/jasmin"
cat > "$WORK/jasmin/etc/jasmin/jasmin.cfg" <<EOF
[amqp-broker]
host = 127.0.0.1
port = 5672
vhost = jasmin_bench
username = guest
password = guest
spec = $SPEC

[redis-client]
host = 127.0.0.1
port = 6379
dbid = 7

[http-api]
bind = 127.0.0.1
port = $JASMIN_HTTP
log_level = WARNING

[jcli]
bind = 127.0.0.1
port = $JCLI
authentication = False

[smpp-server]
bind = 127.0.0.1
port = $((SMSC_PORT + 1))
EOF
start_smsc
# (Its own SMPP server stays on: jcli needs it.)
ROOT_PATH="$WORK/jasmin" "$VENV/bin/jasmind.py" -c "$WORK/jasmin/etc/jasmin/jasmin.cfg" > "$WORK/jasmind.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$JCLI") 2>/dev/null && break; sleep 0.2; done
(echo > "/dev/tcp/127.0.0.1/$JCLI") 2>/dev/null || { cat "$WORK/jasmind.out" >&2; exit 1; }
# jcli: a connector to the SMSC without a throttle, a group and a user, a default MT route.
"$VENV/bin/python" - "$JCLI" "$SMSC_PORT" <<'EOF'
import socket, sys, time
jcli, smsc = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", jcli))
def until(marker=b"jcli : "):
    buf = b""
    while marker not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("jcli closed: " + buf.decode(errors="replace"))
        buf += chunk
    return buf.decode(errors="replace")
until(b"Session ref")  # the banner (the first prompt comes with the first answer)
script = f"""smppccm -a
cid smsc
host 127.0.0.1
port {smsc}
username bench
password bench
submit_throughput 0
ok
group -a
gid bench
ok
user -a
username bench
password bench
gid bench
uid bench
ok
mtrouter -a
type defaultroute
connector smppc(smsc)
rate 0.00
ok
smppccm -1 smsc
"""
in_block = False
for line in script.strip().splitlines():
    # `x -a` opens a block whose lines answer with the `> ` prompt; `ok` closes it.
    in_block = line.endswith(" -a") or (in_block and line != "ok")
    s.sendall(line.encode() + b"\n")
    out = until(b"> " if in_block else b"jcli : ")
    if "error" in out.lower() or "unknown" in out.lower() or "incorrect" in out.lower():
        raise SystemExit(f"jcli refused `{line}`: {out}")
s.sendall(b"quit\n")
EOF
sleep 2 # the connector binds
"$BENCH_TOOL" http-load --count 100 --concurrency 4 \
  --url "http://127.0.0.1:$JASMIN_HTTP/send?username=bench&password=bench&to=251911{n}&content=Warm+up" > /dev/null
wait_submits 100 > /dev/null
# The SMSC's count goes on from the warm-up (a restarted SMSC would cost Jasmin its 10 s reconnect delay).
"$BENCH_TOOL" http-load --count "$N" --concurrency "$C" \
  --url "http://127.0.0.1:$JASMIN_HTTP/send?username=bench&password=bench&to=251911{n}&content=Selam%21+Your+appointment+is+tomorrow+at+10%3A00." \
  > "$WORK/jasmin.load"
report "Jasmin" "$WORK/jasmin.load" "$(wait_submits $((N + 100)))"
stop_smsc

# ---------------------------------------------------------------- Turumba
if [ "${BENCH_ONLY:-}" = jasmin ]; then exit 0; fi
start_smsc
if [ -n "${TURUMBA_BENCH_PG:-}" ]; then
  DB="turumba_bench_smpp_$$"
  psql "$TURUMBA_BENCH_PG" -qc "CREATE DATABASE $DB"
  export DATABASE_URL="${TURUMBA_BENCH_PG%/*}/$DB"
else
  export DATABASE_URL="sqlite://$WORK/turumba.db"
fi
export TURUMBA_DATA_DIR="$WORK/turumba" TURUMBA_PORT=$TURUMBA_PORT TURUMBA_LOG=warn
"$BENCH_BIN" serve &
PIDS+=($!)
API="http://127.0.0.1:$TURUMBA_PORT"
for _ in $(seq 1 100); do curl -sf "$API/healthz" > /dev/null && break; sleep 0.1; done
"$BENCH_BIN" admin create-user --email bench@example.com --password 'bench password' --account-name Bench > /dev/null
TOKEN=$(curl -s "$API/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"bench password"}' | jq -r .data.access_token)
CHANNEL=$(curl -s "$API/v1/channels" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d "{\"name\":\"smsc\",\"channel_type\":\"smpp\",\"credentials\":{\"host\":\"127.0.0.1\",\"port\":$SMSC_PORT,\"system_id\":\"bench\",\"password\":\"bench\",\"source_addr\":\"Turumba\"}}" | jq -r .data.id)
BODY="{\"channel_id\":\"$CHANNEL\",\"delivery_address\":\"+251911{n}\",\"message_body\":\"Selam! Your appointment is tomorrow at 10:00.\"}"
"$BENCH_TOOL" http-load --count 100 --concurrency 4 --method POST --expect 201 --url "$API/v1/messages" \
  --header "authorization: Bearer $TOKEN" --header "content-type: application/json" --body "$BODY" > /dev/null
wait_submits 100 > /dev/null
"$BENCH_TOOL" http-load --count "$N" --concurrency "$C" --method POST --expect 201 --url "$API/v1/messages" \
  --header "authorization: Bearer $TOKEN" --header "content-type: application/json" --body "$BODY" > "$WORK/turumba.load"
report "Turumba" "$WORK/turumba.load" "$(wait_submits $((N + 100)))"
if [ -n "${TURUMBA_BENCH_PG:-}" ]; then
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  psql "$TURUMBA_BENCH_PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
fi
