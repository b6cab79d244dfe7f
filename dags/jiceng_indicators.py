"""
### Jiceng indicators: the performance assessment (绩效考核) → gold → serving → reports, dashboards

Runs when silver has changed: when a run of `jiceng_thin_slice` has rebuilt silver, its record
flags and its data-quality scorecard (all three Assets), or when `jiceng_ecg` or `jiceng_imaging`
has processed new recordings or images. It also runs once a month, at 00:00 China time on the
first, for the month just closed.

| task | does | writes (Asset) |
|---|---|---|
| `compute_indicators` | the catalogued indicators with numerator, denominator and member records, then the staff work points | `silver.indicator_values`, `silver.indicator_members`, `silver.staff_workpoints` |
| `build_gold` | `dbt build` into the gold marts | `gold` |
| `export_serving` | gold marts → serving database (DuckDB file replaced atomically) | `serving` |
| `build_reports` | XLSX indicator report per township | `reports.indicators` |
| `provision_dashboards` | imports the Superset bundle | `superset.dashboards` |

**Which periods are computed.** A run triggered by silver has no data interval: it computes
incrementally (an indicator whose inputs did not change is skipped; one whose changed rows are
dated is recomputed for their periods only). A run with a data interval — the monthly run, a
backfill, or a manual run given a logical date — also recomputes from the current data every
period of its interval: its month, that month's quarter and its year, whether or not their inputs
changed. So a backfill recomputes past months:

    airflow backfill create --dag-id jiceng_indicators \
        --from-date 2025-10-01T00:00:00+08:00 --to-date 2025-12-01T00:00:00+08:00

creates a run per month, October to December: a backfill run's logical date is the first day of
its month (dates without a zone are UTC). A manual run given a logical date covers the month
before it, like the monthly run: logical date 2026-01-01 recomputes December 2025.
Recomputing a month from unchanged data rewrites nothing. To reproduce a past value from the
input versions it was computed at, use `lakehouse indicators explain` (the versions are on the
value) and `spark_jobs.indicators.engine.compute(input_versions=...)`.

Spark tasks share the `spark` pool (1 slot, `infra/airflow/pools.json`) with the other DAGs. Every
step can run twice without changing the result. Each task returns the step's summary (XCom).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronDataIntervalTimetable, chain, dag, task

from jiceng_assets import (
    DASHBOARDS,
    DQ_SCORECARD,
    ECG_SILVER,
    GOLD,
    IMAGING_SILVER,
    INDICATOR_MEMBERS,
    INDICATOR_REPORTS,
    INDICATOR_VALUES,
    RECORD_FLAGS,
    SERVING_DB,
    SILVER,
    STAFF_WORKPOINTS,
)

SPARK_POOL = "spark"  # created from infra/airflow/pools.json by infra/airflow/start.sh


@dag(
    schedule=AssetOrTimeSchedule(
        # monthly data intervals [1st 00:00, next 1st 00:00) China time: backfills go by month
        timetable=CronDataIntervalTimetable("0 0 1 * *", timezone="Asia/Shanghai"),
        assets=(SILVER & RECORD_FLAGS & DQ_SCORECARD) | ECG_SILVER | IMAGING_SILVER,
    ),
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["jiceng", "lakehouse", "indicators"],
    doc_md=__doc__,
)
def jiceng_indicators():
    @task(outlets=[INDICATOR_VALUES, INDICATOR_MEMBERS, STAFF_WORKPOINTS], pool=SPARK_POOL)
    def compute_indicators(data_interval_start=None, data_interval_end=None):
        """The catalogued indicators with members, and the work points; a run with a data interval
        also recomputes the periods of its interval."""
        from lakehouse import pipeline
        return pipeline.compute_indicators(interval=(data_interval_start, data_interval_end))

    @task(outlets=[GOLD], pool=SPARK_POOL)
    def build_gold():
        """`dbt build` (dbt-spark, session method) into the gold marts."""
        from lakehouse import pipeline
        return pipeline.build_gold()

    @task(outlets=[SERVING_DB], pool=SPARK_POOL)
    def export_serving():
        """Gold marts → the serving database."""
        from lakehouse import pipeline
        return pipeline.export_serving()

    @task(outlets=[INDICATOR_REPORTS])
    def build_reports():
        """The XLSX indicator report per township, from the serving database."""
        from lakehouse import pipeline
        return pipeline.build_reports()

    @task(outlets=[DASHBOARDS])
    def provision_dashboards():
        """Import the Superset bundle into Superset's metadata database."""
        from lakehouse import pipeline
        return pipeline.provision_dashboards()

    chain(compute_indicators(), build_gold(), export_serving(), [build_reports(), provision_dashboards()])


jiceng_indicators()
