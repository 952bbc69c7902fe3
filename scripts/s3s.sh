#!/usr/bin/env bash
# S3-compatible server for the storage tests: s3s-fs (pure Rust, from crates.io; 0.14.1 is the newest
# release whose rust-version the machine's rustc 1.95 meets).
#   scripts/s3s.sh install   build it once (a few minutes) into ~/.cache/basalt/tools/bin, reused afterwards
#   scripts/s3s.sh path      print the binary's path (installing first if missing)
# The tests start their own s3s-fs on a free port over a temporary folder (see crates/http/tests and
# sdk-tests/run.sh); nothing here runs a server.
set -euo pipefail
VERSION="${S3S_VERSION:-0.14.1}"
ROOT="${BASALT_TOOLS:-$HOME/.cache/basalt/tools}"
BIN="$ROOT/bin/s3s-fs"
install() {
  if [ -x "$BIN" ]; then return 0; fi
  echo "building s3s-fs $VERSION once; it is reused from $BIN afterwards" >&2
  mkdir -p "$ROOT"
  cargo install --locked --quiet s3s-fs@"$VERSION" --features binary \
    --root "$ROOT" --target-dir "$HOME/.cache/basalt/s3s-build" >&2
}
case "${1:-path}" in
  install) install ;;
  path) install; echo "$BIN" ;;
  *) echo "usage: $0 install|path" >&2; exit 2 ;;
esac
