#!/usr/bin/env bash
# Start a PostgreSQL server from Debian's packages on loopback, for the regional source database
# (and, later, serving). Idempotent: an already running server in DATA_DIR is left as it is.
#
#   infra/postgres/start.sh [DATA_DIR] [PORT]        (defaults: $JL_HOME/postgres, 55432)
#
# The server trusts local connections (loopback only, a development/CI server: never expose it).
# Prints the SQLAlchemy URL of the `jiceng` database, e.g. postgresql://jiceng@127.0.0.1:55432/jiceng
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA_DIR="${1:-${JL_HOME:-$REPO/var}/postgres}"
PORT="${2:-55432}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$BIN/initdb" ] || { echo "PostgreSQL server binaries not found: run 'make setup' (Debian package postgresql)" >&2; exit 1; }

# the server refuses to run as root: run it as the postgres system user then
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$DATA_DIR"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DATA_DIR"; chmod 700 "$DATA_DIR"; fi

if [ ! -f "$DATA_DIR/PG_VERSION" ]; then
  as_pg "$BIN/initdb" -D "$DATA_DIR" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! as_pg "$BIN/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1; then
  as_pg "$BIN/pg_ctl" -D "$DATA_DIR" -l "$DATA_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA_DIR -c fsync=off" start >/dev/null
fi
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qAt)
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='jiceng'")" != 1 ]; then
  "${PSQL[@]}" -c "CREATE ROLE jiceng LOGIN" >/dev/null
fi
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname='jiceng'")" != 1 ]; then
  "${PSQL[@]}" -c "CREATE DATABASE jiceng OWNER jiceng" >/dev/null
fi
echo "postgresql://jiceng@127.0.0.1:$PORT/jiceng"
