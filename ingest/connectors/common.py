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

Callers write the batch records (and, last, watermarks or file records) with :func:`record_ops`.
A crash anywhere before that leaves the slice unrecorded, so the rerun reads it again and the
MERGEs make the repeated writes no-ops; each table commit is atomic, so no half-written file is
ever visible.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from lakehouse import delta, ops
from lakehouse.faults import maybe_fail
from lakehouse.quarantine import quarantine_rows
from lakehouse.tables import SCHEMA_CHANGES, TableSpec, register

QUARANTINE_SCHEMA = (
    "record_key STRING, reason_code STRING, reason_detail STRING, raw_payload STRING, _row_hash STRING, "
    "_batch_id STRING, _source STRING, _ingested_at TIMESTAMP, _source_file STRING"
)
REASON = "__reason"


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
