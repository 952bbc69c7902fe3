#!/usr/bin/env bash
# The admin dashboard's first load (issue #18): Basalt's /_/ and the reference PocketBase's /_/ in one
# run, each server pinned to SERVER_CPU, Chromium on the other core; RUNS cold loads each (a new
# browser context every time). Also the size of Basalt's bundle, raw and gzipped.
# Environment: RUNS (20), BASALT_BIN (else a release build), SERVER_CPU (0), LOAD_CPU (1).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-20}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}
say() { printf '>> %s\n' "$*" >&2; }
if [[ -n ${BASALT_BIN:-} ]]; then BASALT=$BASALT_BIN; else
  say "building basalt (release)"
  (cd "$ROOT" && nice -n 19 cargo build -q --release -p basalt)
  BASALT=$CARGO_TARGET_DIR/release/basalt
fi
PB=$("$ROOT/scripts/pocketbase-ref.sh" path)
(cd "$ROOT/ui" && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error; })
RUN=$(mktemp -d "${TMPDIR:-/tmp}/basalt-dashboard-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
BP=$(port); PP=$(port)
"$BASALT" superuser upsert bench@example.com bench-password-123 --dir "$RUN/basalt" >/dev/null
taskset -c "$SERVER_CPU" "$BASALT" serve --http "127.0.0.1:$BP" --dir "$RUN/basalt" >"$RUN/basalt.log" 2>&1 & PIDS+=($!)
"$PB" superuser upsert bench@example.com bench-password-123 --dir "$RUN/pb" >/dev/null
taskset -c "$SERVER_CPU" "$PB" serve --http "127.0.0.1:$PP" --dir "$RUN/pb" >"$RUN/pb.log" 2>&1 & PIDS+=($!)
for u in "http://127.0.0.1:$BP" "http://127.0.0.1:$PP"; do
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$u/api/health" && break; sleep 0.1; done
done
B=$(taskset -c "$LOAD_CPU" node "$HERE/dashboard.mjs" basalt "http://127.0.0.1:$BP/_/" "$RUNS")
P=$(taskset -c "$LOAD_CPU" node "$HERE/dashboard.mjs" pocketbase "http://127.0.0.1:$PP/_/" "$RUNS")
raw=$(find "$ROOT/ui/dist" -type f ! -name '*.gz' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1024}')
gz=$(find "$ROOT/ui/dist" -type f -name '*.gz' -printf '%s\n' | awk '{s+=$1} END {printf "%.1f", s/1024}')
{
  echo "## Dashboard first load ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty), $("$PB" --version | awk '{print $NF}'))"
  echo
  echo "$RUNS cold loads of /_/ each in headless Chromium (new context each time), server on cpu $SERVER_CPU, browser on cpu $LOAD_CPU"
  echo
  echo "| dashboard | load p50 (ms) | load p95 (ms) | DOMContentLoaded p50 | first paint p50 | bytes over the wire | requests |"
  echo "|---|---|---|---|---|---|---|"
  for j in "$B" "$P"; do
    python3 -c 'import json,sys; print("| {name} | {load_p50} | {load_p95} | {dcl_p50} | {fcp_p50} | {bytes} | {requests} |".format(**json.loads(sys.argv[1])))' "$j"
  done
  echo
  echo "Basalt's ui/dist: ${raw} kB, ${gz} kB gzipped (what a browser that accepts gzip downloads)."
}
