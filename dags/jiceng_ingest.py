"""
### Jiceng ingestion: one DAG per source kind, daily, with data intervals

`jiceng_ingest_<kind>` loads what source `<kind>` delivered during its data interval (and anything
delivered earlier that is not loaded yet) into bronze, by calling
`lakehouse.pipeline.ingest(sources=(kind,), until=data_interval_end)`:

| DAG | source | incremental by |
|---|---|---|
| `jiceng_ingest_reference` | reference snapshots (GB/T 2260, ICD-10, essential drugs, census) | file content hash |
| `jiceng_ingest_regional` | regional EHR/HIS database (SQLite / PostgreSQL) via JDBC | `updated_at` watermark, `< interval end` |
| `jiceng_ingest_legacy` | legacy county systems' daily GBK CSV exports | delivery day + file hash |
| `jiceng_ingest_fhir` | city hospital FHIR R4 bulk export (NDJSON) | delivery day + file hash |
| `jiceng_ingest_dicom` | imaging exam files (landing copy + file manifest) | delivery day + file hash |
| `jiceng_ingest_ecg` | 12-lead ECG files (DICOM waveform, WFDB) | delivery day + file hash |

A day's interval is [00:00, 24:00) China time. Backfill a range of past days with
`airflow backfill create --dag-id jiceng_ingest_<kind> --from-date … --to-date …` (or `dag.test()`
per logical date): every run is idempotent, so running a day twice, or a later day first, leaves
the same tables. Each DAG publishes the Assets `bronze.<kind>` and `quarantine.<kind>`, which the
downstream DAGs are scheduled on.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from jiceng_assets import BRONZE_OF, INGEST_BATCHES, LANDED_FILES, QUARANTINE_OF, SOURCE_KINDS

SPARK_POOL = "spark"  # one Spark process at a time (infra/airflow/pools.json)
FILE_KINDS = {"reference", "legacy", "fhir", "dicom", "ecg"}


def _ingest_dag(kind: str):
    outlets = [BRONZE_OF[kind], QUARANTINE_OF[kind], INGEST_BATCHES] + ([LANDED_FILES] if kind in FILE_KINDS else [])

    @dag(
        dag_id=f"jiceng_ingest_{kind}",
        # data intervals [day 00:00, next day 00:00) in China time (a bare "@daily" would give
        # Airflow 3's CronTriggerTimetable, whose runs have no interval)
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="Asia/Shanghai"),
        start_date=pendulum.datetime(2025, 12, 21, tz="Asia/Shanghai"),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 3, "retry_delay": timedelta(minutes=5), "retry_exponential_backoff": True},
        tags=["jiceng", "ingest", kind],
        doc_md=__doc__,
    )
    def ingest_dag():
        @task(task_id="ingest", outlets=outlets, pool=SPARK_POOL)
        def ingest(data_interval_end=None):
            """Load the interval's deliveries of this source into bronze (idempotent)."""
            from lakehouse import pipeline
            return pipeline.ingest(sources=(kind,), until=data_interval_end)

        ingest()

    return ingest_dag()


for _kind in SOURCE_KINDS:
    _ingest_dag(_kind)
