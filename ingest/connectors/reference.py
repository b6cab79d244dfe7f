"""Reference snapshots (``dropzone/reference/*.csv``, UTF-8, with a header) → ``bronze.reference__<name>``.

| file                     | key                                 |
|--------------------------|-------------------------------------|
| gbt2260_areas.csv        | code                                |
| icd10.csv                | code                                |
| essential_drugs.csv      | drug_code                           |
| census_population.csv    | year, area_code, sex, age_band      |

A file is a full snapshot of its table. A new snapshot (new content, so a new SHA-256) is loaded
as one batch (every column a string, as received, plus ``is_deleted = 0``), and the keys it no
longer holds are **tombstoned**, not deleted: a second batch of the same entity sets
``is_deleted = 1`` on them and keeps their last values, so a diagnosis or drug that refers to a
retired code can still be named, and a code that comes back in a later snapshot is simply live
again. (Consumers read ``is_deleted = 0`` for the current snapshot, as for every bronze table.) A
snapshot with no good row retires nothing. An unchanged file is not pending, so nothing happens;
``full=True`` reloads it with no change.

Row reasons: ``malformed_row:line<n>`` (wrong field count), ``bad_encoding:line<n>`` (bytes that
are not UTF-8), ``missing_key``, ``duplicate_key`` (the key occurred on an earlier line). A file
that is not one of the tables above, or lacks a key column, is recorded as ``quarantined``
(``ops.landed_files`` and ``quarantine.reference__files``).

Snapshots are undated: :func:`lakehouse.landing.delivered_files` finds them directly in
``dropzone/reference/`` (or in its ``reference/`` folder) as delivery day ``0000-00-00``.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from ingest.connectors import common
from lakehouse import delta, ops
from lakehouse.landing import DeliveredFile, delivered_files, land, loaded_keys, record_files
from lakehouse.tables import BRONZE_META_COLUMNS

SOURCE = "reference"
UNDATED_DAY = "0000-00-00"
TABLES: dict[str, tuple[str, ...]] = {
    "gbt2260_areas": ("code",),
    "icd10": ("code",),
    "essential_drugs": ("drug_code",),
    "census_population": ("year", "area_code", "sex", "age_band"),
}
for _name, _keys in TABLES.items():
    common.bronze_table(SOURCE, _name, _keys)
    common.quarantine_table(SOURCE, _name)


def reference_files(dropzone_root: Path) -> list[DeliveredFile]:
    """Every delivered snapshot (``dropzone/reference/*.csv``), by name."""
    return sorted(delivered_files(dropzone_root, SOURCE, suffixes=(".csv",)), key=lambda f: f.rel_path)


def ingest(spark, settings, *, until=None, full: bool = False) -> list[common.BatchResult]:
    """Load the reference snapshots that are new or changed (every one with ``full``). ``until``
    is accepted for the common signature: snapshots are undated, so always due."""
    files = reference_files(settings.dropzone_root)
    if not full:
        done = loaded_keys(spark, settings.lake_root, SOURCE)
        files = [f for f in files if (f.rel_path, f.sha256) not in done]
    results, rows = [], []
    for f in files:
        file_results, row = _ingest_file(spark, settings, f)
        results += file_results
        rows.append(row)
    common.record_ops(spark, settings.lake_root, results)
    record_files(spark, settings.lake_root, rows)
    return results


def _ingest_file(spark, settings, f: DeliveredFile):
    from pyspark.sql import functions as F

    started = dt.datetime.now()
    lake_root = settings.lake_root
    landed = land(f, settings.landing_root)
    name = Path(f.rel_path).stem
    keys = TABLES.get(name)
    if keys is None:
        common.quarantine_file(spark, lake_root, f, "unknown_reference_table", f"no reference table named {name}",
                               started=started)
        return [], common.landed_row(f, landed, None, status=common.STATUS_QUARANTINED,
                                     reason="unknown_reference_table")
    checked, problem = read_snapshot(spark, landed, keys)
    if problem:
        common.quarantine_file(spark, lake_root, f, problem.split(":")[0], problem, started=started)
        return [], common.landed_row(f, landed, name, status=common.STATUS_QUARANTINED, reason=problem)
    checked = checked.persist()
    try:
        snapshot = common.load_file_batch(spark, lake_root, checked, source=SOURCE, entity=name, keys=keys,
                                          batch_id=ops.batch_id(SOURCE, name, f.rel_path, f.sha256),
                                          source_file=f.rel_path, delivery_day=f.delivery_day, order_by=None,
                                          started=started)
        results = [snapshot]
        if snapshot.rows_loaded:
            spec = common.bronze_table(SOURCE, name, keys)
            path = spec.path(lake_root)
            current = (spark.read.format("delta").option("versionAsOf", delta.table_version(spark, path))
                       .load(path))
            live = checked.where(F.col(common.REASON).isNull()).select(*keys)
            gone = (current.where("is_deleted = 0").join(live, list(keys), "left_anti")
                    .drop(*BRONZE_META_COLUMNS)
                    .withColumns({"is_deleted": F.lit(1), common.REASON: F.lit(None).cast("string")}))
            retired = common.load_file_batch(spark, lake_root, gone, source=SOURCE, entity=name, keys=keys,
                                             batch_id=ops.batch_id(SOURCE, name, f.rel_path, f.sha256, "retired"),
                                             source_file=f.rel_path, delivery_day=f.delivery_day, order_by=None,
                                             started=started, guard=False)
            if retired.rows_read:
                results.append(retired)
    finally:
        checked.unpersist()
    return results, common.landed_row(f, landed, name, [snapshot])


def read_snapshot(spark, landed: Path, keys: tuple[str, ...]):
    """``(checked DataFrame, None)`` or ``(None, reason)`` for one snapshot's landing copy."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    reader = spark.read.option("header", True).option("encoding", "UTF-8")
    header = reader.csv(str(landed)).columns
    if not header:
        return None, "empty_file"
    names, seen = [], set()
    for h in header:
        s = base = common.sanitise_name(h.lstrip("\ufeff"))
        n = 1
        while s in seen:
            n += 1
            s = f"{base}_{n}"
        seen.add(s)
        names.append(s)
    missing = [k for k in keys if k not in names]
    if missing:
        return None, "missing_columns:" + ",".join(missing)
    schema = T.StructType([T.StructField(h, T.StringType()) for h in header] + [T.StructField(common.CORRUPT, T.StringType())])
    raw = (reader.option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", common.CORRUPT).schema(schema)
           .csv(str(landed)))
    raw = common.add_line_numbers(raw, first_line=2)
    df = raw.select(*[F.col(f"`{h}`").alias(n) for h, n in zip(header, names)], common.CORRUPT, "__line")
    line = F.concat(F.lit("line"), F.col("__line").cast("string"))
    bad_bytes = F.concat_ws("", *[F.coalesce(F.col(f"`{n}`"), F.lit("")) for n in names],
                            F.coalesce(F.col(common.CORRUPT), F.lit(""))).contains("\ufffd")
    no_key = None
    for k in keys:
        c = F.col(k).isNull() | (F.trim(F.col(k)) == "")
        no_key = c if no_key is None else no_key | c
    reason = (F.when(F.col(common.CORRUPT).isNotNull(), F.concat(F.lit("malformed_row:"), line))
              .when(bad_bytes, F.concat(F.lit("bad_encoding:"), line))
              .when(no_key, F.lit("missing_key")))
    df = common.mark_duplicates(df.withColumn(common.REASON, reason), keys)
    return df.select(*names, F.lit(0).alias("is_deleted"), common.REASON), None
