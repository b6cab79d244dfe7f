"""What every connector shares: bronze / quarantine table specs, loading one batch, and the
operational records (batches, watermarks, schema changes).

A connector's job is to turn one slice of a source (a watermark range of a table, one delivered
file) into a DataFrame of raw rows plus a ``__reason`` column (NULL for a good row, else the reason
code of the first hard rule it breaks, optionally ``code:detail``). :func:`load_batch` does the
rest, the same way for every source kind:

1. counts read / good / bad rows in one pass;
2. records new source columns in ``ops.schema_changes`` (schema drift is loaded, not fatal);
3. keeps the latest version per key (``order_by``) and MERGEs the good rows into
   ``bronze.<source>__<entity>`` on key + row hash;
   (a version older than the one in bronze is never applied: re-loading old deliveries is safe);
4. MERGEs the bad rows, identifiers masked, into ``quarantine.<source>__<entity>``;
5. returns a :class:`BatchResult` whose :class:`~lakehouse.ops.BatchRecord` asserts
   read = loaded + quarantined.

File connectors load each delivered file as one batch with :func:`load_file_batch` (the same, plus
a guard that never lets an older file undo a later version) and record it in ``ops.landed_files``
with :func:`landed_row`; a file that cannot be read at all goes to ``quarantine.<source>__files``
(:func:`quarantine_file`).

Callers write the batch records (and, last, watermarks or file records) with :func:`record_ops`.
A crash anywhere before that leaves the slice unrecorded, so the rerun reads it again and the
MERGEs make the repeated writes no-ops; each table commit is atomic, so no half-written file is
ever visible.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse import delta, ops
from lakehouse.faults import maybe_fail
from lakehouse.landing import DeliveredFile, delivered_files, pending_files
from lakehouse.quarantine import quarantine_rows
from lakehouse.tables import BRONZE_META_COLUMNS, SCHEMA_CHANGES, TableSpec, register

QUARANTINE_SCHEMA = (
    "record_key STRING, reason_code STRING, reason_detail STRING, raw_payload STRING, _row_hash STRING, "
    "_batch_id STRING, _source STRING, _ingested_at TIMESTAMP, _source_file STRING"
)
REASON = "__reason"
CORRUPT = "_corrupt_record"      # the CSV reader's column for a malformed row
STATUS_LOADED, STATUS_QUARANTINED, STATUS_SKIPPED = "loaded", "quarantined", "skipped"   # ops.landed_files
_BAD_NAME_CHARS = re.compile(r"[\s,;{}()=.`]+")


def bronze_table(source: str, entity: str, keys: tuple[str, ...] | str) -> TableSpec:
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    return register(TableSpec(f"bronze.{source}__{entity}", keys=keys,
                              description=f"{source} source entity {entity}, as received"))


def quarantine_table(source: str, entity: str) -> TableSpec:
    return register(TableSpec(f"quarantine.{source}__{entity}", keys=("record_key", "_row_hash"),
                              description=f"rejected rows of {source}.{entity} with reasons",
                              schema=QUARANTINE_SCHEMA))


@dataclass
class BatchResult:
    table: str
    batch_id: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    inserted: int = 0
    updated: int = 0
    record: ops.BatchRecord | None = field(default=None, repr=False)
    watermark: str | None = None          # relational sources: the new watermark
    source_file: str | None = None        # file sources: the landed file


def _record_schema_changes(spark, lake_root: str, bronze: TableSpec, df, batch_id: str) -> list[str]:
    """New source columns (not in the bronze table yet) → ``ops.schema_changes``; returns them."""
    path = bronze.path(lake_root)
    if not delta.table_exists(spark, path):
        return []
    existing = set(spark.read.format("delta").load(path).columns)
    new = [f for f in df.schema.fields if f.name not in existing]
    if new:
        rows = [(bronze.name, f.name, f.dataType.simpleString(), "added", batch_id) for f in new]
        changes = spark.createDataFrame(rows, SCHEMA_CHANGES.schema)
        # first sighting wins: a later batch with the same column changes nothing
        existing_changes = (delta.read(spark, SCHEMA_CHANGES, lake_root).select("table_name", "column_name")
                            if delta.table_exists(spark, SCHEMA_CHANGES.path(lake_root)) else None)
        if existing_changes is not None:
            changes = changes.join(existing_changes, ["table_name", "column_name"], "left_anti")
        delta.upsert(spark, delta.with_row_hash(changes, exclude=("first_batch_id",)), SCHEMA_CHANGES, lake_root)
    return [f.name for f in new]


def load_batch(spark, lake_root: str, checked, *, source: str, entity: str, keys: tuple[str, ...] | str,
               batch_id: str, source_file: str | None, order_by: str | None = "updated_at",
               watermark_from: str | None = None, watermark_to_column: str | None = "updated_at",
               started: dt.datetime | None = None) -> BatchResult:
    """Load one batch: ``checked`` holds the raw rows and a ``__reason`` column (see module doc)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    started = started or dt.datetime.now()
    bronze, quarantine = bronze_table(source, entity, keys), quarantine_table(source, entity)
    raw_columns = [c for c in checked.columns if c not in (REASON, "_source_file")]
    checked = checked.persist()
    try:
        good_key = F.when(F.col(REASON).isNull(), F.struct(*keys))
        aggs = [F.count("*").alias("read"),
                F.sum(F.col(REASON).isNotNull().cast("long")).alias("bad"),
                F.count_distinct(good_key).alias("good_keys")]
        if watermark_to_column:
            aggs.append(F.max(F.when(F.col(REASON).isNull(), F.col(watermark_to_column))).alias("wm_to"))
        agg = checked.agg(*aggs).first()
        n_read = int(agg.read)
        if n_read == 0:
            return BatchResult(bronze.name, None, 0, 0, 0, source_file=source_file)
        n_bad = int(agg.bad or 0)
        n_good = n_read - n_bad
        wm_to = agg.wm_to if watermark_to_column else None
        meta = {"_batch_id": F.lit(batch_id), "_source": F.lit(source),
                "_ingested_at": F.lit(started).cast("timestamp")}
        if source_file is not None or "_source_file" not in checked.columns:
            meta["_source_file"] = F.lit(source_file)   # else: the rows name their own files

        good = checked.where(F.col(REASON).isNull()).drop(REASON)
        if order_by:  # a slice can hold several versions of a row: the latest wins
            latest = Window.partitionBy(*keys).orderBy(F.col(order_by).desc_nulls_last())
            good = good.withColumn("__rank", F.row_number().over(latest)).where("__rank = 1").drop("__rank")
        loaded = delta.with_row_hash(good.withColumns(meta))
        new_columns = _record_schema_changes(spark, lake_root, bronze, loaded, batch_id)
        # a re-delivered older version never overwrites a newer one already loaded
        stats = (delta.upsert(spark, loaded, bronze, lake_root, check_unique=False, newer_only=order_by)
                 if n_good else delta.WriteStats(bronze.name))
        maybe_fail(f"after_bronze:{source}__{entity}")
        if n_bad:
            bad = checked.where(F.col(REASON).isNotNull())
            key_col = keys[0] if len(keys) == 1 else F.concat_ws("|", *keys)
            if not isinstance(key_col, str):
                bad = bad.withColumn("__key", key_col)
                key_col = "__key"
            q = quarantine_rows(bad, key_col, F.split(F.col(REASON), ":").getItem(0), F.col(REASON),
                                payload_columns=raw_columns,
                                keep=() if "_source_file" in meta else ("_source_file",)).withColumns(meta)
            delta.upsert(spark, q, quarantine, lake_root)
        record = ops.BatchRecord(
            batch_id=batch_id, source=source, entity=entity, target_table=bronze.name,
            watermark_from=watermark_from, watermark_to=wm_to, rows_read=n_read, rows_loaded=n_good,
            rows_quarantined=n_bad, rows_inserted=stats.inserted, rows_updated=stats.updated,
            rows_unchanged=stats.unchanged, rows_superseded_in_batch=n_good - int(agg.good_keys),
            status="succeeded", started_at=started, finished_at=dt.datetime.now())
        result = BatchResult(bronze.name, batch_id, n_read, n_good, n_bad, stats.inserted, stats.updated,
                             record, wm_to, source_file)
        result.new_columns = new_columns
        return result
    finally:
        checked.unpersist()


