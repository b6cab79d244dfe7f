"""
### Jiceng imaging: catalogue every newly landed DICOM file

Runs when an imaging ingestion DAG has updated its bronze table: `jiceng_ingest_dicom` (files
dropped by the modalities, `bronze.dicom__files`) or `jiceng_ingest_orthanc` (the regional PACS,
`bronze.orthanc__files`). One task, `process_imaging` (`lakehouse.pipeline.process_imaging`):
every file that silver has not parsed with the current algorithm is parsed header-only on Spark,
one file per row of a `mapInPandas`; then one thumbnail per changed series is rendered.

| writes (Asset `silver.imaging`) | holds |
|---|---|
| `silver.imaging_instances` | SOP class, transfer syntax, modality, body part, device, geometry, sizes, status ok / repaired |
| `silver.imaging_series` | instances, frames, bytes, the thumbnail's image |
| `silver.imaging_studies` | request, `person_id`, institution, modalities, counts, burned-in-text risk |
| `silver.imaging_thumbnails` | PNG of each series' middle image |
| `quarantine.imaging_files` | files that cannot be catalogued, with the reason |

The thin-slice DAG is scheduled on `silver.imaging`, so the reading worklist and turnaround marts
in gold follow. A rerun parses nothing new.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from jiceng_assets import BRONZE_OF, IMAGING_SILVER

SPARK_POOL = "spark"  # one Spark process at a time (infra/airflow/pools.json)


@dag(
    schedule=BRONZE_OF["dicom"] | BRONZE_OF["orthanc"],
    start_date=pendulum.datetime(2025, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["jiceng", "lakehouse", "imaging"],
    doc_md=__doc__,
)
def jiceng_imaging():
    @task(outlets=[IMAGING_SILVER], pool=SPARK_POOL)
    def process_imaging():
        """New DICOM files in bronze → silver.imaging_instances, _series, _studies, _thumbnails."""
        from lakehouse import pipeline
        return pipeline.process_imaging()

    process_imaging()


jiceng_imaging()
