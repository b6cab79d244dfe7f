#!/usr/bin/env bash
# Stop the Superset server that infra/superset/start.sh started (pid file under $JL_HOME/superset).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PIDFILE="${JL_HOME:-$ROOT/var}/superset/superset.pid"
[ -f "$PIDFILE" ] || { echo "Superset is not running (no $PIDFILE)"; exit 0; }
pid=$(cat "$PIDFILE")
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  echo "Superset stopped (pid $pid)"
fi
rm -f "$PIDFILE"
