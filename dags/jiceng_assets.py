"""The Airflow Assets of the platform: one per lake layer or table a task writes, and the outputs.

Defined once here and imported by every DAG file (Airflow puts the DAGs folder on ``sys.path``
when it parses DAGs and runs tasks). A lake Asset is named like the table catalogue
(``lakehouse.tables``: ``layer`` or ``layer.entity``) and its URI follows the storage layout
``LAKE_ROOT/<layer>/<entity>`` without naming a LAKE_ROOT, so it is the same Asset in LOCAL, CI
and PROD. The ``x-jiceng`` scheme is kept by Airflow as written. This module holds no DAG: it is
listed in ``.airflowignore``.
"""
from airflow.sdk import Asset


def _lake(name: str) -> Asset:
    return Asset(name=name, uri="x-jiceng://lake/" + name.replace(".", "/"), group="lake")


def _serving(name: str, uri: str) -> Asset:
    return Asset(name=name, uri=uri, group="serving")


INGEST_BATCHES = _lake("ops.ingest_batches")
LANDED_FILES = _lake("ops.landed_files")
# bronze and quarantine tables of one source kind (``bronze.<source>__*``), e.g. "bronze.ecg"
SOURCE_KINDS = ("reference", "regional", "legacy", "fhir", "dicom", "ecg")
# services the platform pulls from when configured (not delivered by the sources): the regional PACS
SERVICE_KINDS = ("orthanc",)
BRONZE_OF = {kind: _lake(f"bronze.{kind}") for kind in SOURCE_KINDS + SERVICE_KINDS}
QUARANTINE_OF = {kind: _lake(f"quarantine.{kind}") for kind in SOURCE_KINDS + SERVICE_KINDS}
DQ_RESULTS = _lake("ops.dq_results")
SILVER = _lake("silver")
PERSON_IDENTITY = _lake("restricted.person_identity")
RECORD_FLAGS = _lake("silver.record_flags")
DQ_SCORECARD = _lake("silver.dq_scorecard")
ECG_SILVER = _lake("silver.ecg")   # silver.ecg_recordings, ecg_features, ecg_flags
IMAGING_SILVER = _lake("silver.imaging")   # silver.imaging_instances, _series, _studies, _thumbnails
INDICATOR_VALUES = _lake("silver.indicator_values")
INDICATOR_MEMBERS = _lake("silver.indicator_members")
STAFF_WORKPOINTS = _lake("silver.staff_workpoints")
GOLD = _lake("gold")

SERVING_DB = _serving("serving", "x-jiceng://serving/jiceng")
INDICATOR_REPORTS = _serving("reports.indicators", "x-jiceng://reports/indicators")
DASHBOARDS = _serving("superset.dashboards", "x-jiceng://superset/dashboards")
