"""ECG pre-processing on Spark: the landed recordings in ``bronze.ecg__files`` → silver.

Every recording that bronze lists and silver has not processed with the current algorithm is read
from its landing copy (DICOM waveform or WFDB) and analysed by :func:`spark_jobs.ecg.features.analyse`
inside ``mapInPandas``: one recording per row, a handful of rows per Arrow batch, the recordings
spread over the cluster's cores. Three silver tables and one quarantine table come out:

| table | key | holds |
|---|---|---|
| ``silver.ecg_recordings`` | ``recording_id`` | the request, institution, recording time, format, leads, signal quality per lead and overall (no patient identifiers) |
| ``silver.ecg_features`` | ``recording_id`` | rate, RR, HRV, intervals (PR, QRS, QT, QTc Bazett / Fridericia), QRS axis |
| ``silver.ecg_flags`` | ``recording_id``, ``flag`` | triage flags with priority, Chinese reason and evidence |
| ``quarantine.ecg_recordings`` | ``record_key``, ``_row_hash`` | a recording that cannot be read, with its reason |

``recording_id`` is the SHA-256 of the delivered file(s) (bronze's file identity). Every row
records the algorithm and the library versions that produced it. The job is incremental: a
recording already in silver (or quarantine) with the current :data:`ALGORITHM` is not read again,
so a rerun processes nothing; a new algorithm version reprocesses everything once.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from lakehouse import delta
from lakehouse.frames import live
from lakehouse.tables import TableSpec, register
from spark_jobs.ecg.features import ALGORITHM

BRONZE_ECG = "bronze/ecg__files"
ECG_RECORDINGS = register(TableSpec(
    "silver.ecg_recordings", keys=("recording_id",),
    description="ECG recordings with request, institution, leads and signal quality (no identifiers)"))
ECG_FEATURES = register(TableSpec(
    "silver.ecg_features", keys=("recording_id",),
    description="ECG features: rate, RR, HRV, PR/QRS/QT/QTc intervals, QRS axis"))
ECG_FLAGS = register(TableSpec(
    "silver.ecg_flags", keys=("recording_id", "flag"),
    description="ECG triage flags with priority, reason and evidence"))
ECG_QUARANTINE = register(TableSpec(
    "quarantine.ecg_recordings", keys=("record_key", "_row_hash"),
    description="ECG recordings that could not be read",
    schema="record_key STRING, reason_code STRING, reason_detail STRING, raw_payload STRING, "
           "_row_hash STRING, algorithm STRING"))
ARROW_BATCH = 8          # recordings per Arrow batch: a worker holds a few signals at a time
TASK_RECORDINGS = 32     # recordings per Spark task (more tasks: better balance, a little more overhead)

FEATURES = ("n_beats", "heart_rate_bpm", "rr_mean_ms", "rr_min_ms", "rr_max_ms", "rr_cv", "sdnn_ms", "rmssd_ms",
            "premature_beats", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "qrs_axis_deg")
RESULT_FIELDS = (
    ("recording_id", "STRING"), ("status", "STRING"), ("reason_code", "STRING"), ("reason_detail", "STRING"),
    ("n_leads", "INT"), ("lead_names", "ARRAY<STRING>"), ("sampling_rate", "DOUBLE"), ("duration_s", "DOUBLE"),
    ("quality", "STRING"), ("quality_reason", "STRING"), ("usable_leads", "INT"),
    ("lead_quality", "MAP<STRING, DOUBLE>"), ("excluded_leads", "MAP<STRING, STRING>"),
    ("n_beats", "INT"), ("heart_rate_bpm", "DOUBLE"), ("rr_mean_ms", "DOUBLE"), ("rr_min_ms", "DOUBLE"),
    ("rr_max_ms", "DOUBLE"), ("rr_cv", "DOUBLE"), ("sdnn_ms", "DOUBLE"), ("rmssd_ms", "DOUBLE"),
    ("premature_beats", "INT"), ("pr_ms", "DOUBLE"), ("qrs_ms", "DOUBLE"), ("qt_ms", "DOUBLE"),
    ("qtc_bazett_ms", "DOUBLE"), ("qtc_fridericia_ms", "DOUBLE"), ("qrs_axis_deg", "DOUBLE"),
    ("delineation_lead", "STRING"),
    ("flags", "ARRAY<STRUCT<flag: STRING, priority: INT, reason: STRING, evidence: STRING>>"),
    ("algorithm", "STRING"), ("versions", "MAP<STRING, STRING>"),
)
RESULT_SCHEMA = ", ".join(f"{name} {typ}" for name, typ in RESULT_FIELDS)
RESULT_COLUMNS = tuple(name for name, _ in RESULT_FIELDS)

@dataclass
class EcgResult:
    processed: int
    quarantined: int
    tables: dict


def process_one(recording_id: str, path: str) -> dict:
    """Read and analyse one recording; never raises (a failure is a quarantine row)."""
    from spark_jobs.ecg.features import analyse
    from spark_jobs.ecg.readers import EcgReadError, read_recording

    row: dict = {"recording_id": recording_id, "algorithm": ALGORITHM}
    try:
        rec = read_recording(path)
    except EcgReadError as exc:
        return {**row, "status": "quarantined", "reason_code": exc.reason_code, "reason_detail": exc.message}
    except Exception as exc:  # noqa: BLE001 - any other reader failure is the file's, not the job's
        return {**row, "status": "quarantined", "reason_code": "unreadable",
                "reason_detail": f"{type(exc).__name__}: {exc}"[:500]}
    try:
        a = analyse(rec)
    except Exception as exc:  # noqa: BLE001
        return {**row, "status": "quarantined", "reason_code": "analysis_failed",
                "reason_detail": f"{type(exc).__name__}: {exc}"[:500]}
    out = asdict(a)
    out["flags"] = [{**f, "evidence": json.dumps(f["evidence"], ensure_ascii=False, sort_keys=True)}
                    for f in a.flags]
    out["versions"] = {k: str(v) for k, v in a.versions.items()}
    return {**row, **{k: out[k] for k in out if k in RESULT_COLUMNS}, "status": "processed",
            "lead_names": list(rec.lead_names), "sampling_rate": float(rec.fs),
            "duration_s": round(float(rec.duration_s), 3)}


def _process_batches(batches):
    """``mapInPandas`` body: (recording_id, path) rows → result rows."""
    import pandas as pd

    for pdf in batches:
        rows = [process_one(r.recording_id, r.path) for r in pdf.itertuples(index=False)]
        yield pd.DataFrame([{c: r.get(c) for c in RESULT_COLUMNS} for r in rows], columns=list(RESULT_COLUMNS))


def analyse_recordings(spark, todo, count: int | None = None):
    """``todo`` (``recording_id``, ``path``) → result rows (:data:`RESULT_SCHEMA`), computed in
    parallel. The recordings are spread over at least twice the cluster's cores and, given their
    ``count``, over tasks of about :data:`TASK_RECORDINGS` each, so a few long recordings (a 30-min
    Holter among 10-s ECGs) do not leave the other cores idle."""
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH))
    cores = spark.sparkContext.defaultParallelism
    parts = max(2 * cores, -(-count // TASK_RECORDINGS) if count else 0, 1)
    return todo.repartition(parts, "recording_id").mapInPandas(_process_batches, RESULT_SCHEMA)


PENDING_SCHEMA = ("recording_id STRING, rel_path STRING, landing_path STRING, format STRING, request_id STRING, "
                  "org_code STRING, recorded_at STRING, delivery_day STRING, received_at TIMESTAMP")


def _pending(spark, lake_root: str):
    """Live bronze recordings not yet in silver or quarantine with the current algorithm."""
    from pyspark.sql import functions as F

    path = f"{lake_root}/{BRONZE_ECG}"
    if not delta.table_exists(spark, path):     # no recording has landed yet: the tables start empty
        return spark.createDataFrame([], PENDING_SCHEMA)
    bronze = live(spark.read.format("delta").load(path))
    bronze = bronze.select(F.col("sha256").alias("recording_id"), "rel_path", "landing_path", "format",
                           "request_id", "org_code", "recorded_at", "delivery_day",
                           F.col("_ingested_at").alias("received_at"))
    bronze = bronze.dropDuplicates(["recording_id"])
    done = []
    if delta.table_exists(spark, ECG_RECORDINGS.path(lake_root)):
        done.append(delta.read(spark, ECG_RECORDINGS, lake_root).where(F.col("algorithm") == ALGORITHM)
                    .select("recording_id"))
    if delta.table_exists(spark, ECG_QUARANTINE.path(lake_root)):
        done.append(delta.read(spark, ECG_QUARANTINE, lake_root).where(F.col("algorithm") == ALGORITHM)
                    .select(F.col("record_key").alias("recording_id")))
    for d in done:
        bronze = bronze.join(d, "recording_id", "left_anti")
    return bronze


def run_ecg(spark, lake_root: str) -> EcgResult:
    """Process every pending recording and write the ECG silver tables (created empty before the
    first recording lands, so the gold marts that read them always build)."""
    from pyspark.sql import functions as F

    pending = _pending(spark, lake_root).persist()
    try:
        todo = pending.select("recording_id", F.col("landing_path").alias("path"))
        results = analyse_recordings(spark, todo, pending.count()).join(pending, "recording_id").persist()
        n_done, n_bad = (results.where(F.col("status") == c).count() for c in ("processed", "quarantined"))
        tables = {}
        if n_done or not delta.table_exists(spark, ECG_RECORDINGS.path(lake_root)):
            ok = results.where(F.col("status") == "processed")
            tables.update(_write_silver(spark, lake_root, ok))
        if n_bad:
            bad = results.where(F.col("status") == "quarantined").select(
                F.col("recording_id").alias("record_key"), "reason_code", "reason_detail",
                F.to_json(F.struct("rel_path", "format", "request_id", "org_code")).alias("raw_payload"),
                "algorithm")
            tables[ECG_QUARANTINE.name] = delta.upsert(
                spark, delta.with_row_hash(bad, exclude=("algorithm",)), ECG_QUARANTINE, lake_root).as_dict()
        results.unpersist()
        return EcgResult(processed=n_done, quarantined=n_bad, tables=tables)
    finally:
        pending.unpersist()


def _write_silver(spark, lake_root: str, ok) -> dict:
    from pyspark.sql import functions as F

    versions = F.col("versions")
    recordings = ok.select(
        "recording_id", "rel_path", "request_id", "org_code",
        F.try_to_timestamp("recorded_at", F.lit("yyyy-MM-dd HH:mm:ss")).alias("recorded_at"),
        "received_at", "delivery_day", "format", "n_leads", "lead_names", "sampling_rate", "duration_s",
        "quality", "quality_reason", "usable_leads", "lead_quality", "excluded_leads", "algorithm",
        versions.alias("versions"))
    features = ok.select("recording_id", *FEATURES, "delineation_lead", "algorithm", versions.alias("versions"))
    flags = ok.select("recording_id", F.explode("flags").alias("f"), "algorithm").select(
        "recording_id", "f.flag", "f.priority", "f.reason", "f.evidence", "algorithm")
    out = {}
    for df, spec in ((recordings, ECG_RECORDINGS), (features, ECG_FEATURES), (flags, ECG_FLAGS)):
        out[spec.name] = delta.upsert(spark, delta.with_row_hash(df, exclude=()), spec, lake_root).as_dict()
    return out
