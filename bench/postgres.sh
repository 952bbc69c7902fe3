#!/usr/bin/env bash
# Basalt in PostgreSQL mode: read by id (cache on and off), filtered list of 20 and create, against one
# node and against three nodes behind HAProxy, beside `pgbench -S` at the same concurrency as the
# database's ceiling. Prints a Markdown table (see docs/benchmarks.md).
#
# The database and Basalt share SERVER_CPU (PostgreSQL's processes are pinned there with taskset, as
# are the nodes and HAProxy); wrk and pgbench run on LOAD_CPU. Same data as bench/run.sh (seed.py).
#
# Environment: DURATION (10s), WARMUP (3s), CONNECTIONS (32), RECORDS (10000), SERVER_CPU (0),
#   LOAD_CPU (1), BENCH_PG (postgres://postgres@127.0.0.1:5432), BENCH_REDIS (redis://127.0.0.1:6379),
#   BASALT_BIN (else a release build in CARGO_TARGET_DIR), PORT_BASE (18190).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-32}
RECORDS=${RECORDS:-10000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
REDIS=${BENCH_REDIS:-redis://127.0.0.1:6379}
PORT_BASE=${PORT_BASE:-18190}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/basalt/target}
EMAIL=bench@example.com
PASS=bench-password-123
LIST_QS='filter=%28score%3E500%29&sort=-score&perPage=20&skipTotal=1'
say() { printf '>> %s\n' "$*" >&2; }
missing=()
for t in wrk pgbench haproxy taskset curl psql; do command -v $t >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing wrk postgresql-client haproxy util-linux curl"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postgresql-client haproxy util-linux curl >/dev/null
  else
    echo "missing ${missing[*]}: apt-get install wrk postgresql-client haproxy util-linux curl" >&2; exit 1
  fi
fi
if [[ -n ${BASALT_BIN:-} ]]; then B=$BASALT_BIN; else
  say "building basalt (release)"; (cd "$ROOT" && nice -n 19 cargo build -q --release -p basalt); B=$CARGO_TARGET_DIR/release/basalt
fi
RUN=$(mktemp -d "${TMPDIR:-/tmp}/basalt-pgbench.XXXXXX")
PIDS=()
stop_all() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap 'stop_all' EXIT
# PostgreSQL on the server core (new backends inherit the postmaster's affinity).
for p in $(pgrep -x postgres || pgrep postgres); do taskset -a -p -c "$SERVER_CPU" "$p" >/dev/null 2>&1 || true; done

declare -A R=()
run_wrk() { # KEY URL [LUA]
  local key=$1 url=$2 lua=${3:-} args=(-t1 -c"$CONNECTIONS" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$WARMUP" "$url" >/dev/null
  taskset -c "$LOAD_CPU" wrk "${args[@]}" -d"$DURATION" "$url" >"$RUN/$key.txt"
  R[$key]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$RUN/$key.txt")
  R[$key.p99]=$(awk '/^[ \t]+99%/ {v=$2; n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /[^m]s$/) n*=1000; printf "%.2f", n}' "$RUN/$key.txt")
  local bad; bad=$(awk '/Non-2xx/ {print $NF}' "$RUN/$key.txt"); [[ -z $bad ]] || say "$key: $bad non-2xx responses"
  say "$key: ${R[$key]} rps, p99 ${R[$key.p99]} ms"
}
fresh_db() { local n="basalt_bench_$RANDOM$RANDOM"; psql "$PG/postgres" -qc "CREATE DATABASE $n" >/dev/null; echo "$PG/$n"; }
node() { # PORT DB CACHE(on|off) -> starts a node pinned to the server core
  local port=$1 db=$2 cache=$3 dir="$RUN/node-$1"
  mkdir -p "$dir"
  BASALT_CACHE=$cache BASALT_LOG=warn taskset -c "$SERVER_CPU" "$B" serve --http "127.0.0.1:$port" --dir "$dir" \
    --database-url "$db" --redis-url "$REDIS" >"$dir.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && return 0; sleep 0.1; done
  echo "node $port did not start" >&2; tail "$dir.log" >&2; exit 1
}
suite() { # LABEL BASE DB CACHE
  local label=$1 base=$2 db=$3
  "$B" superuser upsert "$EMAIL" "$PASS" --database-url "$db" --dir "$RUN" >/dev/null
  local id; id=$(python3 "$HERE/seed.py" --url "$base" --email "$EMAIL" --password "$PASS" --count "$RECORDS" --workers 8 2>/dev/null | tail -1)
  [[ $id =~ ^[a-z0-9]+$ ]] || { echo "seeding failed" >&2; exit 1; }
  run_wrk "$label.read" "$base/api/collections/posts/records/$id"
  [[ $label == *cache-off* ]] || return 0
  run_wrk "$label.list" "$base/api/collections/posts/records?$LIST_QS"
  run_wrk "$label.create" "$base/api/collections/posts/records" "$HERE/create.lua"
}

P=$PORT_BASE
for cache in on off; do
  db=$(fresh_db)
  node $((P + 1)) "$db" $cache
  suite "1node-cache-$cache" "http://127.0.0.1:$((P + 1))" "$db"
  stop_all
done
for cache in on off; do
  db=$(fresh_db)
  for i in 1 2 3; do node $((P + 1 + i)) "$db" $cache; done
  cat >"$RUN/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode http
  timeout connect 1s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$P
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  server n1 127.0.0.1:$((P + 2))
  server n2 127.0.0.1:$((P + 3))
  server n3 127.0.0.1:$((P + 4))
CFG
  taskset -c "$SERVER_CPU" haproxy -f "$RUN/haproxy.cfg" -db >"$RUN/haproxy.log" 2>&1 &
  PIDS+=($!)
  sleep 0.5
  suite "3nodes-cache-$cache" "http://127.0.0.1:$P" "$db"
  stop_all
done
# The database's ceiling: pgbench's select-only transaction (one PK lookup) at the same concurrency.
pdb=$(fresh_db)
pgbench -q -i -s 10 "$pdb" >/dev/null 2>&1
taskset -c "$LOAD_CPU" pgbench -S -M prepared -c "$CONNECTIONS" -j 1 -T "${DURATION%s}" "$pdb" >"$RUN/pgbench.txt" 2>&1
R[pgbench]=$(awk '/^tps = / {printf "%.0f", $3}' "$RUN/pgbench.txt")
say "pgbench -S: ${R[pgbench]} tps"

echo
echo "Basalt on PostgreSQL $(psql "$PG/postgres" -tAc 'SHOW server_version'), Redis, $CONNECTIONS connections, server+database on cpu $SERVER_CPU, load on cpu $LOAD_CPU, $DURATION runs"
echo
echo "| test | 1 node rps | 1 node p99 ms | 3 nodes (HAProxy) rps | 3 nodes p99 ms |"
echo "|---|---:|---:|---:|---:|"
for row in "read-by-id, cache on:1node-cache-on.read:3nodes-cache-on.read" "read-by-id, cache off:1node-cache-off.read:3nodes-cache-off.read" \
           "list-20 (cache off):1node-cache-off.list:3nodes-cache-off.list" "create (cache off):1node-cache-off.create:3nodes-cache-off.create"; do
  IFS=: read -r name a b <<<"$row"
  echo "| $name | ${R[$a]:-} | ${R[$a.p99]:-} | ${R[$b]:-} | ${R[$b.p99]:-} |"
done
echo "| pgbench -S (tps, same concurrency) | ${R[pgbench]} | | | |"
awk -v a="${R[1node-cache-off.read]}" -v p="${R[pgbench]}" 'BEGIN { printf "\nread-by-id without cache = %.0f%% of pgbench -S (target >= 50%%)\n", 100 * a / p }'
for d in $(psql "$PG/postgres" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'basalt_bench_%'"); do psql "$PG/postgres" -qc "DROP DATABASE $d" >/dev/null 2>&1 || true; done
