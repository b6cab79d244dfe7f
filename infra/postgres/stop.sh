#!/usr/bin/env bash
# Stop the PostgreSQL server started by infra/postgres/start.sh (no-op when it is not running).
#   infra/postgres/stop.sh [DATA_DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA_DIR="${1:-${JL_HOME:-$REPO/var}/postgres}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ -f "$DATA_DIR/PG_VERSION" ] || exit 0
as_pg "$BIN/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1 || exit 0
as_pg "$BIN/pg_ctl" -D "$DATA_DIR" -m fast -w stop >/dev/null