def record_ops(spark, lake_root: str, results: list[BatchResult],
               watermarks: list[tuple[str, str, str, str]] | None = None) -> None:
    """Batch records, then watermarks ``(source, entity, watermark, batch_id)`` last: a crash
    before the watermark moves means a re-read, which the MERGEs make harmless."""
    done = [r.record for r in results if r.record is not None]
    if done:
        ops.record_batches(spark, lake_root, done)
    maybe_fail("before_watermarks")
    if watermarks:
        ops.set_watermarks(spark, lake_root, watermarks)


# ---- file sources (legacy CSV, FHIR NDJSON, reference snapshots): one batch per delivered file ----

def sanitise_name(name: str) -> str:
    """A source header as a Delta column name (no blanks, commas, braces, dots, backticks)."""
    s = _BAD_NAME_CHARS.sub("_", name.strip()).strip("_")
    return s or "unnamed"


def files_to_load(spark, settings, source: str, *, until=None, full: bool = False,
                  suffixes: tuple[str, ...] | None = None) -> list[DeliveredFile]:
    """The files of ``source`` to load now: the pending ones, or every delivered one with ``full``."""
    if full:
        return delivered_files(settings.dropzone_root, source, until, suffixes)
    return pending_files(spark, settings.lake_root, settings.dropzone_root, source, until, suffixes)


