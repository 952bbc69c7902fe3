#!/usr/bin/env bash
# Builds Basalt (release) and runs `basalt serve` on embedded defaults: SQLite in ./basalt_data,
# listening on 127.0.0.1:8090. Extra arguments go to `basalt serve` (e.g. --database-url postgres://…).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if ! command -v cc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
  else
    echo "need a C compiler: apt-get install build-essential" >&2; exit 1
  fi
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}"
cargo build --release -p basalt
exec "$CARGO_TARGET_DIR/release/basalt" serve "$@"
