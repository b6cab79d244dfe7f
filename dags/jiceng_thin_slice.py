"""
### Jiceng thin slice: bronze → silver, validated, flagged and scored

Everything between ingestion and the indicators, one task per step of `lakehouse.pipeline`. It
runs when an ingestion DAG (`jiceng_ingest_<kind>`, see `jiceng_ingest.py`) has updated the bronze
tables of the regional database, a legacy county system or the hospital's FHIR export:

| task | does | writes (Asset) |
|---|---|---|
| `validate_bronze` | Great Expectations suites of every bronze table; a table failing a critical check is held (its downstream keeps its last good state, the rest flows on; listed in the task's XCom and log) | `ops.dq_results` |
| `conform` | the EMPI, then bronze → silver with pseudonymous `person_id`; identifiers only in `restricted.person_identity` | `silver`, `restricted.person_identity` |
| `validate_silver` | Great Expectations suites of the silver entity tables; holds a failing table the same way | `ops.dq_results` |
| `flag_records` | record-authenticity, plausibility and timeliness checks on silver | `silver.record_flags` |
| `score_quality` | data-quality scorecard per institution and month | `silver.dq_scorecard` |

When a run has updated `silver`, `silver.record_flags` and `silver.dq_scorecard`,
`jiceng_indicators` (`jiceng_indicators.py`) computes the indicators and builds gold, the serving
database, the reports and the dashboards. ECG recordings and images have their DAGs,
`jiceng_ecg.py` and `jiceng_imaging.py`. In the demo, `lakehouse.pipeline.simulate` builds the
sources first.

Spark's embedded metastore admits one Spark process at a time, so Spark tasks share the `spark`
pool (1 slot, `infra/airflow/pools.json`) and the DAG runs one task and one run at a time. Every
step can run twice without changing the result, so a retry or a re-run is safe. Each task returns
the step's summary (see its XCom).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import chain, dag, task

from jiceng_assets import BRONZE_OF, DQ_RESULTS, DQ_SCORECARD, PERSON_IDENTITY, RECORD_FLAGS, SILVER

SPARK_POOL = "spark"  # created from infra/airflow/pools.json by infra/airflow/start.sh

# Tasks import lakehouse.pipeline when they run, not at module level, so that parsing this file
# stays cheap (the DAG processor re-parses it every few minutes). They return the step's summary
# as one XCom; a `-> dict` annotation would make Airflow also push every key as an XCom of its own.


@dag(
    schedule=BRONZE_OF["regional"] | BRONZE_OF["legacy"] | BRONZE_OF["fhir"],
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

    chain(
        validate_bronze(),
        conform(),
        validate_silver(),
        flag_records(),
        score_quality(),
    )


jiceng_thin_slice()
