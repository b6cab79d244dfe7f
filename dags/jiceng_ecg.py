"""
### Jiceng ECG: pre-process every newly landed ECG recording

Runs when `jiceng_ingest_ecg` has updated `bronze.ecg__files` (the Asset `bronze.ecg`). One task,
`process_ecg` (`lakehouse.pipeline.process_ecg`): every recording that silver has not processed
with the current algorithm is read from its landing copy (DICOM waveform or WFDB) and analysed on
Spark, one recording per row of a `mapInPandas`: multi-lead R peaks, rate, RR and HRV, intervals
and QTc, QRS axis, signal quality per lead, triage flags.

| writes (Asset `silver.ecg`) | holds |
|---|---|
| `silver.ecg_recordings` | request, institution, recording time, leads, signal quality (no identifiers) |
| `silver.ecg_features` | rate, RR, SDNN, RMSSD, PR, QRS, QT, QTc (Bazett, Fridericia), axis |
| `silver.ecg_flags` | triage flags with priority and Chinese reason |
| `quarantine.ecg_recordings` | recordings that cannot be read, with the reason |

The thin-slice DAG is scheduled on `silver.ecg` too, so the reading worklist and turnaround marts
in gold follow. A rerun processes nothing new.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from jiceng_assets import BRONZE_OF, ECG_SILVER

SPARK_POOL = "spark"  # one Spark process at a time (infra/airflow/pools.json)


@dag(
    schedule=BRONZE_OF["ecg"],
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["jiceng", "lakehouse", "ecg"],
    doc_md=__doc__,
)
def jiceng_ecg():
    @task(outlets=[ECG_SILVER], pool=SPARK_POOL)
    def process_ecg():
        """New ECG recordings in bronze → silver.ecg_recordings, ecg_features, ecg_flags."""
        from lakehouse import pipeline
        return pipeline.process_ecg()

    process_ecg()


jiceng_ecg()
