#!/usr/bin/env bash
# Schema-driven API testing: schemathesis (PyPI) reads the OpenAPI document a running Basalt serves
# (GET /api/openapi.json, generated from its collections) and sends generated requests to every
# record and sign-in operation, following the document's links (create -> view/update/delete) in its
# stateful phase. Fails on any 5xx and on any answer the document does not allow (status code,
# content type, body schema).
#   scripts/schemathesis.sh [sqlite|postgres|all]   (default: all)
# Env: ST_MAX_TIME (seconds per backend as a superuser, default 120), ST_GUEST_TIME (then as a guest,
#      default 30), ST_MAX_EXAMPLES (per operation, default 25),
#      BASALT_BIN (default: the debug build), BASALT_TEST_PG (PostgreSQL base URL).
# Reports (JUnit) and the server log land in test-artifacts/schemathesis/<backend>/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}"
which="${1:-all}"
VERSION=4.32.5
VENV="${BASALT_TOOLS:-$HOME/.cache/basalt/tools}/venv-schemathesis"
if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "installing schemathesis $VERSION into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$VERSION" >&2
fi
bin="${BASALT_BIN:-$CARGO_TARGET_DIR/debug/basalt}"
[ -x "$bin" ] || cargo build --quiet -p basalt
PG_URL_BASE="${BASALT_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
SU_EMAIL=admin@example.com
SU_PASSWORD=adminpass123
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && { kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; } || true; done; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# api METHOD PATH [JSON]: a superuser request; fails on a non-2xx answer.
api() {
  curl -sS --fail-with-body -X "$1" "$url$2" -H "Authorization: $token" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}
}

# The fixture: an auth collection, a base collection with every field type (a file, a PII field,
# relations to both), and a view over it, all open to guests so generated requests reach the
# write paths; a few records for the stateful phase and the links to start from.
fixture() {
  local people posts
  people="$(api POST /api/collections '{"name":"people","type":"auth","listRule":"","viewRule":"","createRule":"",
    "updateRule":"id = @request.auth.id","deleteRule":"id = @request.auth.id",
    "fields":[{"name":"name","type":"text","max":80},{"name":"avatar","type":"file","maxSelect":1,"maxSize":100000}]}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  posts="$(api POST /api/collections '{"name":"posts","type":"base","listRule":"","viewRule":"","createRule":"",
    "updateRule":"","deleteRule":"",
    "fields":[
      {"name":"title","type":"text","required":true,"max":100},
      {"name":"slug","type":"text","pattern":"^[a-z0-9-]+$","max":40},
      {"name":"body","type":"editor"},
      {"name":"views","type":"number","onlyInt":true,"min":0},
      {"name":"score","type":"number"},
      {"name":"published","type":"bool"},
      {"name":"kind","type":"select","values":["note","article"],"maxSelect":1},
      {"name":"tags","type":"select","values":["news","tech","life"],"maxSelect":3},
      {"name":"author","type":"relation","collectionId":"'"$people"'","maxSelect":1},
      {"name":"readers","type":"relation","collectionId":"'"$people"'","maxSelect":5},
      {"name":"meta","type":"json","maxSize":2000},
      {"name":"site","type":"url"},
      {"name":"contact","type":"email"},
      {"name":"due","type":"date"},
      {"name":"where","type":"geoPoint"},
      {"name":"cover","type":"file","maxSelect":1,"maxSize":100000},
      {"name":"ssn","type":"text","pii":{"searchable":true,"mask":"last4"}},
      {"name":"created","type":"autodate","onCreate":true},
      {"name":"updated","type":"autodate","onCreate":true,"onUpdate":true}],
    "indexes":["CREATE UNIQUE INDEX idx_posts_slug ON posts (slug) WHERE slug != '"''"'"]}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  api POST /api/collections '{"name":"post_views","type":"view","listRule":"","viewRule":"",
    "viewQuery":"SELECT id, title, views FROM posts"}' >/dev/null
  local person
  person="$(api POST /api/collections/people/records '{"email":"ada@example.com","password":"password123","passwordConfirm":"password123","name":"Ada"}' \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  for i in 1 2 3; do
    api POST /api/collections/posts/records '{"title":"Post '"$i"'","slug":"post-'"$i"'","views":'"$i"',"tags":["news"],"author":"'"$person"'","ssn":"123-45-678'"$i"'"}' >/dev/null
  done
  api PATCH /api/settings '{"batch":{"enabled":true,"maxRequests":20}}' >/dev/null
  : "$posts"
}

# st_run REPORT SECONDS [st options...]: one schemathesis run against the document in $out.
# System collections (_superusers, _mfas, ...) are left out: a generated password change of the
# superuser this run signs in with would end the run, and their shapes are the same code paths.
st_run() {
  local report="$1" secs="$2"; shift 2
  "$VENV/bin/st" run "$out/openapi.json" --url "$url" "$@" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path-regex '^/api/collections/_' \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${ST_MAX_EXAMPLES:-25}" --max-time "$secs" \
    --workers 1 --seed 20261205 --request-timeout 10 \
    --suppress-health-check all --warnings off \
    --report junit --report-junit-path "$report"
}

run_backend() {
  local backend="$1"; shift
  local out="$here/test-artifacts/schemathesis/$backend"
  rm -rf "$out"; mkdir -p "$out"
  local dir; dir="$(mktemp -d)"
  local port; port="$(free_port)"
  url="http://127.0.0.1:$port"
  "$bin" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$dir" "$@" >/dev/null
  BASALT_PII_KEYS="st:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" \
    "$bin" serve --http "127.0.0.1:$port" --dir "$dir" "$@" >"$out/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "$url/api/health" >/dev/null && break; sleep 0.1; done
  token="$(curl -sS --fail-with-body -X POST "$url/api/collections/_superusers/auth-with-password" \
    -H 'Content-Type: application/json' --data "{\"identity\":\"$SU_EMAIL\",\"password\":\"$SU_PASSWORD\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
  fixture
  api GET /api/openapi.json >"$out/openapi.json"
  echo "== schemathesis on $backend ($(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(v) for v in d["paths"].values()))' "$out/openapi.json") operations in the document)"
  local status=0
  st_run "$out/junit.xml" "${ST_MAX_TIME:-120}" -H "Authorization: $token" || status=$?
  # Then as a guest: the same operations through the rules (401/403/404 answers must be documented too).
  st_run "$out/junit-guest.xml" "${ST_GUEST_TIME:-30}" || status=$?
  if [ "$status" != 0 ]; then
    echo "-- server log ($out/server.log), last 30 lines:"; tail -30 "$out/server.log"
  fi
  cleanup; pids=()
  rm -rf "$dir"
  return "$status"
}

status=0
if [ "$which" = all ] || [ "$which" = sqlite ]; then run_backend sqlite || status=1; fi
if [ "$which" = all ] || [ "$which" = postgres ]; then
  db="basalt_st_$(date +%s)_$$"
  psql "$PG_URL_BASE/postgres" -qc "CREATE DATABASE $db" >/dev/null
  run_backend postgres --database-url "$PG_URL_BASE/$db" || status=1
  sleep 0.3
  psql "$PG_URL_BASE/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
fi
exit $status
