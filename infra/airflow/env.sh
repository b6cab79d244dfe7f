# Airflow's environment for this repository. Source it from bash (`. infra/airflow/env.sh`);
# start.sh, stop.sh and the CLI (`airflow dags list`, `airflow dags test ...`) all use it.
# Tasks inherit this environment, so JL_ENV / JL_HOME / LAKE_ROOT set before sourcing reach them.

JL_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export JL_REPO_ROOT
export JL_HOME=${JL_HOME:-$JL_REPO_ROOT/var}

export AIRFLOW_HOME=$JL_HOME/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$JL_REPO_ROOT/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
# SQLite needs an absolute path (four slashes); AIRFLOW_HOME is absolute.
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:///$AIRFLOW_HOME/airflow.db
# The simple auth manager with one admin; `airflow standalone` generates its password into
# $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated.
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
# Local only by default (set AIRFLOW__API__HOST=0.0.0.0 before sourcing to reach it from elsewhere).
export AIRFLOW__API__HOST=${AIRFLOW__API__HOST:-127.0.0.1}
# LocalExecutor starts `parallelism` worker processes up front (~130 MB each; the default 32 take
# ~4 GB that Spark needs); one Spark task runs at a time anyway.
export AIRFLOW__CORE__PARALLELISM=4
# No telemetry: Airflow 3.3 has no usage-data collection of its own (no such option in its config);
# these are the common opt-outs honoured by other tools that run inside tasks (dbt, Scarf-based packages).
export DO_NOT_TRACK=1
export SCARF_ANALYTICS=false
export DBT_SEND_ANONYMOUS_USAGE_STATS=false

# `airflow standalone` starts its components as `airflow ...` found on PATH.
case ":$PATH:" in
  *":$JL_REPO_ROOT/.venv/bin:"*) ;;
  *) export PATH=$JL_REPO_ROOT/.venv/bin:$PATH ;;
esac
