#!/usr/bin/env bash
# GraphQL vs REST (issue #17), one Basalt server, one run: a page of 20 posts with their author.
#
#   rest     GET  /api/collections/posts/records?perPage=20&expand=author
#   graphql  POST /api/graphql  { posts(perPage: 20) { items { <every post field> author { <every
#            user field REST shows> } } } }   (the same records and fields as REST's answer)
#   graphql_get  the same query as GET /api/graphql?query=…
#
# Target (issue #17): graphql ≥ 70% of rest's requests per second.
# The server is pinned to SERVER_CPU, wrk to LOAD_CPU. Environment: DURATION (10s), WARMUP (3s),
# CONNECTIONS (32), POSTS (2000), USERS (100), BASALT_BIN (else a release build), BENCH_PORT (18191),
# DATABASE_URL (a PostgreSQL database to run on instead of SQLite).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-32}
POSTS=${POSTS:-2000}
USERS=${USERS:-100}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${BENCH_PORT:-18191}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}
say() { printf '>> %s\n' "$*" >&2; }
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [[ -n ${BASALT_BIN:-} ]]; then BASALT=$BASALT_BIN; else
  say "building basalt (release)"
  (cd "$ROOT" && nice -n 19 cargo build -q --release -p basalt)
  BASALT=$CARGO_TARGET_DIR/release/basalt
fi
RUN=$(mktemp -d "${TMPDIR:-/tmp}/basalt-graphql-bench.XXXXXX")
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$RUN/data"
  say "report and wrk output in $RUN"
}
trap cleanup EXIT
DB=()
[[ -n ${DATABASE_URL:-} ]] && DB=(--database-url "$DATABASE_URL")
"$BASALT" superuser upsert bench@example.com bench-password-123 --dir "$RUN/data" "${DB[@]}" >/dev/null
taskset -c "$SERVER_CPU" "$BASALT" serve --http "127.0.0.1:$PORT" --dir "$RUN/data" "${DB[@]}" >"$RUN/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/health" && break; sleep 0.1; done

say "creating $USERS users and $POSTS posts"
python3 - "http://127.0.0.1:$PORT" "$USERS" "$POSTS" <<'PY'
import json, sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
base, nu, np = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)
tok = call("POST", "/api/collections/_superusers/auth-with-password", {"identity": "bench@example.com", "password": "bench-password-123"})["token"]
call("PATCH", "/api/collections/users", {"listRule": "", "viewRule": ""}, tok)
call("POST", "/api/collections", {"name": "posts", "listRule": "", "viewRule": "", "createRule": "", "fields": [
    {"name": "title", "type": "text"}, {"name": "body", "type": "text"}, {"name": "views", "type": "number"},
    {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
    {"name": "created", "type": "autodate", "onCreate": True}, {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True}]}, tok)
def user(i):
    return call("POST", "/api/collections/users/records", {"email": f"u{i}@example.com", "name": f"User {i}", "password": "password-123", "passwordConfirm": "password-123"})["id"]
with ThreadPoolExecutor(8) as ex:
    users = list(ex.map(user, range(nu)))
def post(i):
    call("POST", "/api/collections/posts/records", {"title": f"Post {i}", "body": "x" * 200, "views": i, "author": users[i % nu]})
with ThreadPoolExecutor(8) as ex:
    list(ex.map(post, range(np)))
PY

QUERY='{ posts(perPage: 20) { page perPage totalItems totalPages items { id collectionId collectionName title body views created updated author { id collectionId collectionName emailVisibility verified name avatar created updated } } } }'
python3 - "$QUERY" >"$RUN/graphql.lua" <<'PY'
import json, sys
body = json.dumps({"query": sys.argv[1]})
print('wrk.method = "POST"')
print('wrk.headers["Content-Type"] = "application/json"')
print("wrk.body = " + json.dumps(body))
PY
GET_URL="http://127.0.0.1:$PORT/api/graphql?query=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$QUERY")"
REST_URL="http://127.0.0.1:$PORT/api/collections/posts/records?perPage=20&expand=author"

# The two answers hold the same records.
python3 - "$REST_URL" "http://127.0.0.1:$PORT/api/graphql" "$QUERY" <<'PY'
import json, sys, urllib.request
rest = json.load(urllib.request.urlopen(sys.argv[1]))
req = urllib.request.Request(sys.argv[2], data=json.dumps({"query": sys.argv[3]}).encode(), headers={"Content-Type": "application/json"})
g = json.load(urllib.request.urlopen(req))
assert "errors" not in g, g
items = g["data"]["posts"]["items"]
assert [i["id"] for i in items] == [i["id"] for i in rest["items"]], "different records"
assert [i["author"]["id"] for i in items] == [i["expand"]["author"]["id"] for i in rest["items"]], "different authors"
print(">> same 20 records and authors in both answers", file=sys.stderr)
PY

declare -A RPS P50 P99
run() { # name url [lua]
  local args=(-t1 -c"$CONNECTIONS" --latency) out=$RUN/wrk-$1.txt
  [[ -n ${3:-} ]] && args+=(-s "$3")
  [[ $WARMUP != 0 ]] && taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$WARMUP" "$2" >/dev/null
  taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$DURATION" "$2" >"$out"
  RPS[$1]=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  P50[$1]=$(awk '/^[ \t]+50%/ {print $2}' "$out")
  P99[$1]=$(awk '/^[ \t]+99%/ {print $2}' "$out")
  local bad; bad=$(awk '/Non-2xx/ {print $NF}' "$out")
  say "$1: ${RPS[$1]} req/s, p50 ${P50[$1]}, p99 ${P99[$1]}${bad:+, NON-2XX $bad}"
}
run rest "$REST_URL"
run graphql "http://127.0.0.1:$PORT/api/graphql" "$RUN/graphql.lua"
run graphql_get "$GET_URL"
ratio() { awk -v a="${RPS[$1]}" -v b="${RPS[rest]}" 'BEGIN { printf "%.0f%%", a / b * 100 }'; }
{
  echo "## GraphQL vs REST ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty), $([[ -n ${DATABASE_URL:-} ]] && echo PostgreSQL || echo SQLite))"
  echo
  echo "wrk -t1 -c$CONNECTIONS -d$DURATION, server on cpu $SERVER_CPU, wrk on cpu $LOAD_CPU; a page of 20 of $POSTS posts with the author ($USERS users)"
  echo
  echo "| run | req/s | p50 | p99 | vs REST |"
  echo "|---|---|---|---|---|"
  for t in rest graphql graphql_get; do
    echo "| $t | ${RPS[$t]} | ${P50[$t]} | ${P99[$t]} | $([[ $t == rest ]] && echo - || ratio "$t") |"
  done
} | tee "$RUN/report.md"
