#!/usr/bin/env bash
# Stop the Orthanc server started by infra/orthanc/start.sh (no-op when it is not running).
#   infra/orthanc/stop.sh [DATA_DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA_DIR="${1:-${JL_HOME:-$REPO/var}/orthanc}"
PID_FILE="$DATA_DIR/orthanc.pid"
[ -f "$PID_FILE" ] || exit 0
PID="$(cat "$PID_FILE")"
if grep -qa Orthanc "/proc/$PID/cmdline" 2>/dev/null; then   # not a recycled pid
  kill -TERM "$PID"
  for _ in $(seq 1 60); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
fi
rm -f "$PID_FILE"
