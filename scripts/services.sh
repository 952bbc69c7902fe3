#!/usr/bin/env bash
# Makes sure the services the test suite talks to are up: PostgreSQL on 127.0.0.1:5432 (user postgres,
# trust auth). Starts a local Debian cluster when it is installed but stopped; otherwise says how to
# install it. Later components (Redis, NATS, Kafka, S3) add their checks here.
set -euo pipefail
PG_URL="${BASALT_TEST_PG:-postgres://postgres@127.0.0.1:5432}"

pg_up() { psql "$PG_URL/postgres" -qtAc "SELECT 1" >/dev/null 2>&1; }

if ! command -v psql >/dev/null 2>&1; then
  echo "psql not found. On Debian: apt-get install -y postgresql postgresql-client" >&2
  exit 1
fi
if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    ver="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)"
    echo "starting PostgreSQL $ver cluster 'main'" >&2
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  fi
fi
if ! pg_up; then
  cat >&2 <<MSG
PostgreSQL is not reachable at $PG_URL.
Install and start it (Debian):
  apt-get install -y postgresql && pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
and allow trust auth for 127.0.0.1 in pg_hba.conf, or set BASALT_TEST_PG=postgres://user:pass@host:port
MSG
  exit 1
fi
echo "PostgreSQL ok at $PG_URL" >&2
