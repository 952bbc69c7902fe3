#!/usr/bin/env bash
# Realtime (SSE) fan-out benchmark: starts one server, runs bench/realtime.mjs against it, prints
# the Markdown report (see the header of bench/realtime.mjs for what is measured).
#
# Usage:
#   bench/realtime.sh [BASALT_BIN]          # Basalt; builds nothing. Default binary:
#                                           #   $CARGO_TARGET_DIR/release/basalt
#                                           #   (CARGO_TARGET_DIR defaults to ~/.cache/basalt/target)
#   PB=1 bench/realtime.sh                  # reference PocketBase instead, via scripts/pocketbase-ref.sh
#   SUBSCRIBERS=100 SECONDS=3 bench/realtime.sh ~/.cache/basalt/target/debug/basalt
#
# The server runs in a temp dir pinned to SERVER_CPU (default 0) with `taskset`; the Node client is
# pinned to CLIENT_CPU (default 1). The open-file limit is raised to at least 4096 first.
#
# Environment:
#   SUBSCRIBERS   SSE streams                                (default 1000)
#   RATE          creates/s in the latency phase             (default 50)
#   SECONDS       length of each phase, in seconds           (default 10)
#   WRITERS       concurrent writers, throughput phase       (default 8)
#   PB=1          benchmark reference PocketBase instead of Basalt
#   PORT          server port                                (default: a free one)
#   SERVER_CPU / CLIENT_CPU                                  (default 0 / 1)
#   KEEP_DATA=1   keep the temp dir (data and server log; always kept on failure)
set -euo pipefail

# SECONDS is special in bash (it counts up from whatever it was set to), so take the caller's
# value from this process's original environment instead of from the variable.
DURATION=$(tr '\0' '\n' </proc/$$/environ | sed -n 's/^SECONDS=//p')
DURATION=${DURATION:-10}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}
BIN=${1:-$CARGO_TARGET_DIR/release/basalt}
PB=${PB:-0}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-50}
WRITERS=${WRITERS:-8}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}

say() { printf '>> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- limits and cores
want_files=$((SUBSCRIBERS + 512))
((want_files < 4096)) && want_files=4096
if (($(ulimit -n) < want_files)); then
  ulimit -n "$want_files" || { echo "cannot raise ulimit -n to $want_files (hard limit $(ulimit -Hn))" >&2; exit 1; }
fi
if (($(nproc) < 2)); then
  say "only $(nproc) core: server and client will share it"
  CLIENT_CPU=$SERVER_CPU
fi
command -v node >/dev/null || { echo "node (20+) is required" >&2; exit 1; }

PORT=${PORT:-$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')}
BASE_URL=http://127.0.0.1:$PORT

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/basalt-realtime.XXXXXX")
DATA=$RUN_DIR/home/data   # own parent: PocketBase may write pb_migrations/ beside --dir
LOG=$RUN_DIR/server.log
SERVER_PID=
FAILED=1
cleanup() {
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $FAILED -eq 0 && ${KEEP_DATA:-0} != 1 ]]; then
    rm -rf "$RUN_DIR"
  else
    say "data dir and server log kept in $RUN_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- server
if [[ $PB == 1 ]]; then
  # pocketbase-ref.sh wipes/creates DATA, upserts the superuser and execs `pocketbase serve`,
  # so $! ends up being the PocketBase process itself.
  SU_EMAIL=admin@example.com
  SU_PASSWORD=adminpass123
  mkdir -p "$DATA"
  SU_EMAIL=$SU_EMAIL SU_PASSWORD=$SU_PASSWORD \
    taskset -c "$SERVER_CPU" "$ROOT/scripts/pocketbase-ref.sh" "$PORT" "$DATA" >"$LOG" 2>&1 &
  SERVER_PID=$!
  LABEL="PocketBase $("${BASALT_PB_VENV:-$HOME/.cache/basalt/venv}/bin/pocketbase" --version 2>/dev/null | awk '{print $NF}' || echo '?')"
else
  [[ -x $BIN ]] || { echo "no Basalt binary at $BIN (build it, or pass its path)" >&2; exit 1; }
  SU_EMAIL=bench@example.com
  SU_PASSWORD=bench-password-123
  mkdir -p "$DATA"
  "$BIN" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$DATA" >"$RUN_DIR/superuser.log" 2>&1
  taskset -c "$SERVER_CPU" "$BIN" serve --http "127.0.0.1:$PORT" --dir "$DATA" >"$LOG" 2>&1 &
  SERVER_PID=$!
  LABEL="Basalt $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '(no commit)')"
  [[ $BIN == */debug/* ]] && LABEL="$LABEL (DEBUG build: not representative)"
fi

for ((i = 0; ; i++)); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server exited early; log:" >&2; tail -30 "$LOG" >&2; exit 1
  fi
  curl -fs -o /dev/null --max-time 1 "$BASE_URL/api/health" && break
  if ((i >= 600)); then
    echo "server not ready after 60 s; log:" >&2; tail -30 "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
say "$LABEL on $BASE_URL (pid $SERVER_PID, cpu $SERVER_CPU); client on cpu $CLIENT_CPU; ulimit -n $(ulimit -n)"

# ---------------------------------------------------------------- client
BASE_URL=$BASE_URL SU_EMAIL=$SU_EMAIL SU_PASSWORD=$SU_PASSWORD LABEL="$LABEL" \
  SERVER_PID=$SERVER_PID CLK_TCK=$(getconf CLK_TCK) \
  taskset -c "$CLIENT_CPU" node "$HERE/realtime.mjs" \
    --subscribers="$SUBSCRIBERS" --rate="$RATE" --seconds="$DURATION" --writers="$WRITERS"
echo "- pinning: server on cpu $SERVER_CPU, client on cpu $CLIENT_CPU (bench/realtime.sh)"
FAILED=0
