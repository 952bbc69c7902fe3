#!/usr/bin/env bash
# The whole test suite, as CI runs it: services check, Rust unit + integration tests (SQLite and
# PostgreSQL), bounded property tests of the filter parser, and the official-SDK suite on both backends.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}"
export BASALT_TEST_PG="${BASALT_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

scripts/services.sh
command -v node >/dev/null || { echo "node not found: apt-get install -y nodejs npm" >&2; exit 1; }

echo "== cargo fmt / clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== cargo test (unit, property, integration on SQLite and PostgreSQL)"
cargo test --workspace --quiet

echo "== official JS SDK suite"
scripts/test-sdk.sh all
echo "== all tests passed"
