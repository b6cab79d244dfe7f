"""
### Jiceng PACS pull: new instances from the regional PACS (Orthanc), every 15 minutes

`jiceng_pull_orthanc` reads the PACS's changes feed from the last change it loaded
(`ops.watermarks`), downloads each new instance into the landing zone and lists it in
`bronze.orthanc__files`; a file that fails the header check goes to `quarantine.orthanc__files`
(`ingest/connectors/orthanc.py`). Unlike the daily file deliveries, the PACS has no data
interval: every run takes what is new, and a run after a crash reloads the same batch. Without
`JL_ORTHANC_URL` a run loads nothing.

It publishes the Asset `bronze.orthanc`, on which `jiceng_imaging` is scheduled.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from jiceng_assets import BRONZE_OF, INGEST_BATCHES, QUARANTINE_OF

SPARK_POOL = "spark"  # one Spark process at a time (infra/airflow/pools.json)


@dag(
    schedule=timedelta(minutes=15),
    start_date=pendulum.datetime(2025, 12, 21, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 3, "retry_delay": timedelta(minutes=2)},
    tags=["jiceng", "ingest", "orthanc"],
    doc_md=__doc__,
)
def jiceng_pull_orthanc():
    @task(outlets=[BRONZE_OF["orthanc"], QUARANTINE_OF["orthanc"], INGEST_BATCHES], pool=SPARK_POOL)
    def ingest():
        """New PACS instances → landing + bronze.orthanc__files (incremental on the change sequence)."""
        from lakehouse import pipeline
        return pipeline.ingest(sources=("orthanc",))

    ingest()


jiceng_pull_orthanc()
