#!/usr/bin/env bash
# Fuzzing with cargo-fuzz (libFuzzer) over the readers of untrusted input (fuzz/fuzz_targets/):
#   filter          the filter and sort languages, parsed and compiled for SQLite and PostgreSQL
#   record_body     a JSON record body, normalised and validated (create and update)
#   multipart       the multipart reader of record writes, batch and backup uploads
#   backup_archive  the zip reader of a backup restore
#   pb_import       the PocketBase import reader (a pb_data/data.db made from the input)
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 60), all targets by default
#   FUZZ_JOBS=2 scripts/fuzz.sh 3600 filter # a long run: an hour, two processes
#
# The seed corpus lives in fuzz/corpus/<target>/ (kept in the repo; add a file there to keep an
# input); what a run discovers goes to ~/.cache/basalt/fuzz/corpus/<target>/, so runs build on each
# other without touching the clone. A crash fails the script: its input is saved under
# test-artifacts/fuzz/<target>/ and the command to reproduce it is printed. Turn it into a test
# (a seed in fuzz/corpus/<target>/ and a unit test of the fixed function), then fix it.
# Needs a nightly toolchain (`rustup toolchain install nightly`) or, without one, the stable
# toolchain with RUSTC_BOOTSTRAP=1; cargo-fuzz is installed once into ~/.cache/basalt/tools.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(filter record_body multipart backup_archive pb_import)
TOOLS="${BASALT_TOOLS:-$HOME/.cache/basalt/tools}"
CACHE="$HOME/.cache/basalt/fuzz"
FUZZ_VERSION=0.13.1
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz $FUZZ_VERSION into $TOOLS (once)" >&2
  cargo install --locked --quiet cargo-fuzz@"$FUZZ_VERSION" --root "$TOOLS" --target-dir "$CACHE/tool-build" >&2
fi
export PATH="$TOOLS/bin:$PATH"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
# Only documentation features may be switched on: crates that probe for nightly (rustix 0.37 under lapin)
# would otherwise enable attributes that this nightly no longer has. The fuzz code itself needs none.
export RUSTFLAGS="${RUSTFLAGS:-} -Zallow-features=doc_cfg,doc_auto_cfg"
opts=(--fuzz-dir fuzz --target-dir "$CACHE/target" -s none --debug-assertions)
echo "== fuzz: building ${#targets[@]} target(s) (first build ~15 min, then incremental)"
for t in "${targets[@]}"; do
  "${fuzz[@]}" build "${opts[@]}" "$t" 2>&1 | grep -vE '^\s*(Compiling|Checking)' >&2 || true
done
status=0
summary=()
for t in "${targets[@]}"; do
  work="$CACHE/corpus/$t"; arts="$here/test-artifacts/fuzz/$t"
  mkdir -p "$work" "$arts" "fuzz/corpus/$t"
  log="$arts/run.log"
  set +e
  jobs=()
  # Several processes (each logs to fuzz-N.log in the current folder) only when asked.
  if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then jobs=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS"); fi
  "${fuzz[@]}" run "${opts[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="$arts/" "${jobs[@]}" \
    -max_len=8192 -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1
  rc=$?
  set -e
  stats=("$log"); [ ${#jobs[@]} -gt 0 ] && stats=("$here"/fuzz-*.log)
  execs="$(grep -h 'stat::number_of_executed_units' "${stats[@]}" 2>/dev/null | awk '{s+=$2} END {print s+0}')"
  units="$(ls "$work" | wc -l)"
  crash="$(ls "$arts" | grep -E '^(crash|leak|timeout|oom)-' || true)"
  if [ "$rc" != 0 ] || [ -n "$crash" ]; then
    status=1
    summary+=("$t: FAILED after $execs executions (exit $rc) ${crash:+inputs: $crash}")
    echo "-- $t: last 40 lines of $log" >&2; tail -40 "$log" >&2
    for c in $crash; do echo "reproduce: ${fuzz[*]} run ${opts[*]} $t $arts/$c" >&2; done
  else
    summary+=("$t: $execs executions in ${secs}s, corpus $units inputs, no crash")
  fi
  rm -f "$here"/fuzz-*.log
done
printf '%s\n' "${summary[@]}"
exit $status
