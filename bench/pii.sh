#!/usr/bin/env bash
# PII protection's cost (issue #16): create and read-by-id on a collection with three pii fields
# (one searchable) against the same collection without pii, on one Basalt server, in one run.
#
# Reads run twice: one record over and over (`read`), and records picked at random among all of
# them (`read_spread`; 3 pii values per record, so 20000 records overflow the 16384-entry mask cache).
#
#   plain        name, email, phone, note: no pii
#   secret       the same, name/email/phone pii (email searchable), no revealRule: a guest reads
#                masks (decrypt + mask per value), nothing audited
#   secret_open  the same with revealRule "": every read reveals the values and writes an audit
#                row (and its basalt.pii.revealed event) per record read
#
# The server is pinned to SERVER_CPU, wrk to LOAD_CPU. Environment: DURATION (10s), WARMUP (3s),
# CONNECTIONS (32), RECORDS (20000), BASALT_BIN (else a release build), BENCH_PORT (18190),
# KEEP_DATA=1 keeps the data dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-32}
RECORDS=${RECORDS:-20000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${BENCH_PORT:-18190}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}
say() { printf '>> %s\n' "$*" >&2; }
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [[ -n ${BASALT_BIN:-} ]]; then BASALT=$BASALT_BIN; else
  say "building basalt (release)"
  (cd "$ROOT" && nice -n 19 cargo build -q --release -p basalt)
  BASALT=$CARGO_TARGET_DIR/release/basalt
fi
RUN=$(mktemp -d "${TMPDIR:-/tmp}/basalt-pii-bench.XXXXXX")
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [[ ${KEEP_DATA:-0} == 1 ]] || rm -rf "$RUN/data"
  say "report and wrk output in $RUN"
}
trap cleanup EXIT
export BASALT_PII_KEYS=${BASALT_PII_KEYS:-"k1:$(head -c 32 /dev/urandom | base64)"}
"$BASALT" superuser upsert bench@example.com bench-password-123 --dir "$RUN/data" >/dev/null
taskset -c "$SERVER_CPU" "$BASALT" serve --http "127.0.0.1:$PORT" --dir "$RUN/data" >"$RUN/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/health" && break; sleep 0.1; done

say "creating the collections and $RECORDS records in each"
python3 - "http://127.0.0.1:$PORT" "$RECORDS" "$RUN" >"$RUN/ids" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, n = sys.argv[1], int(sys.argv[2])
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
tok = call("POST", "/api/collections/_superusers/auth-with-password", {"identity": "bench@example.com", "password": "bench-password-123"})["token"]
def coll(name, pii, reveal):
    p = lambda extra: ({"pii": dict(extra, **({"revealRule": ""} if reveal else {}))} if pii else {})
    call("POST", "/api/collections", {"name": name, "listRule": "", "viewRule": "", "createRule": "", "fields": [
        dict({"name": "name", "type": "text"}, **p({"mask": "partial"})),
        dict({"name": "email", "type": "email"}, **p({"mask": "partial", "searchable": True})),
        dict({"name": "phone", "type": "text"}, **p({"mask": "last4"})),
        {"name": "note", "type": "text"}]}, tok)
for name, pii, reveal in [("plain", False, False), ("secret", True, False), ("secret_open", True, True)]:
    coll(name, pii, reveal)
    def one(i, name=name):
        return call("POST", f"/api/collections/{name}/records", {"name": f"Person {i}", "email": f"person{i}@example.com", "phone": f"+44 7700 {i:06d}", "note": "x" * 40})["id"]
    with ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(one, range(n)))
    print(name, ids[n // 2])
    with open(f"{sys.argv[3]}/ids-{name}.txt", "w") as f:
        f.write("\n".join(ids) + "\n")
PY
declare -A ID
while read -r name id; do ID[$name]=$id; done <"$RUN/ids"
body='{"name":"Person X","email":"px@example.com","phone":"+44 7700 123456","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'
cat >"$RUN/create.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

declare -A RPS P50 P99
run() { # name test url [lua]
  local args=(-t1 -c"$CONNECTIONS" --latency) out=$RUN/wrk-$1-$2.txt
  [[ -n ${4:-} ]] && args+=(-s "$4")
  [[ $WARMUP != 0 ]] && taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$WARMUP" "$3" >/dev/null
  taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$DURATION" "$3" >"$out"
  RPS[$1.$2]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50[$1.$2]=$(awk '/^[ \t]+50%/ {print $2}' "$out")
  P99[$1.$2]=$(awk '/^[ \t]+99%/ {print $2}' "$out")
  local bad; bad=$(awk '/Non-2xx/ {print $NF}' "$out")
  say "$1 $2: ${RPS[$1.$2]} req/s, p50 ${P50[$1.$2]}, p99 ${P99[$1.$2]}${bad:+, NON-2XX $bad}"
}
for c in plain secret secret_open; do
  run "$c" read "http://127.0.0.1:$PORT/api/collections/$c/records/${ID[$c]}"
  cat >"$RUN/spread-$c.lua" <<LUA
local ids = {}
for line in io.lines("$RUN/ids-$c.txt") do ids[#ids + 1] = line end
math.randomseed(7)
request = function()
  return wrk.format("GET", "/api/collections/$c/records/" .. ids[math.random(#ids)])
end
LUA
  run "$c" read_spread "http://127.0.0.1:$PORT/" "$RUN/spread-$c.lua"
done
for c in plain secret; do
  run "$c" create "http://127.0.0.1:$PORT/api/collections/$c/records" "$RUN/create.lua"
done
sleep 1
over() { awk -v a="${RPS[plain.$1]}" -v b="${RPS[$2.$1]}" 'BEGIN { printf "%+.1f%%", (a / b - 1) * 100 }'; }
{
  echo "## PII overhead ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty))"
  echo
  echo "wrk -t1 -c$CONNECTIONS -d$DURATION, server on cpu $SERVER_CPU, wrk on cpu $LOAD_CPU, $RECORDS records per collection"
  echo
  echo "| run | req/s | p50 | p99 | cost vs plain (time per request) |"
  echo "|---|---|---|---|---|"
  for t in read read_spread create; do
    for c in plain secret secret_open; do
      [[ -n ${RPS[$c.$t]:-} ]] || continue
      echo "| $c $t | ${RPS[$c.$t]} | ${P50[$c.$t]} | ${P99[$c.$t]} | $([[ $c == plain ]] && echo - || over "$t" "$c") |"
    done
  done
} | tee "$RUN/report.md"
