#!/usr/bin/env bash
# `make up`: Airflow (airflow standalone, :8080) and Superset (:8088) on this machine's demo data.
# Run `make demo` first so there is data to look at.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export JL_HOME=${JL_HOME:-$ROOT/var}
if [ ! -f "$JL_HOME/serving/jiceng.duckdb" ] && [ -z "${SERVING_DB_URL:-}" ]; then
  echo "No serving database yet at $JL_HOME/serving/jiceng.duckdb: run 'make demo' first." >&2
  exit 1
fi
bash "$ROOT/infra/superset/start.sh"
bash "$ROOT/infra/airflow/start.sh"
