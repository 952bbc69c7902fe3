#!/usr/bin/env bash
# Prints a PostgreSQL URL (user postgres, trust auth) the test suite can use, starting a server first
# when needed:
#   1. $BASALT_TEST_PG (default postgres://postgres@127.0.0.1:5432) if it answers;
#   2. else the machine's Debian cluster, started with pg_ctlcluster, if it then answers;
#   3. else a private throwaway cluster under ~/.cache/basalt/pg on port 54329 (initdb, trust auth),
#      installing Debian's postgresql package first when it is missing and we are root.
# Before that it makes sure NATS with JetStream answers on $BASALT_TEST_NATS (default 127.0.0.1:4222),
# starting a private `nats-server -js` (store in ~/.cache/basalt/nats) when none does; the events tests
# also start private servers from the same binary. Then Redis on $BASALT_TEST_REDIS (default
# 127.0.0.1:6379; a private `redis-server` when none answers), the `haproxy` binary for the cluster test,
# the `prometheus` binary for the observability test,
# and RabbitMQ on $BASALT_TEST_RABBITMQ (default 127.0.0.1:5672, guest/guest; Debian's rabbitmq-server).
set -euo pipefail
url="${BASALT_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
say() { echo "services: $*" >&2; }
up() { psql "$1/postgres" -qtAc "SELECT 1" >/dev/null 2>&1; }

need_pkg() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing $*"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    say "missing $*: install with apt-get install $*"; exit 1
  fi
}

command -v nats-server >/dev/null || need_pkg nats-server
nats="${BASALT_TEST_NATS:-nats://127.0.0.1:4222}"
nhp="${nats#nats://}"; nhost="${nhp%:*}"; nport="${nhp##*:}"
if ! (exec 3<>"/dev/tcp/$nhost/$nport") 2>/dev/null; then
  say "starting nats-server -js on $nhost:$nport"
  mkdir -p "$HOME/.cache/basalt/nats"
  setsid nats-server -a "$nhost" -p "$nport" -js -sd "$HOME/.cache/basalt/nats" >/dev/null 2>&1 < /dev/null &
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/$nhost/$nport") 2>/dev/null && break; sleep 0.1; done
fi
say "NATS ok at $nhost:$nport"

# Redis (the cluster tests' shared cache, limits and messages) and HAProxy (their load balancer).
command -v redis-server >/dev/null || need_pkg redis-server
redis="${BASALT_TEST_REDIS:-redis://127.0.0.1:6379}"
rhp="${redis#redis://}"; rhp="${rhp%%/*}"; rhost="${rhp%:*}"; rport="${rhp##*:}"
if ! (exec 3<>"/dev/tcp/$rhost/$rport") 2>/dev/null; then
  say "starting redis-server on $rhost:$rport"
  redis-server --bind "$rhost" --port "$rport" --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/$rhost/$rport") 2>/dev/null && break; sleep 0.1; done
fi
say "Redis ok at $rhost:$rport"
command -v haproxy >/dev/null || need_pkg haproxy
# Prometheus (with promtool): the observability test scrapes a running server with it.
command -v prometheus >/dev/null || need_pkg prometheus

# RabbitMQ (the RabbitMQ sink's tests reach it through an in-test proxy): guest/guest on 5672.
rabbit="${BASALT_TEST_RABBITMQ:-127.0.0.1:5672}"
rhost2="${rabbit%:*}"; rport2="${rabbit##*:}"
if ! (exec 3<>"/dev/tcp/$rhost2/$rport2") 2>/dev/null; then
  command -v rabbitmq-server >/dev/null || need_pkg rabbitmq-server
  say "starting rabbitmq-server"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/$rhost2/$rport2") 2>/dev/null && break; sleep 0.2; done
fi
(exec 3<>"/dev/tcp/$rhost2/$rport2") 2>/dev/null || { say "RabbitMQ did not come up on $rabbit"; exit 1; }
say "RabbitMQ ok at $rabbit"

command -v psql >/dev/null || need_pkg postgresql postgresql-client
if up "$url"; then say "PostgreSQL ok at $url"; echo "$url"; exit 0; fi

if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  ver="$(ls /etc/postgresql | sort -n | tail -1)"
  say "starting the Debian PostgreSQL $ver cluster"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do up "$url" && { echo "$url"; exit 0; }; sleep 0.2; done
fi

# A private cluster: never touches the system's configuration.
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$bindir/initdb" ] || need_pkg postgresql
bindir="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
data="$HOME/.cache/basalt/pg"
port=54329
priv="postgres://postgres@127.0.0.1:$port"
if up "$priv"; then echo "$priv"; exit 0; fi
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$data"
[ "$(id -u)" = 0 ] && chown postgres "$data"
if [ ! -f "$data/PG_VERSION" ]; then
  say "creating a private PostgreSQL cluster in $data"
  run "$bindir/initdb" -D "$data" -U postgres -A trust >/dev/null
fi
run "$bindir/pg_ctl" -D "$data" -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" -l "$data/log" start >/dev/null
for _ in $(seq 1 50); do up "$priv" && { say "PostgreSQL ok at $priv"; echo "$priv"; exit 0; }; sleep 0.2; done
say "PostgreSQL did not come up; see $data/log"; exit 1
