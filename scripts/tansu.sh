#!/usr/bin/env bash
# Kafka-protocol broker for the Kafka sink's tests: tansu (pure Rust, from crates.io).
#   scripts/tansu.sh install   build it once (20-30 min) into ~/.cache/basalt/tools/bin, reused afterwards
#   scripts/tansu.sh path      print the binary's path (installing first if missing)
# The build cache lives outside the clone so a second install is incremental.
set -euo pipefail
VERSION="${TANSU_VERSION:-0.6.0}"
ROOT="${BASALT_TOOLS:-$HOME/.cache/basalt/tools}"
BIN="$ROOT/bin/tansu"
install() {
  if [ -x "$BIN" ]; then return 0; fi
  echo "building tansu $VERSION once (20-30 min); it is reused from $BIN afterwards" >&2
  mkdir -p "$ROOT"
  cargo install --locked --quiet tansu@"$VERSION" --features dynostore,libsql \
    --root "$ROOT" --target-dir "$HOME/.cache/basalt/tansu-build" >&2
}
case "${1:-path}" in
  install) install ;;
  path) install; echo "$BIN" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
