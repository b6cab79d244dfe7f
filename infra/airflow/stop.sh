#!/usr/bin/env bash
# Stop the Airflow started by start.sh: SIGTERM to its process group (standalone, its components and
# any running task), SIGKILL after 30 s.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PID_FILE=$AIRFLOW_HOME/standalone.pid
say() { printf '\033[1;34m[airflow]\033[0m %s\n' "$*"; }

if [ ! -f "$PID_FILE" ]; then
  say "not running (no $PID_FILE)"
  exit 0
fi
pid=$(cat "$PID_FILE")
# A stale pid file may name an unrelated process by now: only stop our own `airflow standalone`.
if ! ps -o args= -p "$pid" 2>/dev/null | grep -q "airflow standalone"; then
  say "not running (stale pid $pid)"
  rm -f "$PID_FILE"
  exit 0
fi

say "stopping airflow standalone (process group $pid)"
kill -TERM -- "-$pid" 2>/dev/null || true
for _ in $(seq 30); do
  if ! kill -0 -- "-$pid" 2>/dev/null; then
    rm -f "$PID_FILE"
    say "stopped"
    exit 0
  fi
  sleep 1
done
say "still running after 30 s: SIGKILL"
kill -KILL -- "-$pid" 2>/dev/null || true
rm -f "$PID_FILE"
