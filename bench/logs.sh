#!/usr/bin/env bash
# Request logs' cost on read-by-id (issue #15: ≤ 10%), measured in one server so that nothing but
# the logs differs: rounds alternate request logs on (settings logs.maxDays = 5, the default) and
# off (maxDays = 0), ROUNDS pairs, and the report gives each pair and the medians: throughput and
# the server's CPU time per request.
#
# The server is pinned to SERVER_CPU (its log writer shares that core, so throughput shows all the
# logging work), wrk to LOAD_CPU. Environment: ROUNDS (6), DURATION (5s per run), WARMUP (2s),
# CONNECTIONS (32), RECORDS (2000), BASALT_BIN (else a release build), BENCH_PORT (18290),
# KEEP_DATA=1 keeps the data dir. Ends with the number of entries the logs API held after the last
# logs-on run beside the requests that run served, so a run where logging silently stopped shows
# (setting maxDays 0 prunes every entry, so only the last logs-on run's entries are there).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
RECORDS=${RECORDS:-2000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${BENCH_PORT:-18290}
EMAIL=bench@example.com
PASS=bench-password-123
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}
say() { printf '>> %s\n' "$*" >&2; }
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [[ -n ${BASALT_BIN:-} ]]; then BASALT=$BASALT_BIN; else
  say "building basalt (release)"
  (cd "$ROOT" && nice -n 19 cargo build -q --release -p basalt)
  BASALT=$CARGO_TARGET_DIR/release/basalt
fi
RUN=$(mktemp -d "${TMPDIR:-/tmp}/basalt-logs-bench.XXXXXX")
PID=
cleanup() {
  [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [[ ${KEEP_DATA:-0} == 1 ]] || rm -rf "$RUN/data"
  say "wrk output in $RUN"
}
trap cleanup EXIT
BASE="http://127.0.0.1:$PORT"
"$BASALT" superuser upsert "$EMAIL" "$PASS" --dir "$RUN/data" >/dev/null
taskset -c "$SERVER_CPU" "$BASALT" serve --http "127.0.0.1:$PORT" --dir "$RUN/data" >"$RUN/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 300); do curl -fs -o /dev/null "$BASE/api/health" && break; sleep 0.1; done
say "seeding $RECORDS records"
ID=$(python3 "$HERE/seed.py" --url "$BASE" --email "$EMAIL" --password "$PASS" --count "$RECORDS" 2>"$RUN/seed.log" | tail -1)
[[ $ID =~ ^[a-z0-9]+$ ]] || { cat "$RUN/seed.log" >&2; echo "seeding gave no record id" >&2; exit 1; }
TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
  -d "{\"identity\":\"$EMAIL\",\"password\":\"$PASS\"}" \
  "$BASE/api/collections/_superusers/auth-with-password" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
max_days() {
  curl -fsS -o /dev/null -X PATCH -H "Authorization: $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"logs\":{\"maxDays\":$1}}" "$BASE/api/settings"
}
URL="$BASE/api/collections/posts/records/$ID"
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
run() { # run NAME ROUND -> prints "rps µs-of-server-CPU-per-request"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" "$URL" >/dev/null
  local t0 t1
  t0=$(cpu_ticks)
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "$URL" >"$RUN/wrk-$1-$2.txt"
  t1=$(cpu_ticks)
  awk -v t="$((t1 - t0))" -v hz="$HZ" '/^Requests\/sec:/ {rps = $2} / requests in / {n = $1} END {printf "%s %.2f\n", rps, 1e6 * t / hz / n}' "$RUN/wrk-$1-$2.txt"
}
# Two figures per run: throughput, which the host's other tenants and clock drift move by several
# percent between runs, and the server's CPU time per request (its utime + stime over the requests
# served), which they move far less: the work logging adds.
on=() off=() con=() coff=()
for ((r = 1; r <= ROUNDS; r++)); do
  # Alternate which goes first, so a drift over the run weighs on both alike.
  if ((r % 2)); then order=(on off); else order=(off on); fi
  for m in "${order[@]}"; do
    if [[ $m == on ]]; then max_days 5; else max_days 0; fi
    read -r v c < <(run "$m" "$r")
    if [[ $m == on ]]; then
      sleep 0.5 # the writer's 100 ms linger and its commit
      entries=$(curl -fsS -H "Authorization: $TOKEN" "$BASE/api/logs?perPage=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["totalItems"])')
      served=$(awk '/ requests in / {print $1}' "$RUN/wrk-on-$r.txt")
    fi
    if [[ $m == on ]]; then on+=("$v"); con+=("$c"); else off+=("$v"); coff+=("$c"); fi
  done
  say "round $r: logs on ${on[-1]} rps (${con[-1]} µs CPU/request), off ${off[-1]} rps (${coff[-1]} µs) ($(awk -v a="${on[-1]}" -v b="${off[-1]}" 'BEGIN {printf "%.1f%%", 100 * (b - a) / b}') cost)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
mon=$(median "${on[@]}") moff=$(median "${off[@]}")
mcon=$(median "${con[@]}") mcoff=$(median "${coff[@]}")
echo "## Request logs on read-by-id ($(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty 2>/dev/null))"
echo
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f%%", 100 * (b - a) / b}'; }
echo "| round | logs on (rps) | logs off (rps) | throughput cost | on (µs CPU/req) | off (µs CPU/req) | CPU cost |"
echo "|---|---|---|---|---|---|---|"
# Each round's own cost (its two runs are back to back, so slow drift cancels inside a pair); the
# median of those is the figure least moved by one disturbed run.
rcost=() ccost=()
for ((i = 0; i < ROUNDS; i++)); do
  rc=$(pct "${on[i]}" "${off[i]}") cc=$(pct "${coff[i]}" "${con[i]}")
  rcost+=("${rc%\%}") ccost+=("${cc%\%}")
  echo "| $((i + 1)) | ${on[i]} | ${off[i]} | $rc | ${con[i]} | ${coff[i]} | $cc |"
done
echo "| median | $mon | $moff | $(pct "$mon" "$moff") | $mcon | $mcoff | $(pct "$mcoff" "$mcon") |"
echo "| median of the rounds' costs | | | $(median "${rcost[@]}")% | | | $(median "${ccost[@]}")% |"
echo
echo "Entries in the logs API after the last logs-on run: $entries; that run served $served measured requests after its warmup (dropped: $(curl -fsS "$BASE/metrics" -H "Authorization: $TOKEN" 2>/dev/null | awk '/^basalt_request_logs_total.*dropped/ {print $2}' | head -1))"
