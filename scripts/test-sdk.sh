#!/usr/bin/env bash
# Runs the official-SDK acceptance suite (sdk-tests/) against Basalt on SQLite and on PostgreSQL.
# Usage: scripts/test-sdk.sh [sqlite|postgres|all]   (default: all)
# Needs: node/npm; PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) for the postgres leg.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}"
which="${1:-all}"
PG_URL_BASE="${BASALT_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

(cd sdk-tests && { [ -d node_modules/graphql-ws ] && [ -d node_modules/pocketbase ] && [ -d node_modules/typescript ] || npm ci --no-audit --no-fund --loglevel=error; })
(cd ui && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error; })
cargo build --quiet -p basalt
bin="$CARGO_TARGET_DIR/debug/basalt"

SU_EMAIL=admin@example.com
SU_PASSWORD=adminpass123
pids=()
cleanup() { for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# A private S3-compatible server (s3s-fs) for the storage legs.
s3_root="$(mktemp -d)"; mkdir -p "$s3_root/basalt-sdk"
s3_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
s3s_bin="${BASALT_S3S_BIN:-$(scripts/s3s.sh path)}" # built first (once) when missing, not behind the tests' back
"$s3s_bin" --host 127.0.0.1 --port "$s3_port" --access-key AKSDK --secret-key SKSDK "$s3_root" >/dev/null 2>&1 &
pids+=($!)
S3_ENV=(S3_ENDPOINT="http://127.0.0.1:$s3_port" S3_BUCKET=basalt-sdk S3_ACCESS_KEY=AKSDK S3_SECRET=SKSDK S3_REGION=us-east-1)

# run_leg NAME BACKEND [basalt flags...]: the whole suite on local storage, then the files and batch
# tests again with the files in S3.
run_leg() {
  local name="$1"; shift
  local backend="$1"; shift
  local dir; dir="$(mktemp -d)"
  local port; port="$(free_port)"
  "$bin" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$dir" "$@" >/dev/null
  # The suite's OAuth2 provider runs on loopback, which the egress policy refuses by default.
  # A PII key ring for pii.test.mjs (a fixed test key; nothing else changes until a field is marked pii).
  BASALT_PII_KEYS="sdk:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" \
  BASALT_EGRESS_ALLOW="127.0.0.1" "$bin" serve --http "127.0.0.1:$port" --dir "$dir" "$@" >"$dir/server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 0.1; done
  echo "== SDK suite on $name (port $port)"
  local env=(BASALT_URL="http://127.0.0.1:$port" SU_EMAIL="$SU_EMAIL" SU_PASSWORD="$SU_PASSWORD" BASALT_BACKEND="$backend")
  if ! (cd sdk-tests && env "${env[@]}" node --test --test-concurrency=1 ./*.test.mjs); then
    echo "-- server log ($dir/server.log), last 40 lines:"; tail -40 "$dir/server.log"
    return 1
  fi
  echo "== SDK files and batch tests on $name with files in S3 (s3s-fs on port $s3_port)"
  if ! (cd sdk-tests && env "${env[@]}" "${S3_ENV[@]}" node --test --test-concurrency=1 files.test.mjs batch.test.mjs); then
    echo "-- server log ($dir/server.log), last 40 lines:"; tail -40 "$dir/server.log"
    return 1
  fi
  # Last: the backup journey restores a backup, which resets the server's data (the settings
  # journeys, in the next file, put back what they change). The S3 server is for the settings test.
  echo "== dashboard journeys in Chromium on $name (screenshots in test-artifacts/ui/$backend)"
  if ! (cd ui && env "${env[@]}" "${S3_ENV[@]}" node --test --test-concurrency=1 e2e/); then
    echo "-- server log ($dir/server.log), last 40 lines:"; tail -40 "$dir/server.log"
    return 1
  fi
}

status=0
if [ "$which" = all ] || [ "$which" = sqlite ]; then run_leg sqlite sqlite || status=1; fi
if [ "$which" = all ] || [ "$which" = postgres ]; then
  db="basalt_sdk_$(date +%s)_$$"
  psql "$PG_URL_BASE/postgres" -qc "CREATE DATABASE $db" >/dev/null
  run_leg postgres postgres --database-url "$PG_URL_BASE/$db" || status=1
  cleanup; pids=()
  sleep 0.3
  psql "$PG_URL_BASE/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
fi
rm -rf "$s3_root"
exit $status
