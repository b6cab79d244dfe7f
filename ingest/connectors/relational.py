"""Relational connector: the regional EHR/HIS database → bronze Delta tables.

Reads each entity through Spark's JDBC source (SQLite by default, PostgreSQL in production),
incrementally by the ``updated_at`` watermark kept in ``ops.watermarks``. Rows that break a hard
rule (missing key, invalid ID-card number, impossible date) go to ``quarantine.<source>__<entity>``
with a reason code and the raw payload; the rest are MERGEd into ``bronze.<source>__<entity>`` on
the primary key and row hash. ``ops.ingest_batches`` gets read = loaded + quarantined per batch.

Crash safety: bronze, quarantine and the batch record are separate commits, and the watermark
moves last. A run that dies midway leaves the watermark where it was, so the rerun re-reads the
same slice, and the MERGEs make the repeated writes no-ops.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import unquote, urlparse

from lakehouse import delta, ops
from lakehouse.quarantine import quarantine_rows
from lakehouse.idcard import spark_invalid_reason
from lakehouse.tables import TableSpec, register

SOURCE = "regional"


@dataclass(frozen=True)
class EntityConfig:
    name: str
    key: str
    date_columns: tuple[str, ...] = ()
    id_card_column: str | None = None


# the standardised regional system's tables, parents first
ENTITIES: tuple[EntityConfig, ...] = (
    EntityConfig("org_units", "org_code"),
    EntityConfig("residents", "resident_id", date_columns=("birth_date",), id_card_column="id_card_no"),
    EntityConfig("health_archives", "archive_no", date_columns=("created_date",)),
    EntityConfig("hypertension_registry", "registry_id", date_columns=("registered_date",)),
    EntityConfig("hypertension_followups", "followup_id", date_columns=("followup_date",)),
)

QUARANTINE_SCHEMA = (
    "record_key STRING, reason_code STRING, reason_detail STRING, raw_payload STRING, _row_hash STRING, "
    "_batch_id STRING, _source STRING, _ingested_at TIMESTAMP, _source_file STRING"
)


def bronze_table(entity: EntityConfig, source: str = SOURCE) -> TableSpec:
    return register(TableSpec(f"bronze.{source}__{entity.name}", keys=(entity.key,),
                              description=f"{source} source table {entity.name}, as received"))


def quarantine_table(entity: EntityConfig, source: str = SOURCE) -> TableSpec:
    return register(TableSpec(f"quarantine.{source}__{entity.name}", keys=("record_key", "_row_hash"),
                              description=f"rejected rows of {source}.{entity.name} with reasons",
                              schema=QUARANTINE_SCHEMA))


for _e in ENTITIES:
    bronze_table(_e)
    quarantine_table(_e)


def jdbc_options(source_db_url: str) -> dict[str, str]:
    """Spark JDBC options for a SQLAlchemy-style URL (sqlite:///path or postgresql://...)."""
    if source_db_url.startswith("sqlite:///"):
        return {"url": "jdbc:sqlite:" + source_db_url.removeprefix("sqlite:///"),
                "driver": "org.sqlite.JDBC"}
    u = urlparse(source_db_url)
    if u.scheme.split("+")[0] in ("postgresql", "postgres"):
        opts = {"url": f"jdbc:postgresql://{u.hostname}:{u.port or 5432}{u.path}",
                "driver": "org.postgresql.Driver"}
        if u.username:
            opts["user"] = unquote(u.username)
        if u.password:
            opts["password"] = unquote(u.password)
        return opts
    raise ValueError(f"unsupported source database URL scheme: {u.scheme!r}")


def _impossible_date(col):
    from pyspark.sql import functions as F

    d = F.try_to_date(col, "yyyy-MM-dd")
    return d.isNull() | (d < F.lit("1900-01-01")) | (d > F.current_date() + F.expr("INTERVAL 366 DAYS"))


def reject_reason(df, entity: EntityConfig):
    """Column: the first hard rule a row breaks (reason code), or NULL for a good row."""
    from pyspark.sql import functions as F

    checks = [(F.col(entity.key).isNull() | (F.trim(F.col(entity.key)) == ""), F.lit("missing_key")),
              (F.try_to_timestamp(F.col("updated_at"), F.lit("yyyy-MM-dd HH:mm:ss")).isNull(),
               F.lit("bad_updated_at"))]
    if entity.id_card_column:
        r = spark_invalid_reason(F.col(entity.id_card_column))
        checks.append((r.isNotNull(), r))
    for c in entity.date_columns:
        checks.append((F.col(c).isNotNull() & _impossible_date(F.col(c)), F.lit(f"impossible_date:{c}")))
    expr = None
    for cond, reason in checks:
        expr = F.when(cond, reason) if expr is None else expr.when(cond, reason)
    return expr


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
    watermark: str | None = None


def _record_ops(spark, lake_root: str, source: str, results: list[BatchResult]) -> None:
    """Batch records, then watermarks (last: a crash before this line means a re-read, which the
    MERGEs make harmless)."""
    done = [r for r in results if r.record is not None]
    if not done:
        return
    ops.record_batches(spark, lake_root, [r.record for r in done])
    ops.set_watermarks(spark, lake_root, [(source, r.record.entity, r.watermark, r.batch_id) for r in done])


def ingest_entity(spark, lake_root: str, source_db_url: str, entity: EntityConfig, *,
                  source: str = SOURCE, full: bool = False, now: dt.datetime | None = None,
                  record_ops: bool = True) -> BatchResult:
    """Load the rows of ``entity`` changed since the watermark (all rows with ``full``).

    With ``record_ops=False`` the batch record and the new watermark are returned in the result
    for the caller to write (``ingest_all`` writes them for all entities in one go)."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    started = now or dt.datetime.now()
    bronze, quarantine = bronze_table(entity, source), quarantine_table(entity, source)
    wm_from = None if full else ops.get_watermark(spark, lake_root, source, entity.name)
    where = f"WHERE updated_at > '{wm_from}'" if wm_from else ""
    query = f"(SELECT * FROM {entity.name} {where}) AS src"
    raw = (spark.read.format("jdbc").options(**jdbc_options(source_db_url))
           .option("dbtable", query).option("fetchsize", "10000").load())
    # one pass over the slice: the hard rules, then every count the batch record needs
    checked = raw.withColumn("__reason", reject_reason(raw, entity)).persist()
    try:
        agg = checked.agg(
            F.count("*").alias("read"), F.max("updated_at").alias("wm_to"),
            F.sum(F.col("__reason").isNotNull().cast("long")).alias("bad"),
            F.countDistinct(F.when(F.col("__reason").isNull(), F.col(entity.key))).alias("good_keys"),
        ).first()
        n_read = int(agg.read)
        if n_read == 0:
            return BatchResult(bronze.name, None, 0, 0, 0)
        wm_to, n_quarantined = agg.wm_to, int(agg.bad or 0)
        n_good = n_read - n_quarantined
        n_superseded = n_good - int(agg.good_keys)
        bid = ops.batch_id(source, entity.name, wm_from or "", wm_to)
        source_file = f"{source}:{entity.name}"
        meta = {"_batch_id": F.lit(bid), "_source": F.lit(source),
                "_ingested_at": F.lit(started).cast("timestamp"), "_source_file": F.lit(source_file)}

        bad = checked.where(F.col("__reason").isNotNull())
        # the payload keeps every field for the data engineer, identifiers masked: personal data
        # never leaves the restricted layer unmasked (the source system holds the original)
        q = quarantine_rows(bad, entity.key, F.split(F.col("__reason"), ":").getItem(0),
                            F.col("__reason"), payload_columns=raw.columns).withColumns(meta)

        # a slice can hold several versions of a row: the latest wins, the others are superseded
        good = checked.where(F.col("__reason").isNull()).drop("__reason")
        latest = Window.partitionBy(entity.key).orderBy(F.col("updated_at").desc())
        deduped = good.withColumn("__rank", F.row_number().over(latest)).where("__rank = 1").drop("__rank")
        loaded = delta.with_row_hash(deduped.withColumns(meta))

        stats = delta.upsert(spark, loaded, bronze, lake_root, check_unique=False)
        if n_quarantined:
            delta.upsert(spark, q, quarantine, lake_root)
        record = ops.BatchRecord(
            batch_id=bid, source=source, entity=entity.name, target_table=bronze.name,
            watermark_from=wm_from, watermark_to=wm_to, rows_read=n_read, rows_loaded=n_good,
            rows_quarantined=n_quarantined, rows_inserted=stats.inserted, rows_updated=stats.updated,
            rows_unchanged=stats.unchanged, rows_superseded_in_batch=n_superseded,
            status="succeeded", started_at=started, finished_at=dt.datetime.now())
        current = wm_from if not full else ops.get_watermark(spark, lake_root, source, entity.name)
        result = BatchResult(bronze.name, bid, n_read, n_good, n_quarantined, stats.inserted,
                             stats.updated, record, max(wm_to, current or ""))
        if record_ops:
            _record_ops(spark, lake_root, source, [result])
        return result
    finally:
        checked.unpersist()


def ingest_all(spark, lake_root: str, source_db_url: str, *, full: bool = False,
               progress: Callable[[str], None] | None = None) -> list[BatchResult]:
    """Ingest every entity of the regional source, parents first."""
    results = []
    for entity in ENTITIES:
        if progress:
            progress(entity.name)
        results.append(ingest_entity(spark, lake_root, source_db_url, entity, full=full, record_ops=False))
    _record_ops(spark, lake_root, SOURCE, results)
    return results
