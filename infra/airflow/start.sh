#!/usr/bin/env bash
# Start Airflow (scheduler, DAG processor, API server, triggerer) in the background for `make up`:
# `airflow standalone` with LocalExecutor on SQLite, log and pid under $AIRFLOW_HOME. Waits until
# the API server answers, then prints where to log in. Running it again while Airflow runs is a no-op.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PID_FILE=$AIRFLOW_HOME/standalone.pid
LOG_FILE=$AIRFLOW_HOME/standalone.log
URL=http://127.0.0.1:8080
PASSWORD_FILE=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
WAIT_SECONDS=${AIRFLOW_START_TIMEOUT:-180}

say() { printf '\033[1;34m[airflow]\033[0m %s\n' "$*"; }
ready() {
  say "Airflow UI: $URL  (user admin; password in $PASSWORD_FILE)"
  say "log: $LOG_FILE   stop: infra/airflow/stop.sh"
}

if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  say "already running (pid $(cat "$PID_FILE"))"
  ready
  exit 0
fi

if curl -s -o /dev/null "$URL" 2>/dev/null; then
  say "something else already answers on $URL (another Airflow?); stop it first"
  exit 1
fi

mkdir -p "$AIRFLOW_HOME"
say "migrating the metadata database and creating pools"
airflow db migrate >>"$LOG_FILE" 2>&1
# The pool named in the DAGs (SPARK_POOL); an unknown pool would leave tasks scheduled forever.
airflow pools import "$JL_REPO_ROOT/infra/airflow/pools.json" >>"$LOG_FILE" 2>&1

say "starting airflow standalone"
# Own session and process group (pgid = pid), so stop.sh can end every component at once.
setsid nohup airflow standalone >>"$LOG_FILE" 2>&1 </dev/null &
echo $! >"$PID_FILE"

for _ in $(seq "$WAIT_SECONDS"); do
  if curl -fsS -o /dev/null "$URL/api/v2/monitor/health" 2>/dev/null; then
    ready
    exit 0
  fi
  if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
    say "airflow standalone exited; last lines of $LOG_FILE:"
    tail -n 30 "$LOG_FILE"
    rm -f "$PID_FILE"
    exit 1
  fi
  sleep 1
done
say "the API server did not answer on $URL within ${WAIT_SECONDS}s; see $LOG_FILE"
exit 1
