#!/usr/bin/env bash
# Start an Orthanc server from Debian's packages (orthanc, orthanc-dicomweb) on loopback: the
# regional PACS, a source of imaging exams. Idempotent: a server already running from DATA_DIR is
# left as it is.
#
#   infra/orthanc/start.sh [DATA_DIR] [HTTP_PORT]       (defaults: $JL_HOME/orthanc, 58042)
#
# DATA_DIR holds everything: orthanc.json (written on every start), the storage and index
# (storage/), orthanc.pid and orthanc.log. The DICOM (C-STORE) listener is off: instances arrive
# over REST (POST /instances) or DICOMweb STOW-RS (/dicom-web/). RemoteAccessAllowed is false, so
# only loopback clients are served (Orthanc 1.10 has no bind-address option). Authentication is
# on when JL_ORTHANC_USER and JL_ORTHANC_PASSWORD are set in the environment, else off (loopback
# development/CI server: never expose it). Prints the base URL, e.g. http://127.0.0.1:58042
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA_DIR="${1:-${JL_HOME:-$REPO/var}/orthanc}"
PORT="${2:-58042}"
BIN="${JL_ORTHANC_BIN:-$(command -v Orthanc || echo /usr/sbin/Orthanc)}"
PLUGIN_DIR=/usr/share/orthanc/plugins
[ -x "$BIN" ] || { echo "Orthanc not found: run 'make setup' (Debian packages orthanc, orthanc-dicomweb)" >&2; exit 1; }
[ -e "$PLUGIN_DIR/libOrthancDicomWeb.so" ] || { echo "Orthanc DICOMweb plugin not found: run 'make setup' (Debian package orthanc-dicomweb)" >&2; exit 1; }

mkdir -p "$DATA_DIR/storage"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
PID_FILE="$DATA_DIR/orthanc.pid"
CONFIG="$DATA_DIR/orthanc.json"
URL="http://127.0.0.1:$PORT"
USER_NAME="${JL_ORTHANC_USER:-}"
PASSWORD="${JL_ORTHANC_PASSWORD:-}"
CURL=(curl -fsS -o /dev/null --max-time 2)
[ -n "$USER_NAME" ] && CURL+=(-u "$USER_NAME:$PASSWORD")

# our server: the pid in the pid file is alive and is Orthanc (not a recycled pid)
running() { [ -f "$PID_FILE" ] && grep -qa Orthanc "/proc/$(cat "$PID_FILE")/cmdline" 2>/dev/null; }
# the process just started is still there (neither gone nor a zombie). Until the forked shell has
# exec'd Orthanc its command line is bash's, so `running` is no test while starting: on a loaded
# machine that fork can take longer than the first poll.
alive() { local state; state=$(cut -d' ' -f3 "/proc/$(cat "$PID_FILE")/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]; }

if ! running; then
  if "${CURL[@]}" "$URL/system" 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port $PORT is already in use by another server" >&2; exit 1
  fi
  # the config holds the password (from the environment): readable by the owner only
  umask 077
  python3 - "$CONFIG" "$DATA_DIR/storage" "$PORT" "$PLUGIN_DIR/libOrthancDicomWeb.so" <<'PY'
import json, os, sys
config, storage, port, plugin = sys.argv[1:]
user, password = os.environ.get("JL_ORTHANC_USER"), os.environ.get("JL_ORTHANC_PASSWORD")
doc = {
    "Name": "JICENG-PACS",
    "StorageDirectory": storage, "IndexDirectory": storage, "StorageCompression": False,
    "HttpServerEnabled": True, "HttpPort": int(port), "RemoteAccessAllowed": False,
    "HttpDescribeErrors": True, "HttpCompressionEnabled": False, "OrthancExplorerEnabled": True,
    "WebDavEnabled": False, "DicomServerEnabled": False, "DefaultEncoding": "Utf8",
    "SaveJobs": False, "ConcurrentJobs": 2,
    "Plugins": [plugin],
    "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                 "Host": "127.0.0.1", "Ssl": False},
    "AuthenticationEnabled": bool(user),
    "RegisteredUsers": {user: password or ""} if user else {},
}
with open(config, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=2)
PY
  umask 022
  nohup "$BIN" "$CONFIG" >>"$DATA_DIR/orthanc.log" 2>&1 </dev/null &
  echo $! > "$PID_FILE"
fi

for _ in $(seq 1 120); do
  if "${CURL[@]}" "$URL/system" 2>/dev/null; then echo "$URL"; exit 0; fi
  alive || { echo "Orthanc exited while starting; see $DATA_DIR/orthanc.log:" >&2; tail -20 "$DATA_DIR/orthanc.log" >&2; exit 1; }
  sleep 0.5
done
echo "Orthanc did not answer on $URL/system within 60 s; see $DATA_DIR/orthanc.log" >&2
exit 1
