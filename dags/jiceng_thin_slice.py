"""
### Jiceng thin slice: bronze → silver → indicators → gold → serving → reports, dashboards

Everything after ingestion, one task per step of `lakehouse.pipeline` (but `process_ecg` and
`process_imaging`, which have their DAGs, `jiceng_ecg.py` and `jiceng_imaging.py`). It runs when an
ingestion DAG (`jiceng_ingest_<kind>`, see `jiceng_ingest.py`) has updated the bronze tables of the
regional database, a legacy county system or the hospital's FHIR export, or when `jiceng_ecg` or
`jiceng_imaging` has processed new recordings or images:

| task | does | writes (Asset) |
|---|---|---|
| `validate_bronze` | Great Expectations suites of every bronze table; a table failing a critical check is held (its downstream keeps its last good state, the rest flows on; listed in the task's XCom and log) | `ops.dq_results` |
| `conform` | the EMPI, then bronze → silver with pseudonymous `person_id`; identifiers only in `restricted.person_identity` | `silver`, `restricted.person_identity` |
| `validate_silver` | Great Expectations suites of the silver entity tables; holds a failing table the same way | `ops.dq_results` |
| `flag_records` | record-authenticity, plausibility and timeliness checks on silver | `silver.record_flags` |
| `score_quality` | data-quality scorecard per institution and month | `silver.dq_scorecard` |
| `compute_indicators` | the catalogued indicators with numerator, denominator and member records, then the staff work points | `silver.indicator_values`, `silver.indicator_members`, `silver.staff_workpoints` |
| `build_gold` | `dbt build` into the gold marts | `gold` |
| `export_serving` | gold marts → serving database (DuckDB file replaced atomically) | `serving` |
| `build_reports` | XLSX indicator report per township | `reports.indicators` |
| `provision_dashboards` | imports the Superset bundle | `superset.dashboards` |

The sources exist on their own: in the demo, `lakehouse.pipeline.simulate` builds them first.

Spark's embedded metastore admits one Spark process at a time, so Spark tasks share the `spark`
pool (1 slot, `infra/airflow/pools.json`) and the DAG runs one task and one run at a time. Every
step can run twice without changing the result, so a retry or a re-run is safe. Each task returns
the step's summary (see its XCom).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import chain, dag, task

from jiceng_assets import (
    BRONZE_OF,
    DASHBOARDS,
    DQ_RESULTS,
    DQ_SCORECARD,
    ECG_SILVER,
    IMAGING_SILVER,
    GOLD,
    INDICATOR_MEMBERS,
    INDICATOR_REPORTS,
    INDICATOR_VALUES,
    STAFF_WORKPOINTS,
    PERSON_IDENTITY,
    RECORD_FLAGS,
    SERVING_DB,
    SILVER,
)

SPARK_POOL = "spark"  # created from infra/airflow/pools.json by infra/airflow/start.sh

# Tasks import lakehouse.pipeline when they run, not at module level, so that parsing this file
# stays cheap (the DAG processor re-parses it every few minutes). They return the step's summary
# as one XCom; a `-> dict` annotation would make Airflow also push every key as an XCom of its own.


@dag(
    schedule=BRONZE_OF["regional"] | BRONZE_OF["legacy"] | BRONZE_OF["fhir"] | ECG_SILVER | IMAGING_SILVER,
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["jiceng", "lakehouse", "thin-slice"],
    doc_md=__doc__,
)
def jiceng_thin_slice():
    @task(outlets=[DQ_RESULTS], pool=SPARK_POOL)
    def validate_bronze():
        """Great Expectations suites of every bronze table; a table failing a critical check is held."""
        from lakehouse import pipeline
        return pipeline.validate_bronze()

    @task(outlets=[SILVER, PERSON_IDENTITY], pool=SPARK_POOL)
    def conform():
        """Bronze → silver with pseudonymous person_id, and restricted.person_identity."""
        from lakehouse import pipeline
        return pipeline.conform()

    @task(outlets=[DQ_RESULTS], pool=SPARK_POOL)
    def validate_silver():
        """Great Expectations suites of the silver entity tables; a failing table is held."""
        from lakehouse import pipeline
        return pipeline.validate_silver()

    @task(outlets=[RECORD_FLAGS], pool=SPARK_POOL)
    def flag_records():
        """Record-authenticity, plausibility and timeliness flags (silver.record_flags)."""
        from lakehouse import pipeline
        return pipeline.flag_records()

    @task(outlets=[DQ_SCORECARD], pool=SPARK_POOL)
    def score_quality():
        """The data-quality scorecard per institution and month (silver.dq_scorecard)."""
        from lakehouse import pipeline
        return pipeline.score_quality()

    @task(outlets=[INDICATOR_VALUES, INDICATOR_MEMBERS, STAFF_WORKPOINTS], pool=SPARK_POOL)
    def compute_indicators():
        """The catalogued indicators with numerator, denominator and members."""
        from lakehouse import pipeline
        return pipeline.compute_indicators()

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

    chain(
        validate_bronze(),
        conform(),
        validate_silver(),
        flag_records(),
        score_quality(),
        compute_indicators(),
        build_gold(),
        export_serving(),
        [build_reports(), provision_dashboards()],
    )


jiceng_thin_slice()
