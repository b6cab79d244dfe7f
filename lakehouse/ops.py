"""Operational tables: ingest batches, watermarks and data-quality results (``ops.*``).

All writes are MERGEs keyed on the batch / watermark / result identity, with a content hash that
leaves out timestamps, so re-running the same batch records nothing new.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict, dataclass

from lakehouse import delta
from lakehouse.tables import BUILD_STATES, DQ_RESULTS, INGEST_BATCHES, WATERMARKS


def batch_id(source: str, entity: str, *parts: str) -> str:
    """A deterministic batch id: the same source slice always gets the same id."""
    digest = hashlib.sha256("|".join((source, entity, *parts)).encode()).hexdigest()[:16]
    return f"{source}.{entity}.{digest}"


@dataclass
class BatchRecord:
    batch_id: str
    source: str
    entity: str
    target_table: str
    watermark_from: str | None
    watermark_to: str | None
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_superseded_in_batch: int
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime

    def __post_init__(self):
        if self.rows_read != self.rows_loaded + self.rows_quarantined:
            raise AssertionError(
                f"batch {self.batch_id}: read {self.rows_read} != loaded {self.rows_loaded} "
                f"+ quarantined {self.rows_quarantined}")


# what a rerun of the same batch may legitimately change: when and how it wrote, not what it read
_BATCH_VOLATILE = ("started_at", "finished_at", "rows_inserted", "rows_updated", "rows_unchanged")


def record_batches(spark, lake_root: str, records: list[BatchRecord]) -> None:
    df = spark.createDataFrame([asdict(r) for r in records], INGEST_BATCHES.schema)
    delta.upsert(spark, delta.with_row_hash(df, exclude=_BATCH_VOLATILE), INGEST_BATCHES, lake_root)


def get_watermark(spark, lake_root: str, source: str, entity: str) -> str | None:
    path = WATERMARKS.path(lake_root)
    if not delta.table_exists(spark, path):
        return None
    row = (spark.read.format("delta").load(path)
           .where(f"source = '{source}' AND entity = '{entity}'").select("watermark").first())
    return row[0] if row else None


def get_watermarks(spark, lake_root: str, source: str) -> dict[str, str]:
    """Every entity's watermark of ``source``, in one read."""
    path = WATERMARKS.path(lake_root)
    if not delta.table_exists(spark, path):
        return {}
    rows = spark.read.format("delta").load(path).where(f"source = '{source}'").select("entity", "watermark").collect()
    return {r.entity: r.watermark for r in rows}


def set_watermarks(spark, lake_root: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Upsert (source, entity, watermark, batch_id) rows."""
    df = spark.createDataFrame(rows, WATERMARKS.schema)
    delta.upsert(spark, delta.with_row_hash(df, exclude=()), WATERMARKS, lake_root)


def get_build_states(spark, lake_root: str) -> dict[str, str]:
    """``{table: state}`` recorded after each derived table's last build."""
    path = BUILD_STATES.path(lake_root)
    if not delta.table_exists(spark, path):
        return {}
    return {r.table_name: r.state for r in spark.read.format("delta").load(path).collect()}


def set_build_states(spark, lake_root: str, states: dict[str, str]) -> None:
    df = spark.createDataFrame(sorted(states.items()), BUILD_STATES.schema)
    delta.upsert(spark, delta.with_row_hash(df, exclude=()), BUILD_STATES, lake_root)


def build_state(spark, paths: list[str], logic: str) -> str:
    """The Delta version of the table at each of ``paths`` (inputs and outputs alike; None for
    a missing one) and ``logic`` (what builds the outputs: a :func:`code_digest`, a parameter) as
    one string. A derived table whose state equals the one recorded after its last build
    (:func:`get_build_states`) would be rebuilt exactly as it is: the build can be skipped."""
    import json

    return json.dumps({"tables": {p: delta.table_version(spark, p) for p in sorted(set(paths))}, "logic": logic},
                      sort_keys=True)


def code_digest(*modules) -> str:
    """sha256 (16 hex digits) of the source files of ``modules``: a change of code is a new state."""
    from pathlib import Path

    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def record_dq_results(spark, lake_root: str, rows: list[dict]) -> delta.WriteStats | None:
    """Store Great Expectations result rows (one per expectation and table version)."""
    if not rows:
        return None
    df = spark.createDataFrame([{c: r.get(c) for c in DQ_RESULTS.columns} for r in rows], DQ_RESULTS.schema)
    df = df.dropDuplicates(["result_key"])
    return delta.upsert(spark, delta.with_row_hash(df, exclude=()), DQ_RESULTS, lake_root)


def dq_results_at(spark, lake_root: str, versions: dict[str, int]) -> dict[str, list[dict]]:
    """The stored result rows of each table at the version given: ``{table: [row, ...]}``."""
    from functools import reduce

    from pyspark.sql import functions as F

    path = DQ_RESULTS.path(lake_root)
    if not versions or not delta.table_exists(spark, path):
        return {}
    at = reduce(lambda a, b: a | b, [(F.col("table_name") == t) & (F.col("table_version") == v)
                                     for t, v in versions.items()])
    out: dict[str, list[dict]] = {}
    for row in spark.read.format("delta").load(path).where(at).collect():
        out.setdefault(row.table_name, []).append(row.asDict())
    return out


def held_tables(spark, lake_root: str) -> dict[str, list[str]]:
    """Tables held back by a failed critical expectation: ``{table: [failure, ...]}``.

    A table is held when the results of its latest validated Delta version (in ``ops.dq_results``)
    include a failed critical expectation. Steps downstream of a held table leave what they derive
    from it as it was (the last good state) and report it; every other table flows on. Validating
    a repaired version releases it.
    """
    from pyspark.sql import functions as F

    path = DQ_RESULTS.path(lake_root)
    if not delta.table_exists(spark, path):
        return {}
    results = spark.read.format("delta").load(path)
    latest = results.groupBy("table_name").agg(F.max("table_version").alias("table_version"))
    failed = (results.join(latest, ["table_name", "table_version"])
              .where((F.col("severity") == "critical") & ~F.col("success")).collect())
    held: dict[str, list[str]] = {}
    for row in failed:
        target = f"({row.column})" if row.column else ""
        count = f": {row.unexpected_count} unexpected rows" if row.unexpected_count is not None else (
            f": observed {row.observed_value}" if row.observed_value is not None else "")
        held.setdefault(row.table_name, []).append(f"v{row.table_version} {row.expectation_type}{target}{count}")
    return held
