#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: Debian packages, the two Python environments (from the lock
# files) and the Delta jars. Every step is skipped when its result is already there and current,
# so a second run is fast and needs no network.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE="$ROOT/.cache"
mkdir -p "$CACHE"
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages: a JDK for Spark, Maven for the jars, PostgreSQL for the serving DB tests,
#    CJK fonts so Chinese labels render in reports and dashboards, Chromium to check the dashboard page,
#    Orthanc + its DICOMweb plugin for the regional PACS source (infra/orthanc/start.sh).
APT_PKGS=(openjdk-17-jdk-headless maven postgresql fonts-noto-cjk chromium orthanc orthanc-dicomweb)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. uv, then the two environments (pipeline + Airflow; Superset), each synced from its lock file.
if ! command -v uv >/dev/null 2>&1; then
  log "installing uv"
  python3 -m pip install -q --disable-pip-version-check uv
fi
sync_env() {  # sync_env VENV LOCKFILE EDITABLE
  local venv=$1 lock=$2 editable=$3
  local stamp="$venv/.lock.sha256"
  local want
  if [ -n "$editable" ]; then want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
  else want=$(sha256sum < "$lock" | cut -d' ' -f1); fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  log "syncing $venv from $lock"
  [ -x "$venv/bin/python" ] || uv venv -q --python 3.11 "$venv"
  VIRTUAL_ENV="$venv" uv pip sync -q "$lock"
  if [ -n "$editable" ]; then VIRTUAL_ENV="$venv" uv pip install -q --no-deps -e .; fi
  echo "$want" > "$stamp"
}
sync_env .venv requirements/pipeline.lock yes
sync_env .venv-bi requirements/bi.lock ""

# 3. Delta jars (+ runtime dependencies that pyspark does not already ship) into .cache/jars.
JARS="$CACHE/jars"
want=$(sha256sum infra/jars/pom.xml | cut -d' ' -f1)
if [ ! -f "$JARS/.pom.sha256" ] || [ "$(cat "$JARS/.pom.sha256")" != "$want" ]; then
  log "fetching Delta jars"
  rm -rf "$JARS" "$CACHE/jars-all"
  mvn -q -B -f infra/jars/pom.xml dependency:copy-dependencies -DoutputDirectory="$CACHE/jars-all" \
      -Dmaven.repo.local="$CACHE/m2"
  mkdir -p "$JARS"
  PYSPARK_JARS=$(.venv/bin/python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
  for j in "$CACHE"/jars-all/*.jar; do
    b=$(basename "$j" .jar); art=${b%-*}
    # keep only what pyspark lacks: its own jackson, hadoop, parquet, scala, log4j win
    if ! compgen -G "$PYSPARK_JARS/$art-[0-9]*.jar" >/dev/null && [ "$art" != shims ]; then cp "$j" "$JARS/"; fi
  done
  rm -rf "$CACHE/jars-all"
  echo "$want" > "$JARS/.pom.sha256"
fi
log "ready: .venv (pipeline + Airflow), .venv-bi (Superset), $(ls "$JARS"/*.jar | wc -l) jars in .cache/jars"
