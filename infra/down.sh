#!/usr/bin/env bash
# `make down`: stop what `make up` started.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export JL_HOME=${JL_HOME:-$ROOT/var}
bash "$ROOT/infra/airflow/stop.sh"
bash "$ROOT/infra/superset/stop.sh"
