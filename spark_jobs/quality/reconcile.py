"""Reconciliation across layers: where every row a source sent went.

For every bronze table of a silver entity (regional and legacy sources), from ``ops.ingest_batches``,
the bronze table itself, the silver table and the conformance quarantine:

    read        = quarantined on ingest + loaded
    loaded      = in bronze now + superseded (an older version replaced by a newer one)
                  + unchanged (read again, identical to what bronze held)
    in bronze   = deleted at the source (tombstones) + in silver + quarantined on conformance
                  + unaccounted

``unaccounted`` must be 0: a row that is in none of the places is a row lost. The report is a
list of :class:`Reconciliation` rows; ``lakehouse quality report`` prints it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from lakehouse import delta
from lakehouse.frames import deleted_column
from lakehouse.tables import INGEST_BATCHES
from spark_jobs.conform.entities import ENTITIES, bronze_sources


@dataclass
class Reconciliation:
    bronze_table: str
    silver_table: str
    read: int
    quarantined_on_ingest: int
    loaded: int
    superseded: int
    unchanged: int
    in_bronze: int
    deleted_at_source: int
    in_silver: int
    quarantined_on_conformance: int
    unaccounted: int

    def as_dict(self) -> dict:
        return asdict(self)


def reconcile(spark, lake_root: str) -> list[Reconciliation]:
    from pyspark.sql import functions as F

    batches = {}
    if delta.table_exists(spark, INGEST_BATCHES.path(lake_root)):
        for r in (delta.read(spark, INGEST_BATCHES, lake_root).groupBy("target_table")
                  .agg(*[F.sum(c).alias(c) for c in ("rows_read", "rows_quarantined", "rows_loaded", "rows_updated",
                                                     "rows_unchanged", "rows_superseded_in_batch")]).collect()):
            batches[r.target_table] = r
    out = []
    for entity in ENTITIES:
        silver_path = f"{lake_root}/silver/{entity.name}"
        silver = spark.read.format("delta").load(silver_path) if delta.table_exists(spark, silver_path) else None
        q_path = Path(lake_root) / "quarantine" / entity.name
        conform_q = (spark.read.format("delta").load(str(q_path)) if (q_path / "_delta_log").is_dir() else None)
        for source, path in bronze_sources(lake_root, entity):
            table = f"bronze.{source}__{entity.bronze}"
            counts = (spark.read.format("delta").load(path)
                      .agg(F.count("*").alias("n"),
                           F.sum(deleted_column().cast("int")).alias("deleted")).first())
            in_silver = silver.where(F.col("source") == source).count() if silver is not None else 0
            quarantined = conform_q.where(F.col("_source") == source).count() if conform_q is not None else 0
            b = batches.get(table)
            n, deleted = int(counts.n), int(counts.deleted or 0)
            out.append(Reconciliation(
                bronze_table=table, silver_table=f"silver.{entity.name}",
                read=int(b.rows_read or 0) if b else 0, quarantined_on_ingest=int(b.rows_quarantined or 0) if b else 0,
                loaded=int(b.rows_loaded or 0) if b else 0,
                superseded=int((b.rows_updated or 0) + (b.rows_superseded_in_batch or 0)) if b else 0,
                unchanged=int(b.rows_unchanged or 0) if b else 0,
                in_bronze=n, deleted_at_source=deleted, in_silver=in_silver,
                quarantined_on_conformance=quarantined, unaccounted=n - deleted - in_silver - quarantined))
    return out
