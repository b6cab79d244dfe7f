#!/usr/bin/env bash
# `make down`: stop what `make up` started.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export JL_HOME=${JL_HOME:-$ROOT/var}
bash "$ROOT/infra/airflow/stop.sh"
"$ROOT/.venv-bi/bin/python" "$ROOT/dashboards/provision.py" --stop 2>/dev/null || true