def add_line_numbers(df, first_line: int = 1, column: str = "__line"):
    """``df`` (one file read in order) plus its 1-based line number in ``column``. Exact for line
    readers; for the CSV reader it is the record number + 1, exact when no blank lines or quoted
    line breaks precede the row."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    df = df.withColumn("__mid", F.monotonically_increasing_id())
    return (df.withColumn(column, F.row_number().over(Window.orderBy("__mid")) + F.lit(first_line - 1))
            .drop("__mid"))


def mark_duplicates(df, keys: tuple[str, ...], line: str = "__line"):
    """Good rows whose key already occurred on an earlier line get reason ``duplicate_key``."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    good = F.col(REASON).isNull()
    rank = F.row_number().over(Window.partitionBy(good, *keys).orderBy(line))
    return df.withColumn(REASON, F.when(good & (rank > 1), F.lit("duplicate_key")).otherwise(F.col(REASON)))


def landed_row(f: DeliveredFile, landed: Path | None, entity: str | None,
               results: list[BatchResult] | None = None, *, status: str = STATUS_LOADED,
               reason: str | None = None) -> dict:
    """An ``ops.landed_files`` row for ``f`` and the batches loaded from it."""
    results = [r for r in (results or []) if r is not None]
    ids = [r.batch_id for r in results if r.batch_id]
    return {"source": f.source, "rel_path": f.rel_path, "sha256": f.sha256, "delivery_day": f.delivery_day,
            "size_bytes": f.size_bytes, "landing_path": str(landed) if landed else None, "entity": entity,
            "batch_id": ",".join(ids) if ids else None,
            "rows_read": sum(r.rows_read for r in results), "rows_loaded": sum(r.rows_loaded for r in results),
            "rows_quarantined": sum(r.rows_quarantined for r in results), "status": status, "reason": reason}


def quarantine_file(spark, lake_root: str, f: DeliveredFile, reason_code: str, detail: str | None = None, *,
                    started: dt.datetime | None = None) -> None:
    """One row in ``quarantine.<source>__files`` for a file that could not be loaded at all."""
    from pyspark.sql import functions as F

    spec = quarantine_table(f.source, "files")
    payload = json.dumps({"rel_path": f.rel_path, "sha256": f.sha256, "delivery_day": f.delivery_day,
                          "size_bytes": f.size_bytes}, sort_keys=True)
    row = [(f.rel_path, reason_code, detail or reason_code, payload)]
    df = spark.createDataFrame(row, "record_key STRING, reason_code STRING, reason_detail STRING, raw_payload STRING")
    df = df.withColumns({
        "_row_hash": F.sha2("raw_payload", 256),
        "_batch_id": F.lit(ops.batch_id(f.source, "files", f.rel_path, f.sha256)),
        "_source": F.lit(f.source), "_ingested_at": F.lit(started or dt.datetime.now()).cast("timestamp"),
        "_source_file": F.lit(f.rel_path)})
    delta.upsert(spark, df.select(*spec.columns), spec, lake_root)


def _align_to_table(df, target):
    """``df`` plus the columns ``target`` has and ``df`` lacks, as typed NULLs (a MERGE's UPDATE SET *
    needs every target column in the source)."""
    from pyspark.sql import functions as F

    skip = set(df.columns) | set(BRONZE_META_COLUMNS)
    extra = {f.name: F.lit(None).cast(f.dataType) for f in target.schema.fields if f.name not in skip}
    return df.withColumns(extra) if extra else df


