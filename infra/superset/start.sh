#!/usr/bin/env bash
# `make up` for Superset: provision (idempotent: metadata DB, admin user, dashboards bundle), then
# serve on 127.0.0.1:8088 in the background. Pid file and log: $JL_HOME/superset/superset.{pid,log}.
# SUPERSET_HOST / SUPERSET_PORT change the address; a second call leaves a running server alone.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
exec "$ROOT/.venv-bi/bin/python" "$ROOT/dashboards/provision.py" --start "$@"
