#!/usr/bin/env bash
# Quick create-only run against one server binary (Basalt or PocketBase): for trying a change to the
# write path in minutes, with the CPU the server spent per create. bench/run.sh remains the side-by-side
# comparison whose numbers count; this prints one line per run.
#
# Usage: bench/create.sh BIN [RUNS]
#   BIN   a basalt or pocketbase binary (PocketBase is recognised by its name)
#   RUNS  how many runs, each on a fresh data dir (default 1)
# Environment:
#   SYNC=normal|full   BASALT_SYNCHRONOUS for Basalt (default normal; PocketBase always runs normal)
#   DURATION=8         seconds measured, after a 2 s warmup
#   CONNECTIONS=32     wrk connections
#   RECORDS=1000       records seeded first (bench/seed.py)
#   PORT=19101         server port
#   SERVER_CPU / LOAD_CPU   cores for the server / wrk (default 0 / 1)
#   PERF=1             also record a perf profile of the measured part (perf.data in the data dir's parent)
#   METRICS=1          Basalt: also print the group-commit sizes from /metrics
# Any other variable in the environment reaches the server, so a temporary knob in a trial build can be
# set per run.
#
# Prints: rps=… cpu_us_per_req=… user=… sys=… (clock ticks of the server during the measured part).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:?usage: bench/create.sh BIN [RUNS]}
RUNS=${2:-1}
SYNC=${SYNC:-normal}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-32}
RECORDS=${RECORDS:-1000}
PORT=${PORT:-19101}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
EMAIL=bench@example.com
PASS=bench-password-123
URL=http://127.0.0.1:$PORT
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 2; }

PID=
DIR=
cleanup() {
  if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  if [[ -n $DIR ]]; then rm -rf "$DIR"; fi
}
trap cleanup EXIT

# PocketBase takes `--dir=X`; Basalt takes `--dir X`.
dir_args() {
  if [[ $(basename "$BIN") == *pocketbase* ]]; then echo "--dir=$1"; else echo "--dir $1"; fi
}

one_run() {
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/basalt-create.XXXXXX")
  # shellcheck disable=SC2046
  "$BIN" superuser upsert "$EMAIL" "$PASS" $(dir_args "$DIR") >/dev/null 2>&1
  # shellcheck disable=SC2046
  BASALT_SYNCHRONOUS=$SYNC taskset -c "$SERVER_CPU" "$BIN" serve --http "127.0.0.1:$PORT" $(dir_args "$DIR") \
    >"$DIR/server.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf "$URL/api/health" >/dev/null && break; sleep 0.1; done
  python3 "$HERE/seed.py" --url "$URL" --email "$EMAIL" --password "$PASS" --count "$RECORDS" >/dev/null 2>"$DIR/seed.log" \
    || { cat "$DIR/seed.log" >&2; exit 1; }
  local target=$URL/api/collections/posts/records
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s -s "$HERE/create.lua" "$target" >/dev/null
  local u0 s0 u1 s1 pp=
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$PID/stat")
  if [[ ${PERF:-0} == 1 ]]; then
    perf record -F 1999 --call-graph dwarf,16384 -o "$(dirname "$DIR")/perf.data" -p "$PID" -- sleep "$DURATION" \
      >/dev/null 2>&1 &
    pp=$!
  fi
  local out
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$HERE/create.lua" "$target")
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$PID/stat")
  if [[ -n $pp ]]; then wait "$pp" || true; fi
  echo "$out" | grep -E "Non-2xx|Socket errors" >&2 || true
  local rps reqs
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  echo "rps=$rps cpu_us_per_req=$(awk -v t=$(( (u1 + s1) - (u0 + s0) )) -v hz="$(getconf CLK_TCK)" -v n="$reqs" \
    'BEGIN{printf "%.1f", t / hz * 1e6 / n}') user=$((u1 - u0)) sys=$((s1 - s0))"
  if [[ ${METRICS:-0} == 1 && $(basename "$BIN") != *pocketbase* ]]; then
    local tok
    tok=$(curl -s -X POST "$URL/api/collections/_superusers/auth-with-password" -H 'content-type: application/json' \
      -d "{\"identity\":\"$EMAIL\",\"password\":\"$PASS\"}" | python3 -c 'import sys,json;print(json.load(sys.stdin)["token"])')
    curl -s -H "Authorization: $tok" "$URL/metrics" | grep -E "group_commit_size_(sum|count)" || true
  fi
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  rm -rf "$DIR"; DIR=
}

for _ in $(seq "$RUNS"); do one_run; done