def load_file_batch(spark, lake_root: str, checked, *, source: str, entity: str, keys: tuple[str, ...],
                    batch_id: str, source_file: str, delivery_day: str, order_by: str | None = "updated_at",
                    started: dt.datetime | None = None, guard: bool = True) -> BatchResult:
    """:func:`load_batch` for one delivered file, with a newest-version guard.

    A good row is not written when bronze already holds the same key with a later ``order_by``
    value, or the same value from a later delivery day, or a version written by this very batch
    (a rerun): so reloading an older file (``full=True``, a re-delivery) never undoes a later
    correction or deletion, and a rerun rewrites nothing. Those rows still count as read and
    loaded (``rows_unchanged``); the batch record is computed over the whole file, so it is the
    same whatever bronze held before."""
    from pyspark.sql import functions as F

    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    started = started or dt.datetime.now()
    bronze = bronze_table(source, entity, keys)
    path = bronze.path(lake_root)
    reason = F.col(REASON)
    checked = checked.persist()
    try:
        aggs = [F.count("*").alias("read"), F.sum(reason.isNotNull().cast("long")).alias("bad"),
                F.count_distinct(F.when(reason.isNull(), F.struct(*keys))).alias("good_keys")]
        if order_by == "updated_at":
            aggs.append(F.max(F.when(reason.isNull(), F.col("updated_at"))).alias("wm_to"))
        agg = checked.agg(*aggs).first()
        n_read, n_bad = int(agg.read), int(agg.bad or 0)
        wm_to = agg.wm_to if order_by == "updated_at" else None
        to_load = checked
        if guard and n_read and delta.table_exists(spark, path):
            current = spark.read.format("delta").option("versionAsOf", delta.table_version(spark, path)).load(path)
            mine = F.col(order_by) if order_by else F.lit(None).cast("string")
            theirs = F.col(order_by) if order_by and order_by in current.columns else F.lit(None).cast("string")
            cur = current.select(*keys, theirs.alias("__b_order"),
                                 F.regexp_extract("_source_file", r"^(\d{4}-\d{2}-\d{2})/", 1).alias("__b_day"),
                                 F.col("_batch_id").alias("__b_batch"))
            joined = checked.join(cur, list(keys), "left")
            newer = ((F.col("__b_batch") == F.lit(batch_id)) | (F.col("__b_order") > mine)
                     | (F.col("__b_order").eqNullSafe(mine) & (F.col("__b_day") > F.lit(delivery_day))))
            skip = reason.isNull() & F.col("__b_batch").isNotNull() & F.coalesce(newer, F.lit(False))
            to_load = _align_to_table(joined.where(~skip).drop("__b_order", "__b_day", "__b_batch"), current)
            to_load = to_load.select(*checked.columns, *[c for c in to_load.columns if c not in checked.columns])
        result = load_batch(spark, lake_root, to_load, source=source, entity=entity, keys=keys,
                                   batch_id=batch_id, source_file=source_file, order_by=order_by,
                                   watermark_to_column="updated_at" if order_by == "updated_at" else None,
                                   started=started)
        if n_read == 0:
            return result
        n_good = n_read - n_bad
        n_skipped = n_good - result.rows_loaded   # good rows whose version bronze already held
        base = result.record
        if base is None:   # every row was already in bronze
            base = ops.BatchRecord(
                batch_id=batch_id, source=source, entity=entity, target_table=bronze.name, watermark_from=None,
                watermark_to=wm_to, rows_read=n_read, rows_loaded=n_good, rows_quarantined=n_bad, rows_inserted=0,
                rows_updated=0, rows_unchanged=0, rows_superseded_in_batch=0, status="succeeded",
                started_at=started, finished_at=dt.datetime.now())
        record = dataclasses.replace(
            base, rows_read=n_read, rows_loaded=n_good, rows_quarantined=n_bad, watermark_to=wm_to,
            rows_unchanged=base.rows_unchanged + n_skipped,
            rows_superseded_in_batch=n_good - int(agg.good_keys))
        out = BatchResult(bronze.name, batch_id, n_read, n_good, n_bad, record.rows_inserted,
                                 record.rows_updated, record, wm_to, source_file)
        out.new_columns = getattr(result, "new_columns", [])
        return out
    finally:
        checked.unpersist()
